"""The servers' thread pool: ``workers`` threads answer calls, and a call that blocks lends its place.

grpc's sync server runs every call on one executor. Checks waiting for ``min_data_version``,
watchers and bulk streams hold their thread for long, so the server needs threads beyond its
workers for them; but a ``ThreadPoolExecutor`` of that size starts a thread whenever none is idle,
and under load all of them answer ordinary checks at once, contending for the GIL (measured: 1-line
checks 10-20% slower on 344 threads than on 16; docs/performance.md). Here at most ``workers``
threads take calls, plus one for each call that is blocked now (``lend``), up to ``limit`` in all;
a thread beyond that count ends after its call. A blocked call is never left without a thread to
answer the calls behind it.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from concurrent import futures
from typing import Any

Lend = Callable[[], Callable[[], None]]  # Pool.lend: take a place, get its release


def no_lending() -> Callable[[], None]:
    """The ``Lend`` of code that runs on no ``Pool`` (tests, tools)."""
    return lambda: None


_Call = tuple["futures.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class Pool(futures.Executor):
    def __init__(self, workers: int, limit: int, name: str = "grpc") -> None:
        self.workers = workers
        self.limit = max(limit, workers)
        self._name = name
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._idle = 0  # threads waiting for a call
        self._pending = 0  # calls queued and not yet taken
        self._blocked = 0  # calls that lent their place (``lend``)
        self._closed = False
        self._numbers = itertools.count()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        future: futures.Future[Any] = futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._pending += 1
            self._calls.put((future, fn, args, kwargs))
            self._grow()
        return future

    def lend(self) -> Callable[[], None]:
        """The calling thread is about to block for long: let one more thread answer meanwhile.
        Returns the release (idempotent, so a stream may call it at its end and at the call's)."""
        with self._lock:
            self._blocked += 1
            self._grow()
        pending = [True]

        def release() -> None:
            try:
                pending.pop()  # atomic: exactly one caller gets past it
            except IndexError:
                return
            with self._lock:
                self._blocked -= 1

        return release

    @property
    def threads(self) -> int:
        return len(self._threads)

    def _allowed(self) -> int:
        return min(self.limit, self.workers + self._blocked)

    def _grow(self) -> None:
        """With the lock held: start a thread if a queued call has none to take it and one more is allowed."""
        if self._pending > self._idle and len(self._threads) < self._allowed():
            thread = threading.Thread(target=self._work, name=f"{self._name}_{next(self._numbers)}", daemon=True)
            self._threads.add(thread)
            self._idle += 1  # it will take a call as soon as it runs
            thread.start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            call = self._calls.get()
            with self._lock:
                self._idle -= 1
                if call is None:
                    self._threads.discard(me)
                    return
                self._pending -= 1
            _run(call)
            with self._lock:
                if len(self._threads) > self._allowed() or self._closed:
                    self._threads.discard(me)
                    return
                self._idle += 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        if cancel_futures:
            self._cancel_queued()
        for _ in threads:
            self._calls.put(None)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def _cancel_queued(self) -> None:
        while True:
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                return
            if call is not None:
                with self._lock:
                    self._pending -= 1
                call[0].cancel()


def _run(call: _Call) -> None:
    future, fn, args, kwargs = call
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)
