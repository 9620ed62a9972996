"""service.pool.Pool: ``workers`` threads answer; a blocked call lends its place; never a starved call."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from service.pool import Pool


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


class Gate:
    """Calls that run until opened; counts how many run at once."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def call(self, lend: Callable[[], Callable[[], None]] | None = None) -> str:
        release = lend() if lend else None
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.opened.wait(10)
        finally:
            with self.lock:
                self.running -= 1
            if release:
                release()
        return "done"


def test_at_most_workers_threads_answer_ordinary_calls() -> None:
    pool, gate = Pool(3, 50), Gate()
    calls = [pool.submit(gate.call) for _ in range(20)]
    eventually(lambda: gate.running == 3)
    assert pool.threads == 3
    gate.opened.set()
    assert [c.result(10) for c in calls] == ["done"] * 20
    assert gate.most == 3
    pool.shutdown()


def test_a_blocked_call_lends_its_place_so_the_calls_behind_it_are_answered() -> None:
    pool, gate = Pool(2, 10), Gate()
    blocked = [pool.submit(gate.call, pool.lend) for _ in range(4)]  # more blockers than workers
    eventually(lambda: gate.running == 4)
    quick = pool.submit(lambda: "quick")
    assert quick.result(10) == "quick"
    gate.opened.set()
    assert all(c.result(10) == "done" for c in blocked)
    pool.shutdown()


def test_threads_beyond_the_allowed_count_end_after_their_call() -> None:
    pool, gate = Pool(2, 10), Gate()
    blocked = [pool.submit(gate.call, pool.lend) for _ in range(5)]
    eventually(lambda: gate.running == 5)
    gate.opened.set()
    for c in blocked:
        c.result(10)
    for _ in range(50):  # each finished call lets a surplus thread go
        pool.submit(lambda: None).result(10)
    eventually(lambda: pool.threads <= 2)
    pool.shutdown()


def test_the_limit_bounds_every_thread_even_when_all_are_blocked() -> None:
    pool, gate = Pool(1, 3), Gate()
    calls = [pool.submit(gate.call, pool.lend) for _ in range(6)]
    eventually(lambda: gate.running == 3)
    assert pool.threads == 3
    gate.opened.set()
    assert all(c.result(10) == "done" for c in calls)
    pool.shutdown()


def test_a_release_counts_once() -> None:
    pool = Pool(1, 5)
    release = pool.lend()
    release()
    release()
    assert pool._allowed() == 1
    pool.shutdown()


def test_results_and_exceptions_reach_the_future() -> None:
    pool = Pool(2, 2)
    assert pool.submit(lambda x, *, y: x + y, 1, y=2).result(10) == 3
    failing = pool.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    pool.shutdown()
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)


def test_shutdown_can_cancel_queued_calls() -> None:
    pool, gate = Pool(1, 1), Gate()
    running = pool.submit(gate.call)
    eventually(lambda: gate.running == 1)
    queued = pool.submit(lambda: "never")
    pool.shutdown(wait=False, cancel_futures=True)
    gate.opened.set()
    assert running.result(10) == "done"
    assert queued.cancelled()
