"""The benchmark's smoke run (``python -m loadtest.bench --quick``): it runs end to end and every
h2load run gets exactly the expected answer bytes. Figures are printed, never asserted."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
@pytest.mark.skipif(
    shutil.which("h2load") is None, reason="h2load (nghttp2-client) is installed by scripts/bootstrap.sh"
)
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the benchmark pins server and load to two cores")
def test_the_benchmark_smoke_run_completes(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "loadtest.bench", "--quick", "--repeat", "1", "--json", str(tmp_path / "runs.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| gatekeeper, 1-line claim" in result.stdout
    assert "| gatekeeper, 50-line claim" in result.stdout
    assert "| gatekeeper, 200-line claim" in result.stdout
    assert (tmp_path / "runs.json").exists()
