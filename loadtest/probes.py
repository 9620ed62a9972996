"""Issue 7's probes, tried for real against ``gatekeeper serve`` subprocesses: the figures of docs/reliability.md.

    python -m loadtest.probes                    # every probe, 1-2 min
    python -m loadtest.probes auth bad-lines     # some of them

Probes (each prints what it sent and what came back):

- ``auth``: a TLS server with an access file (a writer and a reader token); an anonymous
  RecordPoints of 12 points for an eligible doctor, a wrong token's, a reader's, then a writer's,
  each with a forged 5,000-character ``x-operator``; the doctor's status after each; the
  auth-failure counters and the log (no secret in it); the audit actor the writer's call stored;
- ``loopback``: the same anonymous RecordPoints against the zero-configuration default (admin port
  on loopback, no access file), for comparison;
- ``tls``: plaintext and TLS to both ports of such a server; the Dockerfile's environment
  (``GATEKEEPER_HOST=0.0.0.0``) with an admin port, on its default host and on ``0.0.0.0`` without
  credentials;
- ``utf8``: a claim with invalid UTF-8 in ``claim_id`` and in a line's ``line_id``;
- ``waiters``: 64 concurrent callers with ``min_data_version`` = 2^64-1, and a normal check meanwhile;
- ``bad-lines``: claims with 150 and 1,000 invalid lines, read by C-core Python channels limited to
  8 KB and to 16 KB of metadata; the size of the trailers;
- ``second-serve``: a second ``gatekeeper serve`` (another profile) on a check port that is taken,
  on the same host and as ``localhost``; which profile 40 fresh connections per address get;
- ``same-port``: admin port = check port, spelled three ways; which service 40 fresh connections
  to the port reach;
- ``metrics``: 1,000 undecodable requests, and the counters' deltas on /metrics.

Servers run against a private redis-server (demo data loaded by ``gatekeeper load``), on free
loopback ports; the certificates are made on the fly (trustme, a test dependency).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
from google.rpc import error_details_pb2
from google.type.date_pb2 import Date
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from cache.embedded import EmbeddedRedis, free_port
from gatekeeper.v1 import eligibility_pb2, eligibility_pb2_grpc, enums_pb2, registry_pb2, registry_pb2_grpc
from loadtest.bench import Children, child_env, gatekeeper_command
from service.access import hash_token

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO = ROOT / "service" / "demo" / "people.jsonl"
HOSPITAL = "H51010500001"
ELIGIBLE = "D510105000456"  # demo data: registered 2024-01-01, no points
WRITER_TOKEN = "probe-writer-0123456789abcdefghijklmnopqrstuvwx"
READER_TOKEN = "probe-reader-0123456789abcdefghijklmnopqrstuvwx"
CHECK_PATH = "/gatekeeper.v1.EligibilityService/CheckClaim"
INVALID_UTF8 = b"\xff\xfe\xff\xfe\xff\xfe"
UINT64_MAX = 2**64 - 1


class ProbeError(RuntimeError):
    pass


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    log: pathlib.Path
    check_port: int
    admin_port: int
    metrics_port: int

    def tail(self, chars: int = 1500) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Pki:
    ca: pathlib.Path
    cert: pathlib.Path
    key: pathlib.Path


class Lab:
    """A private redis-server with the demo data, and the ``gatekeeper serve`` processes started from it."""

    def __init__(self, workdir: pathlib.Path, children: Children) -> None:
        self.workdir = workdir
        self.children = children
        self.redis = EmbeddedRedis(workdir / "redis", appendonly=False)
        self._serial = 0
        self._pki: Pki | None = None

    def __enter__(self) -> Lab:
        with self.children.shimmed("redis-server", self.workdir / "bin"):
            self.redis.start()
        done = subprocess.run(
            [*gatekeeper_command(), "load", str(DEMO)],
            env=child_env(GATEKEEPER_REDIS_URL=self.redis.url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise ProbeError(f"gatekeeper load failed: {done.stdout}{done.stderr}")
        return self

    def __exit__(self, *_exc: object) -> None:
        self.children.stop_all()
        self.redis.stop()

    def pki(self) -> Pki:
        if self._pki is None:
            import trustme

            d = self.workdir / "pki"
            d.mkdir(exist_ok=True)
            ca = trustme.CA()
            ca.cert_pem.write_to_path(str(d / "ca.pem"))
            leaf = ca.issue_cert("127.0.0.1", "localhost")
            (d / "server.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(d / "server.key"))
            self._pki = Pki(d / "ca.pem", d / "server.pem", d / "server.key")
        return self._pki

    def access_file(self) -> pathlib.Path:
        path = self.workdir / "access.toml"
        path.write_text(
            f'[[token]]\nname = "clerk"\nrole = "writer"\nsha256 = "{hash_token(WRITER_TOKEN)}"\n\n'
            f'[[token]]\nname = "auditor"\nrole = "reader"\nsha256 = "{hash_token(READER_TOKEN)}"\n'
        )
        return path

    def env(self, **settings: str) -> dict[str, str]:
        base = {
            "GATEKEEPER_REDIS_URL": self.redis.url,
            "GATEKEEPER_PROFILE": "national",
            "GATEKEEPER_DECISION_LOG": "off",
            "GATEKEEPER_LOG_FORMAT": "text",
            "GATEKEEPER_DATA_DIR": str(self.workdir / "data"),
        }
        return child_env(**{**base, **settings})

    def start(self, *, wait: bool = True, tls: bool = False, **settings: str) -> Serve:
        """``gatekeeper serve`` with these GATEKEEPER_* settings (name without the prefix, lower case)."""
        self._serial += 1
        ports = {
            "port": settings.pop("port", None) or str(free_port()),
            "admin_port": settings.pop("admin_port", None) or str(free_port()),
            "metrics_port": settings.pop("metrics_port", None) or str(free_port()),
        }
        env = {f"GATEKEEPER_{k.upper()}": v for k, v in {**ports, **settings}.items()}
        if tls:
            pki = self.pki()
            env |= {"GATEKEEPER_TLS_CERT": str(pki.cert), "GATEKEEPER_TLS_KEY": str(pki.key)}
        log = self.workdir / f"serve-{self._serial}.log"
        process = self.children.start([*gatekeeper_command(), "serve"], env=self.env(**env), log=log)
        serve = Serve(process, log, int(ports["port"]), int(ports["admin_port"]), int(ports["metrics_port"]))
        if wait:
            wait_serving(serve, self.channel_credentials() if tls else None)
        return serve

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.pki().ca.read_bytes())

    def stop(self, serve: Serve) -> None:
        self.children.stop(serve.process)


def open_channel(
    where: int | str, creds: grpc.ChannelCredentials | None = None, options: Sequence[tuple[str, int]] = ()
) -> grpc.Channel:
    """A channel of its own (its own connection) to ``where``: a loopback port, or a target."""
    target = f"127.0.0.1:{where}" if isinstance(where, int) else where
    opts = [*options, ("grpc.use_local_subchannel_pool", 1)]
    return grpc.secure_channel(target, creds, options=opts) if creds else grpc.insecure_channel(target, options=opts)


def wait_serving(serve: Serve, creds: grpc.ChannelCredentials | None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    with open_channel(serve.check_port, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if serve.process.poll() is not None:
                raise ProbeError(f"gatekeeper serve exited with {serve.process.returncode}:\n{serve.tail()}")
            with contextlib.suppress(grpc.RpcError):
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            time.sleep(0.1)
    raise ProbeError(f"port {serve.check_port} was not SERVING within {timeout:g}s:\n{serve.tail()}")


def code_of(call: Callable[[], object]) -> tuple[str, Any]:
    try:
        return "OK", call()
    except grpc.RpcError as error:
        return error.code().name, error  # type: ignore[attr-defined]


def day(text: str) -> Date:
    year, month, dd = (int(p) for p in text.split("-"))
    return Date(year=year, month=month, day=dd)


def one_line_claim(code: str = ELIGIBLE, *, claim_id: str = "PROBE-1", min_version: int = 0) -> Any:
    request = eligibility_pb2.CheckClaimRequest(
        claim_id=claim_id, institution_code=HOSPITAL, min_data_version=min_version
    )
    request.lines.add(line_id="L1", practitioner_code=code, service_date=day("2025-10-01"))
    return request


def decision(channel: grpc.Channel, code: str = ELIGIBLE) -> str:
    answer = eligibility_pb2_grpc.EligibilityServiceStub(channel).CheckClaim(one_line_claim(code), timeout=10)
    line = answer.decisions[0]
    return f"{enums_pb2.Decision.Name(line.decision)} {enums_pb2.Reason.Name(line.reason)} (data version {answer.data_version})"


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }


def metric(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def trailer_sizes(error: grpc.RpcError) -> tuple[int, int]:
    """(raw bytes of the trailers' names and values, the header-list size C-core holds against its limit).

    The second as HTTP/2 counts a header list (name + value + 32 per entry), with ``-bin`` values
    base64-encoded and the status message percent-encoded, as they travel.
    """
    message = error.details() or ""  # type: ignore[attr-defined]
    quoted = quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")
    raw = len("grpc-status") + 1 + len("grpc-message") + len(message.encode())
    listed = len("grpc-status") + 2 + 32 + len("grpc-message") + len(quoted) + 32
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        data = value if isinstance(value, bytes) else value.encode()
        raw += len(key) + len(data)
        listed += len(key) + ((len(data) + 2) // 3 * 4 if key.endswith("-bin") else len(data)) + 32
    return raw, listed


def say(text: str = "") -> None:
    print(text, flush=True)


# --- the probes -------------------------------------------------------------------------------------------


def points_request(operator_probe: str) -> registry_pb2.RecordPointsRequest:
    return registry_pb2.RecordPointsRequest(
        decision_no=f"PROBE-{operator_probe}-{random.randrange(10**9)}",
        practitioner_code=ELIGIBLE,
        institution_code=HOSPITAL,
        points=12,
        responsibility=enums_pb2.RESPONSIBILITY_MAIN,
        violation="probe",
        decided_on=day("2025-09-01"),
    )


def probe_auth(lab: Lab) -> None:
    say("## auth: RecordPoints of 12 points on the admin port")
    serve = lab.start(tls=True, admin_access=str(lab.access_file()))
    creds = lab.channel_credentials()
    with open_channel(serve.admin_port, creds) as admin_channel, open_channel(serve.check_port, creds) as check:
        admin = registry_pb2_grpc.RegistryServiceStub(admin_channel)
        say(f"before: {ELIGIBLE} at {HOSPITAL} on 2025-10-01 -> {decision(check)}")
        forged = [("x-operator", "x" * 5000)]
        for who, metadata in (
            ("anonymous, forged 5,000-char x-operator", forged),
            ("wrong token", [("authorization", "Bearer not-a-token"), *forged]),
            ("reader token", [("authorization", f"Bearer {READER_TOKEN}"), *forged]),
        ):
            code, answer = code_of(lambda md=metadata: admin.RecordPoints(points_request("x"), metadata=md, timeout=10))
            detail = f" ({answer.details()})" if code != "OK" else ""
            say(f"{who}: {code}{detail}; then -> {decision(check)}")
        samples = scrape(serve.metrics_port)
        failures = {
            dict(ls)["reason"]: int(v) for (n, ls), v in samples.items() if n == "gatekeeper_admin_auth_failures_total"
        }
        say(f"gatekeeper_admin_auth_failures_total: {failures}")
        log = serve.log.read_text(errors="replace")
        leaked = [s for s in (WRITER_TOKEN, READER_TOKEN, "not-a-token") if s in log]
        say(
            f"'admin call refused' lines in the server log: {log.count('admin call refused')}; secrets in it: {leaked or 'none'}"
        )
        writer = [("authorization", f"Bearer {WRITER_TOKEN}"), *forged]
        code, answer = code_of(lambda: admin.RecordPoints(points_request("w"), metadata=writer, timeout=10))
        say(f"writer token, same forged x-operator: {code}; then -> {decision(check)}")
        if code == "OK":
            file = admin.GetPractitionerFile(
                registry_pb2.GetPractitionerFileRequest(practitioner_code=ELIGIBLE),
                metadata=[("authorization", f"Bearer {READER_TOKEN}")],
                timeout=10,
            ).file
            actor = file.audit[-1].actor
            say(f"audit actor stored ({len(actor)} chars): {actor!r}")
    lab.stop(serve)


def probe_loopback(lab: Lab) -> None:
    say("## loopback: the zero-configuration default (admin port on loopback, no access file, no TLS)")
    forged = [("x-operator", "x" * 5000)]
    serve = lab.start()
    with open_channel(serve.admin_port) as admin_channel, open_channel(serve.check_port) as check:
        admin = registry_pb2_grpc.RegistryServiceStub(admin_channel)
        code, answer = code_of(lambda: admin.RecordPoints(points_request("z"), metadata=forged, timeout=10))
        say(f"anonymous from this machine: {code}; then -> {decision(check, ELIGIBLE)}")
        if code == "OK":
            say(f"audit actor stored: {answer.file.audit[-1].actor[:80]!r}...")
        warned = [ln for ln in serve.log.read_text(errors="replace").splitlines() if "every local caller" in ln]
        say(f"start-up warning: {warned[0].strip() if warned else 'none'}")
    lab.stop(serve)
    say()


def listeners(port: int) -> list[str]:
    """Addresses listening on TCP ``port`` in this network namespace, from /proc/net/tcp{,6}."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in pathlib.Path(table).read_text().splitlines()[1:]:
            f = row.split()
            address, hex_port = f[1].rsplit(":", 1)
            if f[3] == "0A" and int(hex_port, 16) == port:
                raw = bytes.fromhex(address)
                if len(raw) == 4:
                    found.append(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def probe_tls(lab: Lab) -> None:
    say("## tls: both ports")
    serve = lab.start(tls=True, admin_access=str(lab.access_file()))
    creds = lab.channel_credentials()
    for name, port in (("check", serve.check_port), ("admin", serve.admin_port)):
        for mode, channel_creds in (("plaintext", None), ("TLS", creds)):
            with open_channel(port, channel_creds) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                code, answer = code_of(lambda s=stub: s.Check(health_pb2.HealthCheckRequest(), timeout=3))
                status = f" {health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)}" if code == "OK" else ""
                if name == "admin" and code in ("OK", "UNIMPLEMENTED"):
                    reg = registry_pb2_grpc.RegistryServiceStub(channel)
                    code, _ = code_of(
                        lambda r=reg: r.GetPractitionerFile(
                            registry_pb2.GetPractitionerFileRequest(practitioner_code=ELIGIBLE),
                            metadata=[("authorization", f"Bearer {READER_TOKEN}")],
                            timeout=3,
                        )
                    )
                    status = " (GetPractitionerFile with the reader token)"
                say(f"{name} port {port}, {mode}: {code}{status}")
    lab.stop(serve)

    say("the Dockerfile's environment (GATEKEEPER_HOST=0.0.0.0) with GATEKEEPER_ADMIN_PORT set, no credentials:")
    serve = lab.start(host="0.0.0.0")
    say(f"admin host left at its default: serves; listening on the check port {listeners(serve.check_port)}, "
        f"on the admin port {listeners(serve.admin_port)}")  # fmt: skip
    lab.stop(serve)
    serve = lab.start(wait=False, host="0.0.0.0", admin_host="0.0.0.0")
    exit_code = serve.process.wait(timeout=60)
    refusal = [ln for ln in serve.log.read_text(errors="replace").splitlines() if ln.strip()]
    say(f"GATEKEEPER_ADMIN_HOST=0.0.0.0: exit {exit_code}: {refusal[-1].strip() if refusal else ''}")
    serve = lab.start(host="0.0.0.0", admin_host="0.0.0.0", admin_access=str(lab.access_file()), tls=True)
    say(f"GATEKEEPER_ADMIN_HOST=0.0.0.0 with an access file and TLS: serves; admin port listening on "
        f"{listeners(serve.admin_port)}")  # fmt: skip
    lab.stop(serve)
    say()


def probe_utf8(lab: Lab) -> None:
    say("## utf8: invalid UTF-8 in a string field of CheckClaim")
    serve = lab.start()
    with open_channel(serve.check_port) as channel:
        raw = channel.unary_unary(CHECK_PATH, request_serializer=None, response_deserializer=None)
        good = one_line_claim(claim_id="~CLAIM~").SerializeToString()
        good = good.replace(b"L1", b"~L")
        for field_name, marker in (("claim_id", b"~CLAIM~"), ("lines[0].line_id", b"~L")):
            data = good.replace(marker, INVALID_UTF8[: len(marker)])
            code, answer = code_of(lambda d=data: raw(d, timeout=10))
            detail = ""
            if code != "OK":
                status = rpc_status.from_call(answer)
                violations = []
                for packed in status.details if status else ():
                    bad = error_details_pb2.BadRequest()
                    if packed.Unpack(bad):
                        violations += [f"{v.field}: {v.description}" for v in bad.field_violations]
                detail = f" {answer.details()!r}; BadRequest {violations}"
            say(f"{field_name} = {INVALID_UTF8[: len(marker)]!r}: {code}{detail}")
        samples = scrape(serve.metrics_port)
        say(f"gatekeeper_undecodable_requests_total: {metric(samples, 'gatekeeper_undecodable_requests_total'):.0f}")
        log = serve.log.read_text(errors="replace")
        say(
            f"tracebacks in the server log: {log.count('Traceback')}; 'Exception deserializing': {log.count('Exception deserializing')}"
        )
    lab.stop(serve)
    say()


def probe_waiters(lab: Lab, callers: int = 64, seconds: float = 3.0) -> None:
    say(f"## waiters: {callers} closed-loop callers with min_data_version = 2^64-1 ({UINT64_MAX}), {seconds:g} s")
    serve = lab.start()
    request = one_line_claim(claim_id="STARVE-1", min_version=UINT64_MAX)
    channels = [open_channel(serve.check_port) for _ in range(callers)]
    stubs = [eligibility_pb2_grpc.EligibilityServiceStub(c) for c in channels]
    for stub in stubs:  # every caller connected before measuring
        stub.CheckClaim(one_line_claim(), timeout=10)
    codes: collections.Counter[str] = collections.Counter()
    times: list[float] = []
    stop = threading.Event()

    def waiter(stub: Any) -> None:
        while not stop.is_set():
            began = time.monotonic()
            code, answer = code_of(lambda: stub.CheckClaim(request, timeout=10))
            if code == "OK":
                line = answer.decisions[0]
                code = f"{enums_pb2.Decision.Name(line.decision)} {enums_pb2.Reason.Name(line.reason)}"
            codes[code] += 1
            times.append(time.monotonic() - began)

    def normal_for(duration: float) -> int:
        with open_channel(serve.check_port) as channel:
            decision(channel)
            answered, end = 0, time.monotonic() + duration
            while time.monotonic() < end:
                decision(channel)
                answered += 1
        return answered

    serial = iter(range(10**6))

    def read_your_writes(count: int = 20) -> collections.Counter[str]:
        """Register a doctor, then check him with min_data_version = the write's version, ``count`` times."""
        seen: collections.Counter[str] = collections.Counter()
        with open_channel(serve.admin_port) as admin_channel, open_channel(serve.check_port) as channel:
            admin = registry_pb2_grpc.RegistryServiceStub(admin_channel)
            check = eligibility_pb2_grpc.EligibilityServiceStub(channel)
            for _ in range(count):
                code = f"D59{next(serial):09d}"
                written = admin.RegisterPractitioner(
                    registry_pb2.RegisterPractitionerRequest(
                        practitioner_code=code,
                        institution_code=HOSPITAL,
                        category=enums_pb2.PRACTITIONER_CATEGORY_DOCTOR,
                        registered_on=day("2024-01-01"),
                    ),
                    timeout=10,
                )
                request = one_line_claim(code, min_version=written.data_version)
                line = check.CheckClaim(request, timeout=10).decisions[0]
                seen[f"{enums_pb2.Decision.Name(line.decision)} {enums_pb2.Reason.Name(line.reason)}"] += 1
        return seen

    try:
        alone = normal_for(seconds)
        honest_alone = read_your_writes()
        with concurrent.futures.ThreadPoolExecutor(callers) as pool:
            waiting = [pool.submit(waiter, stub) for stub in stubs]
            time.sleep(0.2)
            among = normal_for(seconds)
            honest_among = read_your_writes()
            stop.set()
            for future in waiting:
                future.result()
    finally:
        for channel in channels:
            channel.close()
    times.sort()
    say(f"waiter answers: {dict(codes)} ({sum(codes.values()) / (seconds + 0.2):,.0f}/s); time to answer median "
        f"{times[len(times) // 2] * 1000:.1f} ms, max {times[-1] * 1000:.1f} ms")  # fmt: skip
    say(f"one normal caller, one call at a time: {alone / seconds:,.0f} answers/s alone, {among / seconds:,.0f}/s "
        f"among the waiters (all of them on this machine's 2 cores, client and server alike)")  # fmt: skip
    say(f"read-your-write checks (register, then check with min_data_version = the write's version): "
        f"alone {dict(honest_alone)}; among the waiters {dict(honest_among)}")  # fmt: skip
    lab.stop(serve)
    say()


def probe_bad_lines(lab: Lab) -> None:
    say("## bad-lines: a claim with many invalid lines, read by C-core Python channels with metadata limits")
    serve = lab.start()
    limits = {
        "8 KB": [("grpc.max_metadata_size", 8192), ("grpc.absolute_max_metadata_size", 8192)],
        "16 KB": [("grpc.max_metadata_size", 16384), ("grpc.absolute_max_metadata_size", 16384)],
        "grpc's defaults (8 KB soft, 16 KB hard)": [],
    }
    for count in (150, 1000):
        request = eligibility_pb2.CheckClaimRequest(claim_id=f"BAD-{count}", institution_code=HOSPITAL)
        for i in range(count):
            request.lines.add(line_id=f"L{i}", practitioner_code=f"bad-code-{i}", service_date=day("2025-10-01"))
        for name, options in limits.items():
            with open_channel(serve.check_port, options=options) as channel:
                stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
                code, error = code_of(lambda s=stub, r=request: s.CheckClaim(r, timeout=30))
                if code == "OK":
                    say(f"{count} invalid lines, {name}: OK?! ({len(error.decisions)} decisions)")
                    continue
                raw, listed = trailer_sizes(error)
                status = rpc_status.from_call(error) if code == "INVALID_ARGUMENT" else None
                named, last = 0, ""
                for packed in status.details if status else ():
                    bad = error_details_pb2.BadRequest()
                    if packed.Unpack(bad):
                        named = sum(1 for v in bad.field_violations if v.field != "request")
                        last = bad.field_violations[-1].description
                say(f"{count} invalid lines, client limit {name}: {code}; trailers {raw:,} B raw, {listed:,} B as a header list; "
                    f"{named} violations listed, last: {last!r}; message {error.details()!r}")  # fmt: skip
    lab.stop(serve)
    say()


def probe_second_serve(lab: Lab) -> None:
    say("## second-serve: another gatekeeper serve (other profile) on a check port that is taken")
    first = lab.start(profile="national")
    port = first.check_port
    for host in ("127.0.0.1", "localhost"):
        began = time.monotonic()
        second = lab.start(wait=False, port=str(port), host=host, profile="xizang")
        try:
            code: int | None = second.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - began
        lines = [ln.strip() for ln in second.log.read_text(errors="replace").splitlines() if ln.strip()]
        if code is None:
            bind = [ln for ln in lines if "addresses added" in ln]
            say(f"second on GATEKEEPER_HOST={host}: STILL RUNNING after {elapsed:.0f} s; grpc logged: "
                f"{bind[0] if bind else 'nothing'}")  # fmt: skip
        else:
            say(f"second on GATEKEEPER_HOST={host}: exit {code} after {elapsed:.1f} s: {lines[-1] if lines else ''}")
        say(f"  listening on port {port}: {listeners(port)}")
        for target in (f"127.0.0.1:{port}", f"[::1]:{port}", f"localhost:{port}"):
            policies: collections.Counter[str] = collections.Counter()
            for _ in range(40):
                with open_channel(target) as channel:
                    stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
                    status, answer = code_of(lambda s=stub: s.CheckClaim(one_line_claim(), timeout=10))
                    policies[answer.policy_id if status == "OK" else status] += 1
            say(f"  40 fresh connections to {target} answered under: {dict(policies)}")
        if code is None:
            lab.stop(second)
    lab.stop(first)
    say()


def probe_same_port(lab: Lab) -> None:
    say("## same-port: admin port = check port")
    port = str(free_port())
    for host, admin_host in (("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"), ("127.0.0.1", "localhost")):
        serve = lab.start(wait=False, port=port, admin_port=port, host=host, admin_host=admin_host)
        try:
            code = serve.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            code = None
        lines = [ln.strip() for ln in serve.log.read_text(errors="replace").splitlines() if ln.strip()]
        if code is None:
            bind = [ln for ln in lines if "addresses added" in ln]
            say(f"GATEKEEPER_HOST={host} GATEKEEPER_ADMIN_HOST={admin_host}, both ports {port}: STILL RUNNING after 20 s; "
                f"listening {listeners(int(port))}; grpc logged: {bind[0] if bind else 'nothing'}")  # fmt: skip
            for target in (f"127.0.0.1:{port}", f"localhost:{port}"):
                say(f"  40 connections to {target}: RegistryService answered on {registry_answers(target)}, "
                    f"CheckClaim on {check_answers(target)}")  # fmt: skip
            lab.stop(serve)
        else:
            say(f"GATEKEEPER_HOST={host} GATEKEEPER_ADMIN_HOST={admin_host}, both ports {port}: exit {code}: "
                f"{lines[-1] if lines else ''}")  # fmt: skip
    serve = lab.start()
    target = f"127.0.0.1:{serve.check_port}"
    say(f"separate ports: 40 connections to the check port {target}: RegistryService answered on "
        f"{registry_answers(target)}, CheckClaim on {check_answers(target)}")  # fmt: skip
    lab.stop(serve)
    say()


def registry_answers(target: str, connections: int = 40) -> int:
    answered = 0
    for _ in range(connections):
        with open_channel(target) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            request = registry_pb2.GetPractitionerFileRequest(practitioner_code=ELIGIBLE)
            answered += code_of(lambda s=stub, r=request: s.GetPractitionerFile(r, timeout=5))[0] != "UNIMPLEMENTED"
    return answered


def check_answers(target: str, connections: int = 40) -> int:
    answered = 0
    for _ in range(connections):
        with open_channel(target) as channel:
            stub = eligibility_pb2_grpc.EligibilityServiceStub(channel)
            answered += code_of(lambda s=stub: s.CheckClaim(one_line_claim(), timeout=5))[0] == "OK"
    return answered


def probe_metrics(lab: Lab, count: int = 1000) -> None:
    say(f"## metrics: {count:,} undecodable requests to CheckClaim")
    serve = lab.start()
    rng = random.Random(7)
    with open_channel(f"127.0.0.1:{serve.check_port}") as channel:
        raw = channel.unary_unary(CHECK_PATH, request_serializer=None, response_deserializer=None)
        before = scrape(serve.metrics_port)
        codes: collections.Counter[str] = collections.Counter()
        for _ in range(count):
            # 0x0a = field 1 (claim_id) announcing 127 bytes, then only 2: a message cut short, never decodable
            data = b"\x0a\x7f" + rng.randbytes(2)
            codes[code_of(lambda d=data: raw(d, timeout=10))[0]] += 1
        after = scrape(serve.metrics_port)
    say(f"answers: {dict(codes)}")
    for name, labels in (
        ("gatekeeper_undecodable_requests_total", {}),
        ("grpc_server_handled_total", {"grpc_method": "CheckClaim", "grpc_code": "InvalidArgument"}),
        ("grpc_server_started_total", {"grpc_method": "CheckClaim"}),
    ):
        delta = metric(after, name, **labels) - metric(before, name, **labels)
        shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
        say(f"{name}{{{shown}}}: +{delta:.0f}")
    lab.stop(serve)
    say()


PROBES: dict[str, Callable[[Lab], None]] = {
    "auth": probe_auth,
    "loopback": probe_loopback,
    "tls": probe_tls,
    "utf8": probe_utf8,
    "waiters": probe_waiters,
    "bad-lines": probe_bad_lines,
    "second-serve": probe_second_serve,
    "same-port": probe_same_port,
    "metrics": probe_metrics,
}


@contextlib.contextmanager
def lab_dir() -> Iterator[pathlib.Path]:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="gk-probes-"))
    try:
        yield workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.probes", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("probes", nargs="*", metavar="PROBE", help=f"probes to run: {', '.join(PROBES)} [all]")
    args = parser.parse_args(argv)
    names = args.probes or list(PROBES)
    unknown = [n for n in names if n not in PROBES]
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(unknown)}; choose from {', '.join(PROBES)}")
    if shutil.which("redis-server") is None:
        print("probes: redis-server is not installed (scripts/bootstrap.sh)", file=sys.stderr)
        return 2
    for name in names:  # each probe on a fresh redis-server with the demo data
        with lab_dir() as workdir, Lab(workdir, Children()) as lab:
            try:
                PROBES[name](lab)
            except ProbeError as exc:
                print(f"probes: {name} FAILED: {exc}", file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
