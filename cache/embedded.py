"""A local redis-server child process: the embedded default and the test fixtures' Redis.

Loopback only, on a free port, with AOF persistence in ``data_dir`` so the agency's ledger
survives restarts of the embedded default.
"""

from __future__ import annotations

import pathlib
import shutil
import socket
import subprocess
import time

import redis


class EmbeddedRedisError(RuntimeError):
    pass


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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise EmbeddedRedisError("redis-server is not installed; run scripts/bootstrap.sh or set REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes" if self.appendonly else "no",
            "--save", "",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        self._wait_ready(timeout)
        return self

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
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
