"""Who may write: the admin port's authentication matrix over real TLS, mTLS, certificate reload,
the audit's verified identity, and the misconfigurations that refuse to start.

Certificates are made on the fly by trustme; servers are real (in-process ``app.start`` or the
``gatekeeper serve`` CLI as a subprocess) against the test redis-server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from cache.embedded import free_port
from gatekeeper.v1 import eligibility_pb2_grpc, registry_pb2, registry_pb2_grpc
from service import app
from service.access import hash_token
from service.cli.main import main as cli_main
from service.config import ConfigError
from tests.conftest import ROOT, make_settings
from tests.e2e.builders import claim, line, new_code, register

WRITER_TOKEN = "writer-token-0123456789abcdefghijklmnopqrstuv"
READER_TOKEN = "reader-token-0123456789abcdefghijklmnopqrstuv"


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path
    client_subject: str
    stranger_cert: pathlib.Path
    stranger_key: pathlib.Path


def _write_leaf(leaf: trustme.LeafCert, cert: pathlib.Path, key: pathlib.Path) -> None:
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))


def _subject(leaf: trustme.LeafCert) -> str:
    from cryptography import x509

    return x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).subject.rfc4514_string()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    _write_leaf(ca.issue_cert("127.0.0.1", "localhost"), d / "server.pem", d / "server.key")
    client = ca.issue_cert("agency-batch@example.org", common_name="agency-batch")
    _write_leaf(client, d / "client.pem", d / "client.key")
    stranger = ca.issue_cert("stranger@example.org", common_name="stranger")
    _write_leaf(stranger, d / "stranger.pem", d / "stranger.key")
    return Pki(
        ca, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem", d / "client.key", _subject(client),
        d / "stranger.pem", d / "stranger.key",
    )  # fmt: skip


def _access_file(path: pathlib.Path, subject: str) -> pathlib.Path:
    path.write_text(
        f'[[token]]\nname = "clerk"\nrole = "writer"\nsha256 = "{hash_token(WRITER_TOKEN)}"\n\n'
        f'[[token]]\nname = "auditor"\nrole = "reader"\nsha256 = "{hash_token(READER_TOKEN)}"\n\n'
        f'[[certificate]]\nsubject = "{subject}"\nname = "agency-batch"\nrole = "writer"\n'
    )
    return path


def _credentials(pki: Pki, *, client: bool = False, stranger: bool = False) -> grpc.ChannelCredentials:
    cert, key = (pki.client_cert, pki.client_key) if client else (pki.stranger_cert, pki.stranger_key)
    with_cert = client or stranger
    return grpc.ssl_channel_credentials(
        root_certificates=pki.ca_file.read_bytes(),
        private_key=key.read_bytes() if with_cert else None,
        certificate_chain=cert.read_bytes() if with_cert else None,
    )


def _wait_serving(port: int, creds: grpc.ChannelCredentials, deadline: float = 20.0) -> None:
    with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with contextlib.suppress(grpc.RpcError):
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            time.sleep(0.05)
    raise TimeoutError(f"port {port} did not become SERVING over TLS")


@dataclass
class Secured:
    check_port: int
    admin_port: int
    registry: CollectorRegistry
    pki: Pki

    def admin(self, **creds: bool) -> registry_pb2_grpc.RegistryServiceStub:
        channel = grpc.secure_channel(f"127.0.0.1:{self.admin_port}", _credentials(self.pki, **creds))
        return registry_pb2_grpc.RegistryServiceStub(channel)

    def failures(self, reason: str) -> float:
        value = self.registry.get_sample_value("gatekeeper_admin_auth_failures_total", {"reason": reason})
        return value or 0.0


@pytest.fixture
def start_secured(redis_url: str, tmp_path: pathlib.Path, pki: Pki) -> Iterator[Callable[..., Secured]]:
    handles: list[app.Running] = []

    def start(*, mutual: bool = False, cert: pathlib.Path = pki.cert, key: pathlib.Path = pki.key) -> Secured:
        registry = CollectorRegistry()
        settings = make_settings(
            redis_url,
            tls_cert=str(cert),
            tls_key=str(key),
            tls_client_ca=str(pki.ca_file) if mutual else None,
            admin_access=str(_access_file(tmp_path / "access.toml", pki.client_subject)),
        )
        handle = app.start(settings, registry=registry)
        handles.append(handle)
        _wait_serving(handle.check_port, _credentials(pki))
        return Secured(handle.check_port, handle.admin_port, registry, pki)

    yield start
    for handle in handles:
        handle.stop()


def _bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[attr-defined, no-any-return]
    return grpc.StatusCode.OK


def test_auth_matrix_over_tls(start_secured: Callable[..., Secured], caplog: pytest.LogCaptureFixture) -> None:
    gk = start_secured()
    admin = gk.admin()
    code = new_code()
    write = registry_pb2.RegisterPractitionerRequest()
    write.CopyFrom(register(code, "2024-01-01"))
    read = registry_pb2.GetPractitionerFileRequest(practitioner_code=code)
    caplog.set_level(logging.WARNING)

    assert _code_of(lambda: admin.RegisterPractitioner(write, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert _code_of(lambda: admin.GetPractitionerFile(read, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    wrong = _bearer("not-a-token")
    assert (
        _code_of(lambda: admin.RegisterPractitioner(write, timeout=10, metadata=wrong))
        == grpc.StatusCode.UNAUTHENTICATED
    )
    reader = _bearer(READER_TOKEN)
    assert (
        _code_of(lambda: admin.RegisterPractitioner(write, timeout=10, metadata=reader))
        == grpc.StatusCode.PERMISSION_DENIED
    )
    # Refused writes changed nothing: there is no file yet (the reader may look).
    assert _code_of(lambda: admin.GetPractitionerFile(read, timeout=10, metadata=reader)) == grpc.StatusCode.NOT_FOUND

    writer = [*_bearer(WRITER_TOKEN), ("x-operator", "Zhang San")]
    written = admin.RegisterPractitioner(write, timeout=10, metadata=writer)
    assert written.file.audit[-1].actor == "token:clerk operator:Zhang San (unverified)"
    assert admin.GetPractitionerFile(read, timeout=10, metadata=reader).file.practitioner_code == code

    assert gk.failures("no_credentials") == 2
    assert gk.failures("unknown_token") == 1
    assert gk.failures("role") == 1
    logged = "\n".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    assert "admin call refused" in logged
    for secret in (WRITER_TOKEN, READER_TOKEN, "not-a-token"):
        assert secret not in logged


def test_forged_operator_note_is_bounded(start_secured: Callable[..., Secured]) -> None:
    gk = start_secured()
    metadata = [*_bearer(WRITER_TOKEN), ("x-operator", "x" * 5000)]
    written = gk.admin().RegisterPractitioner(register(new_code(), "2024-01-01"), timeout=10, metadata=metadata)
    actor = written.file.audit[-1].actor
    assert actor.startswith("token:clerk operator:")
    assert len(actor) < 120


def test_mutual_tls_identity_from_the_certificate_subject(start_secured: Callable[..., Secured]) -> None:
    gk = start_secured(mutual=True)
    written = gk.admin(client=True).RegisterPractitioner(register(new_code(), "2024-01-01"), timeout=10)
    assert written.file.audit[-1].actor == "certificate:agency-batch"
    # A certificate the CA signed but the access file does not list: no role at all.
    stranger = gk.admin(stranger=True)
    status = _code_of(lambda: stranger.RegisterPractitioner(register(new_code(), "2024-01-01"), timeout=10))
    assert status == grpc.StatusCode.UNAUTHENTICATED
    assert gk.failures("unknown_certificate") == 1
    # No client certificate: the handshake itself fails.
    bare = gk.admin()
    status = _code_of(lambda: bare.RegisterPractitioner(register(new_code(), "2024-01-01"), timeout=5))
    assert status == grpc.StatusCode.UNAVAILABLE


def test_check_port_speaks_tls_without_client_certificates(start_secured: Callable[..., Secured], pki: Pki) -> None:
    gk = start_secured(mutual=True)
    with grpc.secure_channel(f"127.0.0.1:{gk.check_port}", _credentials(pki)) as channel:
        response = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaim(
            claim(line("l1", new_code(), "2025-03-01")), timeout=10
        )
    assert len(response.decisions) == 1


def test_certificate_files_are_reloaded_without_dropping_the_server(
    start_secured: Callable[..., Secured], pki: Pki, tmp_path: pathlib.Path
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    cert.write_bytes(pki.cert.read_bytes())
    key.write_bytes(pki.key.read_bytes())
    gk = start_secured(cert=cert, key=key)
    old = gk.admin()
    assert _code_of(lambda: old.GetPractitionerFile(registry_pb2.GetPractitionerFileRequest(practitioner_code="D5400000001"), timeout=10, metadata=_bearer(READER_TOKEN))) == grpc.StatusCode.NOT_FOUND  # fmt: skip
    renewed_ca = trustme.CA()
    renewed_ca.cert_pem.write_to_path(str(tmp_path / "renewed-ca.pem"))
    _write_leaf(renewed_ca.issue_cert("127.0.0.1", "localhost"), cert, key)
    creds = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "renewed-ca.pem").read_bytes())
    request = registry_pb2.GetPractitionerFileRequest(practitioner_code="D5400000001")
    deadline = time.monotonic() + 20
    while True:  # new connections get the renewed certificate
        with grpc.secure_channel(f"127.0.0.1:{gk.admin_port}", creds) as channel:
            renewed = registry_pb2_grpc.RegistryServiceStub(channel).GetPractitionerFile
            if (
                _code_of(partial(renewed, request, timeout=5, metadata=_bearer(READER_TOKEN)))
                == grpc.StatusCode.NOT_FOUND
            ):
                break
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        time.sleep(0.1)
    # The connection opened before the renewal carries on.
    assert (
        _code_of(lambda: old.GetPractitionerFile(request, timeout=10, metadata=_bearer(READER_TOKEN)))
        == grpc.StatusCode.NOT_FOUND
    )


def test_admin_cli_with_token_file_and_tls(start_secured: Callable[..., Secured], pki: Pki, tmp_path: pathlib.Path,
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    gk = start_secured()
    token_file = tmp_path / "token"
    token_file.write_text(WRITER_TOKEN + "\n")
    monkeypatch.setenv("GATEKEEPER_TLS_CA", str(pki.ca_file))
    code = new_code()
    target = f"127.0.0.1:{gk.admin_port}"
    args = ["admin", "--target", target, "--token-file", str(token_file), "register", code, "H54010200001", "--on", "2024-01-01"]  # fmt: skip
    assert cli_main(args) == 0
    assert "data version" in capsys.readouterr().out
    assert cli_main(["admin", "--target", target, "file", code]) == 1  # no token: refused
    assert "UNAUTHENTICATED" in capsys.readouterr().err


def test_token_new_prints_an_entry_the_access_file_accepts(
    capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path
) -> None:
    assert cli_main(["token", "new", "clerk-lhasa", "--role", "writer"]) == 0
    out = capsys.readouterr().out
    token = out.split("\n")[1].strip()
    entry = tomllib.loads(out[out.index("[[token]]") :])["token"][0]
    assert entry == {"name": "clerk-lhasa", "role": "writer", "sha256": hash_token(token)}


# --- Misconfigurations that refuse to start ------------------------------------------------------------------


def test_admin_port_equal_to_check_port_is_refused(redis_url: str) -> None:
    port = free_port()
    with pytest.raises(ConfigError, match=f"{port} is also the check port"):
        make_settings(redis_url, port=port, admin_port=port)


def test_exposed_admin_port_without_credentials_is_refused(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="reachable beyond this machine, so it needs credentials") as error:
        make_settings(redis_url, admin_host="0.0.0.0")
    assert str(error.value).count(". ") == 0  # one sentence


def _serve(env: dict[str, str], tmp_path: pathlib.Path, name: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "GATEKEEPER_METRICS_PORT": "0", "GATEKEEPER_PROFILE": "xizang",
               "GATEKEEPER_DATA_DIR": str(tmp_path / "data"), **env}  # fmt: skip
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve"], cwd=ROOT, env=environ, stdout=log, stderr=log
    )


def test_a_second_process_on_the_check_port_is_a_start_up_error(redis_url: str, tmp_path: pathlib.Path) -> None:
    port = free_port()
    env = {"GATEKEEPER_REDIS_URL": redis_url, "GATEKEEPER_PORT": str(port)}
    first = _serve({**env, "GATEKEEPER_ADMIN_PORT": str(free_port())}, tmp_path, "first")
    try:
        from tests.conftest import wait_serving

        wait_serving(port)
        second = _serve({**env, "GATEKEEPER_ADMIN_PORT": str(free_port())}, tmp_path, "second")
        assert second.wait(timeout=60) == 2
        log = (tmp_path / "second.log").read_text()
        assert f"cannot listen on 127.0.0.1:{port}" in log
        # SIGHUP (certificate reload) does not stop the first one.
        first.send_signal(signal.SIGHUP)
        wait_serving(port)
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=10)
