"""Settings, resolved flag -> environment (GATEKEEPER_*) -> default.

One table (``SETTINGS``) declares each setting once; it builds the CLI flags and their
``--help`` text, and resolves values. Add a setting here and it is documented everywhere.
"""

from __future__ import annotations

import argparse
import os
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
    Spec("max_lines", 1000, "most lines one CheckClaim may carry", int),
    Spec("min_version_wait_ms", 500, "longest a check waits for min_data_version before answering STALE_DATA", int),
    Spec("workers", 16, "gRPC worker threads per server", int),
    Spec("demo_data", True, "load demo data into an empty embedded Redis", _bool),
    Spec(
        "decision_log",
        "rejects",
        "decision log: all claims, claims with non-eligible lines (rejects), or off",
        _choice("all", "rejects", "off"),
    ),
    Spec("log_format", "json", "log format", _choice("json", "text")),
    Spec("log_level", "INFO", "log level", _choice("DEBUG", "INFO", "WARNING", "ERROR")),
)
SPECS = {spec.name: spec for spec in SETTINGS}


class ConfigError(ValueError):
    pass


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
    demo_data: bool
    decision_log: str
    log_format: str
    log_level: str

    def __post_init__(self) -> None:
        ports = {"port": self.port, "admin_port": self.admin_port or 0, "metrics_port": self.metrics_port}
        for name, value in ports.items():
            if not 0 <= value <= 65535:
                raise ConfigError(f"{SPECS[name].env}: {value} is not a port (0-65535)")
        positive = {"max_lines": self.max_lines, "workers": self.workers}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{SPECS[name].env}: must be at least 1, got {value}")
        if self.min_version_wait_ms < 0:
            raise ConfigError(f"{SPECS['min_version_wait_ms'].env}: must not be negative")

    @classmethod
    def from_args(cls, args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        return cls(**resolve(args, environ))

    @property
    def embedded(self) -> bool:
        return not self.redis_url

    @property
    def effective_admin_port(self) -> int:
        """0 means off. The embedded default turns the admin port on for the demo."""
        if self.admin_port is not None:
            return self.admin_port
        return 50052 if self.embedded else 0
