"""deploy/: Kubernetes manifests valid against the API schemas (kubernetes-validate, offline),
manifests and the Dockerfile clean under checkov, the compose file complete. No Docker engine,
no cluster, no network."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config import Settings
from service.rules.profile import Profile

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
VERSIONS = ["1.30.0", "1.33.0"]  # the oldest and a recent supported Kubernetes minor


def documents() -> list[dict[str, Any]]:
    return [doc for path in KUBERNETES for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def named(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    docs = documents()
    assert len(docs) >= 15
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)  # raises with the path of what is wrong


def test_checkov_finds_nothing_in_the_manifests_and_the_dockerfile() -> None:
    result = subprocess.run(
        [str(pathlib.Path(sys.executable).parent / "checkov"), "-d", str(DEPLOY), "--framework", "kubernetes",
         "dockerfile", "--skip-download", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )  # fmt: skip
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    by_type = {r["check_type"]: r["summary"] for r in reports}
    assert set(by_type) == {"kubernetes", "dockerfile"}, result.stdout[-2000:] + result.stderr[-2000:]
    failed = [(c["check_id"], c["resource"]) for r in reports for c in r["results"]["failed_checks"]]
    assert failed == []
    assert by_type["kubernetes"]["passed"] > 150
    assert by_type["dockerfile"]["passed"] > 30
    assert by_type["kubernetes"]["parsing_errors"] == by_type["dockerfile"]["parsing_errors"] == 0
    # One skip, CKV_K8S_35 on the Deployment, with its reason in the manifest's annotations.
    assert by_type["kubernetes"]["skipped"] == 1
    assert by_type["dockerfile"]["skipped"] == 0


def test_deployment_has_native_grpc_probes_resources_and_a_locked_down_container() -> None:
    pod = named("Deployment", "gatekeeper")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    assert set(container["resources"]["requests"]) == {"cpu", "memory"}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"check": 50051, "admin": 50052, "metrics": 9464}


def test_check_and_admin_ports_are_separate_services_and_only_the_agency_reaches_admin() -> None:
    assert [p["targetPort"] for p in named("Service", "gatekeeper")["spec"]["ports"]] == ["check"]
    assert [p["targetPort"] for p in named("Service", "gatekeeper-admin")["spec"]["ports"]] == ["admin"]
    rules = named("NetworkPolicy", "gatekeeper")["spec"]["ingress"]
    admin_rules = [r for r in rules if any(p["port"] == "admin" for p in r["ports"])]
    assert len(admin_rules) == 1
    assert admin_rules[0]["from"], "the admin port must not be open to everyone"


def test_scaling_and_disruption() -> None:
    hpa = named("HorizontalPodAutoscaler", "gatekeeper")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "gatekeeper"
    assert hpa["minReplicas"] >= 2
    assert {d["metadata"]["name"] for d in of_kind("PodDisruptionBudget")} == {"gatekeeper", "redis"}


def test_the_profile_config_map_is_a_valid_profile() -> None:
    text = named("ConfigMap", "gatekeeper-profile")["data"]["profile.toml"]
    profile = Profile.model_validate(tomllib.loads(text))
    assert profile.policy_id == "national@2025.1"


def test_secrets_hold_no_real_values() -> None:
    secrets = of_kind("Secret")
    assert {s["metadata"]["name"] for s in secrets} == {"gatekeeper-redis", "gatekeeper-tls", "gatekeeper-admin-access"}
    for secret in secrets:
        for value in {**secret.get("data", {}), **secret.get("stringData", {})}.values():
            assert value == "" or "CHANGE-ME" in value


def _env_of_deployment() -> dict[str, str]:
    (container,) = named("Deployment", "gatekeeper")["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "from-a-secret") for e in container["env"]}


@pytest.mark.parametrize("where", ["kubernetes", "compose"])
def test_the_shipped_settings_would_start(where: str) -> None:
    """The admin port off loopback needs TLS and an access file: the shipped settings must say where."""
    if where == "kubernetes":
        environ = _env_of_deployment()
        mounts = {
            m["mountPath"]
            for m in named("Deployment", "gatekeeper")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        }
        for name in ("GATEKEEPER_TLS_CERT", "GATEKEEPER_TLS_KEY", "GATEKEEPER_ADMIN_ACCESS"):
            assert str(pathlib.PurePosixPath(environ[name]).parent) in mounts, name
    else:
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
        environ = dict(compose["services"]["gatekeeper-1"]["environment"])
        for name in ("GATEKEEPER_TLS_CERT", "GATEKEEPER_TLS_KEY", "GATEKEEPER_ADMIN_ACCESS"):
            assert pathlib.PurePosixPath(environ[name]).name in compose["secrets"], name
    Settings.from_args(None, environ={k: str(v) for k, v in environ.items()})  # raises ConfigError if not


def test_redis_runs_as_a_statefulset_with_sentinels() -> None:
    redis = named("StatefulSet", "redis")["spec"]
    assert redis["replicas"] == 3
    assert [c["name"] for c in redis["template"]["spec"]["containers"]] == ["redis", "sentinel"]
    url = named("Secret", "gatekeeper-redis")["stringData"]["url"]
    assert url.startswith("redis+sentinel://")


def test_compose_has_the_whole_region() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3",
                             "gatekeeper-1", "gatekeeper-2", "prometheus", "grafana"}  # fmt: skip
    assert "--replicaof" in services["redis-replica"]["command"]
    for name in ("gatekeeper-1", "gatekeeper-2"):
        assert services[name]["environment"]["GATEKEEPER_REDIS_URL"].startswith("redis+sentinel://sentinel-1:26379")
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), volume
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gatekeeper-1:9464", "gatekeeper-2:9464"]


def test_dockerfile_copies_every_package_runs_unprivileged_and_checks_grpc_health() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for package in packages:
        assert f"COPY {package.rstrip('*')} " in text, package
    assert "USER 10001" in text
    assert 'CMD ["gatekeeper", "health"' in text
