"""Settings, resolved flag -> environment (GATEKEEPER_*) -> default.

One table (``SETTINGS``) declares each setting once; it builds the CLI flags and their
``--help`` text, and resolves values. Add a setting here and it is documented everywhere.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import pathlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Spec:
    name: str
    default: Any
    help: str
    parse: Callable[[str], Any] = str
    env_aliases: tuple[str, ...] = ()

    @property
    def env(self) -> str:
        return f"GATEKEEPER_{self.name.upper()}"

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return value

    return parse


SETTINGS: tuple[Spec, ...] = (
    Spec(
        "redis_url",
        None,
        "Redis URL (redis://host:port/db). Unset: start a local redis-server with demo data (the embedded default)",
        env_aliases=("REDIS_URL",),
    ),
    Spec("data_dir", ".gatekeeper", "where the embedded redis-server keeps its AOF files"),
    Spec("profile", "national", "regional profile: a bundled name (national, xizang) or a path to a TOML file"),
    Spec("host", "127.0.0.1", "address of the check port (0.0.0.0 in containers)"),
    Spec("port", 50051, "check port (EligibilityService, health, reflection)", int),
    Spec("admin_host", "127.0.0.1", "address of the admin port"),
    Spec(
        "admin_port",
        None,
        "admin port (RegistryService); unset: off, or 50052 on loopback with the embedded default; 0: off",
        int,
    ),
    Spec("metrics_port", 9464, "Prometheus /metrics HTTP port; 0: off", int),
    Spec(
        "processes",
        1,
        "serving processes forked after the snapshot is loaded, sharing the ports (docs/processes.md); "
        "0: one per available core",
        int,
    ),
    Spec("max_lines", 1000, "most lines one CheckClaim may carry", int),
    Spec("min_version_wait_ms", 500, "longest a check waits for min_data_version before answering STALE_DATA", int),
    Spec("workers", 16, "gRPC worker threads per server that answer checks and writes", int),
    Spec(
        "max_waiting_checks",
        64,
        "checks that may wait for min_data_version at once, on threads of their own; beyond: STALE_DATA at once",
        int,
    ),
    Spec("max_watchers", 256, "WatchStatusChanges streams at once, on threads of their own", int),
    Spec(
        "write_replicas",
        0,
        "Redis replicas that must acknowledge an admin write (WAIT) before it is answered; 0: the primary alone",
        int,
    ),
    Spec("max_concurrent_rpcs", 2000, "calls in flight per server beyond which it sheds with RESOURCE_EXHAUSTED", int),
    Spec("tls_cert", None, "PEM certificate chain for both ports (reloaded on change or SIGHUP); unset: plaintext"),
    Spec("tls_key", None, "PEM private key of --tls-cert"),
    Spec("tls_client_ca", None, "PEM CA bundle: the admin port then requires client certificates it signed (mTLS)"),
    Spec(
        "admin_access",
        None,
        "TOML access file of admin tokens (hashed) and certificate subjects with roles; required off loopback",
    ),
    Spec("demo_data", True, "load demo data into an empty embedded Redis", _bool),
    Spec(
        "decision_log",
        "rejects",
        "decision log: all claims, claims with non-eligible lines (rejects), or off",
        _choice("all", "rejects", "off"),
    ),
    Spec(
        "decision_log_file", None, "write the decision log as JSON lines to this file (for recheck) instead of stderr"
    ),
    Spec("log_format", "json", "log format", _choice("json", "text")),
    Spec("log_level", "INFO", "log level", _choice("DEBUG", "INFO", "WARNING", "ERROR")),
)
SPECS = {spec.name: spec for spec in SETTINGS}


class ConfigError(ValueError):
    pass


class BindError(ConfigError):
    """An address cannot be served (taken by another process); the message names it."""


def available_cores(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup v2 CPU quota (a container's
    CPU limit, rounded up), since affinity alone shows every core of the host."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = pathlib.Path(cpu_max).read_text().split()  # "max 100000" or "200000 100000"
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, -(-int(quota) // int(period))))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; wildcards (0.0.0.0, ::) and names are not."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _may_overlap(a: str, b: str) -> bool:
    wildcards = {"0.0.0.0", "::", "[::]", ""}
    if a == b or a in wildcards or b in wildcards:
        return True
    localhost = {"localhost", "127.0.0.1", "::1", "[::1]"}  # what "localhost" resolves to
    return "localhost" in (a, b) and a in localhost and b in localhost


def add_arguments(parser: argparse.ArgumentParser, names: tuple[str, ...] | None = None) -> None:
    """Add a flag per setting; defaults stay None so the environment can fill them in."""
    for spec in SETTINGS:
        if names is not None and spec.name not in names:
            continue
        envs = " or ".join([spec.env, *spec.env_aliases])
        parser.add_argument(
            spec.flag, dest=spec.name, default=None, help=f"{spec.help} [env {envs}; default {spec.default}]"
        )


def resolve(args: argparse.Namespace | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Each setting from its flag, else its environment variable(s), else its default."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for spec in SETTINGS:
        raw = getattr(args, spec.name, None) if args is not None else None
        source = spec.flag
        if raw is None:
            for env in (spec.env, *spec.env_aliases):
                if environ.get(env):
                    raw, source = environ[env], env
                    break
        if raw is None:
            values[spec.name] = spec.default
            continue
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return values


@dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None
    data_dir: str
    profile: str
    host: str
    port: int
    admin_host: str
    admin_port: int | None
    metrics_port: int
    max_lines: int
    min_version_wait_ms: int
    workers: int
    max_waiting_checks: int
    max_watchers: int
    max_concurrent_rpcs: int
    tls_cert: str | None
    tls_key: str | None
    tls_client_ca: str | None
    admin_access: str | None
    demo_data: bool
    decision_log: str
    decision_log_file: str | None
    log_format: str
    log_level: str
    write_replicas: int = 0
    processes: int = 1

    def __post_init__(self) -> None:
        ports = {"port": self.port, "admin_port": self.admin_port or 0, "metrics_port": self.metrics_port}
        for name, value in ports.items():
            if not 0 <= value <= 65535:
                raise ConfigError(f"{SPECS[name].env}: {value} is not a port (0-65535)")
        positive = {
            "max_lines": self.max_lines,
            "workers": self.workers,
            "max_waiting_checks": self.max_waiting_checks,
            "max_watchers": self.max_watchers,
            "max_concurrent_rpcs": self.max_concurrent_rpcs,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{SPECS[name].env}: must be at least 1, got {value}")
        if self.processes < 0:
            raise ConfigError(f"{SPECS['processes'].env}: must not be negative (0: one per available core)")
        if self.write_replicas < 0:
            raise ConfigError(f"{SPECS['write_replicas'].env}: must not be negative")
        if self.min_version_wait_ms < 0:
            raise ConfigError(f"{SPECS['min_version_wait_ms'].env}: must not be negative")
        self._check_ports_distinct()
        self._check_admin_exposure()

    def _check_ports_distinct(self) -> None:
        admin, metrics = self.effective_admin_port, self.metrics_port
        if admin and admin == self.port and _may_overlap(self.admin_host, self.host):
            raise ConfigError(f"{SPECS['admin_port'].env}: {admin} is also the check port; give the admin port its own")
        if metrics and metrics in (self.port, admin):
            raise ConfigError(f"{SPECS['metrics_port'].env}: {metrics} is already a gRPC port")

    def _check_admin_exposure(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError(f"{SPECS['tls_cert'].env} and {SPECS['tls_key'].env} go together; set both or neither")
        if self.tls_client_ca and not self.tls_cert:
            raise ConfigError(f"{SPECS['tls_client_ca'].env} needs {SPECS['tls_cert'].env} and {SPECS['tls_key'].env}")
        if self.effective_admin_port and not is_loopback(self.admin_host) and not (self.admin_access and self.tls_cert):
            raise ConfigError(
                f"the admin port on {self.admin_host}:{self.effective_admin_port} is reachable beyond this machine, "
                f"so it needs credentials: set {SPECS['admin_access'].env} and {SPECS['tls_cert'].env}/"
                f"{SPECS['tls_key'].env} (or keep {SPECS['admin_host'].env} on loopback)"
            )

    @classmethod
    def from_args(cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        return cls(**resolve(args, environ))

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    @property
    def effective_processes(self) -> int:
        """``processes``, with 0 read as one per core this process may use (affinity and cgroup quota)."""
        return self.processes or available_cores()

    @property
    def effective_admin_port(self) -> int:
        """0 means off. The embedded default turns the admin port on for the demo."""
        if self.admin_port is not None:
            return self.admin_port
        return 50052 if self.embedded else 0
