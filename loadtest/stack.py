"""A small observed stack on loopback: gatekeeper processes, a real Prometheus scraping them, and
a little traffic that touches every decision, error and metric the dashboards and alerts read.

Used by tests/e2e/test_prometheus.py and by ``python -m loadtest.dashboard_png``. Every port is a
free loopback port; Prometheus gets its own config and TSDB directory, so a system Prometheus
(Debian's package may start one on :9090) is neither used nor disturbed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache.embedded import EmbeddedRedis, free_port
from cache.store import Store, connect
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2, registry_pb2_grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "gatekeeper.rules.yml"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
JOB = "gatekeeper"  # the scrape job name deploy/prometheus's rules expect


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise TimeoutError(f"{what} within {timeout:.0f}s")


def stop_process(process: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM, and SIGKILL if it has not ended within ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- gatekeeper processes ---------------------------------------------------------------------------


@dataclass
class GatekeeperProcess:
    process: subprocess.Popen[bytes]
    check_port: int
    admin_port: int
    metrics_port: int

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def serving(self) -> bool:
        with grpc.insecure_channel(f"127.0.0.1:{self.check_port}") as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def stop(self) -> None:
        stop_process(self.process)


def spawn_gatekeeper(redis_url: str, log_dir: pathlib.Path, **env: str) -> GatekeeperProcess:
    """`gatekeeper serve` as a subprocess with the default metrics registry (process_* metrics too)."""
    ports = free_port(), free_port(), free_port()
    environ = {
        **os.environ,
        "GATEKEEPER_REDIS_URL": redis_url,
        "GATEKEEPER_HOST": "127.0.0.1",
        "GATEKEEPER_PORT": str(ports[0]),
        "GATEKEEPER_ADMIN_PORT": str(ports[1]),
        "GATEKEEPER_METRICS_PORT": str(ports[2]),
        "GATEKEEPER_PROFILE": "national",
        "GATEKEEPER_DECISION_LOG": "off",
        "GATEKEEPER_MIN_VERSION_WAIT_MS": "5",
        "GATEKEEPER_DATA_DIR": str(log_dir / "data"),
        **env,
    }
    log = open(log_dir / f"gatekeeper-{ports[0]}.log", "wb")  # noqa: SIM115 (lives as long as the process)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve"], cwd=ROOT, env=environ, stdout=log, stderr=log
    )
    return GatekeeperProcess(process, *ports)


# --- Prometheus -----------------------------------------------------------------------------------------


def prometheus_config(targets: list[str], rule_files: list[pathlib.Path], interval: str = "1s") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": targets}]}],
    }


@dataclass
class Prometheus:
    """A private prometheus: loopback, free port, its own config and TSDB under ``workdir``."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, config: dict[str, Any], timeout: float = 60) -> Prometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed; run scripts/bootstrap.sh")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        args = [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        log = open(self.workdir / "prometheus.log", "wb")  # noqa: SIM115 (lives as long as the process)
        self.process = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        wait_until(self.ready, timeout, f"prometheus on {self.url} was not ready")
        return self

    def ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.workdir / "prometheus.log").read_text(errors="replace")
            raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    def api(self, path: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<path>; returns the whole answer, errors included (status, errorType, error)."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return dict(json.load(reply))
        except urllib.error.HTTPError as error:  # 400 bad_data / 422 execution: the body says why
            return dict(json.load(error))

    def query(self, expr: str) -> dict[str, Any]:
        return self.api("query", query=expr)

    def query_range(self, expr: str, start: float, end: float, step: float) -> dict[str, Any]:
        return self.api("query_range", query=expr, start=str(start), end=str(end), step=str(step))

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


# --- traffic ------------------------------------------------------------------------------------------


def _line(line_id: str, code: str, day: tuple[int, int, int], care: int = 0) -> eligibility_pb2.ClaimLine:
    line = eligibility_pb2.ClaimLine(line_id=line_id, practitioner_code=code, care_type=care)  # type: ignore[arg-type]
    line.service_date.year, line.service_date.month, line.service_date.day = day
    return line


# Against the demo data (service/demo/people.jsonl) and the national profile: one line per reason.
MIXED_CLAIM = eligibility_pb2.CheckClaimRequest(
    claim_id="LOAD-MIXED",
    institution_code="H51010500001",
    lines=[
        _line("eligible", "D510105000456", (2025, 4, 2)),
        _line("suspended", "D510105000123", (2025, 4, 2)),
        _line("emergency", "D510105000123", (2025, 4, 2), enums_pb2.CARE_TYPE_EMERGENCY),
        _line("rescue", "D510105000123", (2025, 4, 2), enums_pb2.CARE_TYPE_RESCUE),
        _line("terminated", "D510105000789", (2025, 8, 1)),
        _line("unknown", "D999999000001", (2025, 4, 2)),
        _line("not-registered", "N510105000001", (2026, 2, 1)),
    ],
)
BAD_CLAIM = eligibility_pb2.CheckClaimRequest(claim_id="LOAD-BAD", institution_code="H51010500001", lines=[])


@dataclass
class Traffic:
    """A background loop of calls to every gatekeeper, bounded in count and in time; stops by itself."""

    gatekeepers: list[GatekeeperProcess]
    max_seconds: float = 300
    max_rounds: int = 20_000
    pause: float = 0.02
    rounds: int = 0
    done: threading.Event = field(default_factory=threading.Event)  # set when the loop has ended
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        channels = [
            (grpc.insecure_channel(f"127.0.0.1:{g.check_port}"), grpc.insecure_channel(f"127.0.0.1:{g.admin_port}"))
            for g in self.gatekeepers
        ]
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and self.rounds < self.max_rounds and time.monotonic() < deadline:
                check, admin = channels[self.rounds % len(channels)]
                self._round(
                    eligibility_pb2_grpc.EligibilityServiceStub(check), registry_pb2_grpc.RegistryServiceStub(admin)
                )
                self.rounds += 1
                self._stop.wait(self.pause)
        finally:
            for check, admin in channels:
                check.close()
                admin.close()
            self.done.set()

    def _round(
        self, check: eligibility_pb2_grpc.EligibilityServiceStub, admin: registry_pb2_grpc.RegistryServiceStub
    ) -> None:
        n = self.rounds
        calls: list[Callable[[], object]] = [lambda: check.CheckClaim(MIXED_CLAIM, timeout=5)]
        if n % 5 == 0:
            status = eligibility_pb2.GetPractitionerStatusRequest(practitioner_code="D510105000123")
            calls.append(lambda: check.GetPractitionerStatus(status, timeout=5))
        if n % 10 == 0:
            calls.append(lambda: check.CheckClaim(BAD_CLAIM, timeout=5))  # InvalidArgument
            fresh = eligibility_pb2.CheckClaimRequest()
            fresh.CopyFrom(MIXED_CLAIM)
            fresh.min_data_version = 10**12  # never reached: REVIEW / STALE_DATA (min_data_version)
            calls.append(lambda: check.CheckClaim(fresh, timeout=5))
        if n % 25 == 0:  # an admin write per so many rounds: versions move, the change feed runs
            register = registry_pb2.RegisterPractitionerRequest(
                practitioner_code=f"DLOAD{os.getpid()}X{n}", institution_code="H51010500002",
                category=enums_pb2.PRACTITIONER_CATEGORY_NURSE,
            )  # fmt: skip
            register.registered_on.year, register.registered_on.month, register.registered_on.day = 2025, 1, 1
            calls.append(lambda: admin.RegisterPractitioner(register, timeout=5))
            file = registry_pb2.GetPractitionerFileRequest(practitioner_code="D510105000123")
            calls.append(lambda: admin.GetPractitionerFile(file, timeout=5))
        for call in calls:
            with contextlib.suppress(grpc.RpcError):  # errors are part of the traffic: the error panels show them
                call()


# --- the whole stack -------------------------------------------------------------------------------------


@dataclass
class Running:
    prometheus: Prometheus
    gatekeepers: list[GatekeeperProcess]
    traffic: Traffic


@contextlib.contextmanager
def observed_stack(workdir: pathlib.Path, *, processes: int = 2, traffic_seconds: float = 300) -> Iterator[Running]:
    """redis-server with the demo data, ``processes`` x `gatekeeper serve`, Prometheus with the
    deploy/ rules scraping them every second, and traffic; everything stopped on exit."""
    from service.app import load_demo  # the server stack, only for whoever starts one
    from service.rules.profile import load_profile

    stops: list[Callable[[], None]] = []
    try:
        redis = EmbeddedRedis(workdir / "redis", appendonly=False).start()
        stops.append(redis.stop)
        load_demo(Store(connect(redis.url)), load_profile("national"))
        gatekeepers = [spawn_gatekeeper(redis.url, workdir) for _ in range(processes)]
        stops += [g.stop for g in gatekeepers]
        wait_until(lambda: all(g.serving() for g in gatekeepers), 60, "gatekeeper processes were not SERVING")
        prometheus = Prometheus(workdir / "prometheus")
        stops.append(prometheus.stop)
        prometheus.start(prometheus_config([g.metrics_target for g in gatekeepers], [RULES]))
        traffic = Traffic(gatekeepers, max_seconds=traffic_seconds).start()
        stops.append(traffic.stop)
        yield Running(prometheus, gatekeepers, traffic)
    finally:
        for stop in reversed(stops):
            stop()


# --- dashboards and rules: the expressions to evaluate ------------------------------------------------------

# Grafana's variables as a test substitutes them: one job, every instance, a one-minute rate window.
VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$job": JOB, "$instance": ".*"}


def substitute(expr: str, **overrides: str) -> str:
    """Grafana's variables replaced; ``rate_interval="15s"`` and friends override a value."""
    values = {**VARIABLES, **{f"$__{k}": v for k, v in overrides.items()}}
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(name, values[name])
    return expr


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(panel title, legend, expression with variables substituted) of every target."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield panel["title"], target.get("legendFormat", ""), substitute(target["expr"])


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
