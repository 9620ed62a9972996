"""The layers stay as drawn: pure modules reach no gRPC and no Redis, and ``cache`` never imports ``service``."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

PURE = [
    "domain.values",
    "domain.projection",
    "domain.errors",
    "domain.violations",
    "service.rules.engine",
    "service.rules.profile",
    "service.check.decision",
    "service.registry.ledger_ops",
    "service.registry.reports",
]


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_transport_and_no_store(module: str) -> None:
    loaded = _modules_after_import(module)
    assert not {m for m in loaded if m == "grpc" or m.startswith(("grpc.", "redis"))}, module


@pytest.mark.parametrize("path", sorted((ROOT / "cache").glob("*.py")), ids=lambda p: p.name)
def test_cache_never_imports_service(path: pathlib.Path) -> None:
    text = path.read_text()
    assert "from service" not in text
    assert "import service" not in text


@pytest.mark.parametrize("path", sorted((ROOT / "domain").glob("*.py")), ids=lambda p: p.name)
def test_domain_imports_neither_cache_nor_service(path: pathlib.Path) -> None:
    text = path.read_text()
    assert not any(f"{kw} {pkg}" in text for kw in ("from", "import") for pkg in ("service", "cache"))
