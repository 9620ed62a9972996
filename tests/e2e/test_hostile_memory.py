"""The memory figure of issue 7 as a (slow) test: loadtest/hostile.py against a spawned `gatekeeper serve`.

    .venv/bin/pytest -m slow tests/e2e/test_hostile_memory.py

50,000 random payloads to CheckClaim, invalid UTF-8 and random payloads to every RegistryService
method: every answer INVALID_ARGUMENT, and the server's resident memory settles within 5 MB of
where it was before (the script exits 1 otherwise). Takes about a minute.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_fifty_thousand_random_payloads_cost_no_memory() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.hostile", "--payloads", "50000"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=850,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "INTERNAL" not in done.stdout
