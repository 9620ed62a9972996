"""A local redis-server child process: the embedded default and the test fixtures' Redis.

Loopback only, on a free port, with AOF persistence in ``data_dir`` so the agency's ledger
survives restarts of the embedded default. The AOF is fsynced on every write (``appendfsync
always``): an acknowledged admin write survives a crash of the host, not only of the process.

One data directory, one redis-server: the owner holds a lock on ``data_dir/embedded.lock`` while it
runs, the child dies with its parent (``PR_SET_PDEATHSIG``), and a redis-server left behind by an
owner that was SIGKILLed before that could act (its pid is in ``redis.pid``) is stopped first.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from typing import IO

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def _dying_with_parent(args: list[str]) -> list[str]:
    """The command run so that it gets SIGTERM when its parent dies (util-linux ``setpriv``;
    without it, a leftover is still found and stopped by the next start)."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", *args] if setpriv else args


def _stop_leftover(pid_file: pathlib.Path) -> None:
    """Stop a redis-server an earlier owner of this directory left running (it was SIGKILLed)."""
    try:
        pid = int(pid_file.read_text().strip())
        comm = pathlib.Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return
    if not comm.startswith("redis-server"):
        return  # the pid was reused by something else
    try:  # redis-server chdirs into its --dir: only ours is stopped, not another directory's
        if pathlib.Path(f"/proc/{pid}/cwd").resolve() != pid_file.parent.resolve():
            return
    except OSError:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and pathlib.Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    def __init__(self, data_dir: pathlib.Path, port: int | None = None, *, appendonly: bool = True) -> None:
        self.data_dir = data_dir.resolve()  # redis-server chdirs into it; relative paths would break
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedRedisError("redis-server is not installed; run scripts/bootstrap.sh or set REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._take_directory()
        pid_file = self.data_dir / "redis.pid"
        _stop_leftover(pid_file)
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--pidfile", str(pid_file),
            "--save", "",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(_dying_with_parent(args), stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _take_directory(self) -> None:
        lock = (self.data_dir / "embedded.lock").open("a+b")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as taken:
            lock.seek(0)
            holder = lock.read().decode(errors="replace").strip() or "another process"
            lock.close()
            raise EmbeddedRedisError(
                f"{self.data_dir} is in use by {holder}; one gatekeeper per data directory"
            ) from taken
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n".encode())
        lock.flush()
        self._lock = lock

    def _wait_ready(self, timeout: float) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise EmbeddedRedisError(f"redis-server exited with {self.process.returncode}; see {self.data_dir}")
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
            finally:
                client.close()
        raise EmbeddedRedisError(f"redis-server on port {self.port} did not answer within {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._lock is not None:
            self._lock.close()  # releases the directory
            self._lock = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
