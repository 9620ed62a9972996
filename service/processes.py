"""``gatekeeper serve --processes N``: one supervisor, N forked workers sharing the replica (docs/processes.md).

The supervisor loads the snapshot once on its main thread, freezes the heap (``gc.freeze``) and forks
the workers, which share the replica copy-on-write. Each worker is a whole single-process server
(``app.start`` with ``app.Inherited``): its own follower thread on its own Redis connection, its own
check and admin gRPC servers bound with SO_REUSEPORT to the ports the supervisor reserved, health,
decision log and watch hub. The supervisor never creates anything of grpc's (grpcio does not survive
a fork); its own surface is the merged /metrics (prometheus-client multiprocess mode, plain HTTP).

SIGTERM or SIGINT: every worker drains as a single process does, then the supervisor exits 0. A
worker that dies otherwise is logged and forked again from the supervisor (whose replica is the
startup snapshot: the new worker catches up from the feed, or re-snapshots if it was trimmed); more
than ``RESTARTS`` deaths in ``RESTART_WINDOW`` seconds, or a worker that exits 2 (its settings or
ports cannot work), stops them all and exits non-zero. Workers die with the supervisor
(``PR_SET_PDEATHSIG``), even when it is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections import deque
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from cache.replica import Replica
from service.config import BindError, ConfigError, Settings

if TYPE_CHECKING:
    from service.app import Inherited

log = logging.getLogger("gatekeeper")
RESTARTS, RESTART_WINDOW = 5, 60.0  # more worker deaths than this within the window: give up
DRAIN_TIMEOUT = 30.0  # a worker still running this long after SIGTERM is killed
_PR_SET_PDEATHSIG = 1
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_FORWARDED = (*_STOP_SIGNALS, signal.SIGHUP)


def serve(settings: Settings) -> int:
    """Run the supervisor until SIGTERM; its exit code. Call before anything imports prometheus_client."""
    metrics_dir = _private_metrics_dir()
    try:
        return _Supervisor(settings).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _private_metrics_dir() -> str:
    """A fresh PROMETHEUS_MULTIPROC_DIR: prometheus-client picks file-backed values by this variable
    when it is first imported (``values.ValueClass``), so it is set before, or the choice made again."""
    path = tempfile.mkdtemp(prefix="gatekeeper-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values = sys.modules.get("prometheus_client.values")
    if values is not None:
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]
    return path


class _Supervisor:
    def __init__(self, settings: Settings) -> None:
        from service import app  # imports prometheus_client: after the metrics directory is set

        self.app = app
        self.settings = settings
        self.count = settings.effective_processes
        self.stop_requested = False  # set by SIGTERM/SIGINT (a flag: a handler must not take locks)
        self.workers: dict[int, int] = {}  # pid -> worker index
        self.deaths: deque[float] = deque()
        self.held: list[socket.socket] = []  # reserved ports and the metrics listener: closed in workers
        self.running = app.Running(0, 0, settings.redis_url or "", Replica())

    def run(self) -> int:
        try:
            inherited = self._prepare()
            for index in range(self.count):
                self._fork(index, inherited)
            self._serve_metrics()
            log.info(
                "gatekeeper supervising",
                extra={"processes": self.count, "check_port": inherited.check_port,
                       "admin_port": inherited.admin_port or "off", "workers": list(self.workers)},
            )  # fmt: skip
            code = self._watch(inherited)
            return self._drain() or code
        except BaseException:
            self._drain()  # no worker outlives a supervisor that failed
            raise
        finally:
            self.running.stop()  # the embedded Redis, last
            for sock in self.held:
                sock.close()

    def _prepare(self) -> Inherited:
        """Redis, the snapshot, the ports: everything the workers share, before the first fork."""
        from cache.replica import Follower
        from service.rules.profile import load_profile
        from service.server import _refuse_taken, reserve_port

        s = self.settings
        for sig in _FORWARDED:
            signal.signal(sig, self._on_signal)
        check_port, held = reserve_port(f"{s.host}:{s.port}")
        self.held += held
        admin_port = 0
        if s.effective_admin_port:
            admin_port, held = reserve_port(f"{s.admin_host}:{s.effective_admin_port}")
            self.held += held
        if s.metrics_port:
            _refuse_taken(f"{s.host}:{s.metrics_port}")
        profile = load_profile(s.profile)
        store = self.app.open_store(s, profile, self.running)
        if not Follower(self.running.replica, store).prime():
            log.warning("the store is in doubt: each worker takes its own snapshot once it can be trusted")
        store.client.close()  # the workers open their own connections
        self.profile = profile
        return self.app.Inherited(self.running.replica, self.running.redis_url, check_port, admin_port)

    def _serve_metrics(self) -> None:
        if not self.settings.metrics_port:
            return
        from prometheus_client import start_http_server

        from service.metrics import multiprocess_registry

        registry = multiprocess_registry(self.profile.policy_id, self.profile.name, lambda: list(self.workers))
        http, _thread = start_http_server(self.settings.metrics_port, addr=self.settings.host, registry=registry)
        self.held.append(http.socket)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if signum == signal.SIGHUP:
            self._signal_workers(signal.SIGHUP)  # each worker takes its certificate files again
        else:
            self.stop_requested = True

    def _signal_workers(self, signum: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    # workers ---------------------------------------------------------------------------------------

    def _fork(self, index: int, inherited: Inherited) -> None:
        gc.freeze()  # the replica and everything else so far: never touched by a worker's collector
        blocked = set(_FORWARDED)
        signal.pthread_sigmask(signal.SIG_BLOCK, blocked)  # no supervisor handler may run in the child
        try:
            pid = os.fork()
            if pid == 0:
                _worker(index, os.getppid(), inherited, self.held, self.app, self.settings)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, blocked)
        self.workers[pid] = index
        log.info("started worker", extra={"worker": index, "pid": pid})

    def _watch(self, inherited: Inherited) -> int:
        """Until told to stop: re-fork workers that die. Non-zero when the supervisor must give up."""
        while not self.stop_requested:
            time.sleep(0.1)
            for pid, status in self._reap():
                index = self.workers.pop(pid)
                code = os.waitstatus_to_exitcode(status)
                log.error("worker died", extra={"worker": index, "pid": pid, "exit_code": code})
                if code == 2:
                    log.error("worker %d cannot serve with these settings; stopping", index)
                    return 2
                if not self._may_restart():
                    log.error("workers died %d times within %.0f s; stopping", RESTARTS + 1, RESTART_WINDOW)
                    return 1
                self._fork(index, inherited)
        return 0

    def _reap(self) -> list[tuple[int, int]]:
        """Workers that exited, with their wait statuses (only ours: the embedded Redis is not reaped here)."""
        from prometheus_client import multiprocess

        gone = []
        for pid in list(self.workers):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
                gone.append((pid, status))
        return gone

    def _may_restart(self) -> bool:
        now = time.monotonic()
        self.deaths.append(now)
        while self.deaths and self.deaths[0] < now - RESTART_WINDOW:
            self.deaths.popleft()
        return len(self.deaths) <= RESTARTS

    def _drain(self) -> int:
        """SIGTERM every worker and wait for them all (killing those past ``DRAIN_TIMEOUT``); 0 when all exited 0."""
        self._signal_workers(signal.SIGTERM)
        deadline, worst = time.monotonic() + DRAIN_TIMEOUT, 0
        while self.workers:
            if time.monotonic() > deadline:
                self._signal_workers(signal.SIGKILL)
            for pid, status in self._reap():
                code = os.waitstatus_to_exitcode(status)
                index = self.workers.pop(pid)
                if code != 0:
                    log.error("worker exited", extra={"worker": index, "pid": pid, "exit_code": code})
                worst = worst or (1 if code else 0)
            time.sleep(0.05)
        return worst


def _worker(index: int, supervisor: int, inherited: Inherited, held: list[socket.socket], app: ModuleType,
            settings: Settings) -> NoReturn:  # fmt: skip
    """The forked child: one whole server on the inherited replica; never returns into the supervisor."""
    code = 1
    try:
        for sig in _FORWARDED:  # until the server's own handlers: stopping while starting needs no drain
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, set(_FORWARDED))
        _die_with(supervisor)
        for sock in held:  # the supervisor's; its copies stay open
            sock.close()
        _name_logs(index)
        from prometheus_client import CollectorRegistry

        code = app.run_until_signalled(app.start(settings, registry=CollectorRegistry(), inherited=inherited))
    except (BindError, ConfigError) as error:
        log.error("worker cannot serve: %s", error)
        code = 2
    except BaseException:
        log.exception("worker failed")
    finally:
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)


def _die_with(supervisor: int) -> None:
    """SIGTERM (a drain) when the supervisor dies, even by SIGKILL; at once if it is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning("worker cannot follow its supervisor's death: prctl errno %d", ctypes.get_errno())
    if os.getppid() != supervisor:
        os._exit(1)


def _name_logs(index: int) -> None:
    """Every log line of a worker says which one wrote it (worker index and pid)."""
    pid = os.getpid()

    def tag(record: logging.LogRecord) -> bool:
        record.worker, record.pid = index, pid
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
