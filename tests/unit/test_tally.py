"""service.tally: counts taken per thread without locks arrive exactly once, as observe would put them."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from service.tally import TalliedHistogram, Tally


def test_every_thread_count_arrives_once_also_from_ended_threads() -> None:
    counter = Counter("c", "c", registry=CollectorRegistry())
    tally = Tally()
    sink = counter.inc

    def work(n: int) -> None:
        row = tally.row()
        for _ in range(n):
            row[sink] = row.get(sink, 0) + 1

    threads = [threading.Thread(target=work, args=(1000,)) for _ in range(8)]
    for t in threads:
        t.start()
    tally.flush()  # while they run: whatever is there so far
    for t in threads:
        t.join()
    tally.flush()
    tally.flush()  # nothing new: nothing added
    assert counter._value.get() == 8000
    work(5)  # this thread's row, after the ended ones were retired
    tally.flush()
    assert counter._value.get() == 8005


@given(st.lists(st.floats(0, 20, allow_nan=False), max_size=50))
def test_a_tallied_histogram_reads_as_observe_would(values: list[float]) -> None:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    buckets = (0.5, 1, 2.5, 5, 10)
    h1 = Histogram("h", "h", ["m"], buckets=buckets, registry=direct).labels("x")
    h2 = Histogram("h", "h", ["m"], buckets=buckets, registry=tallied).labels("x")
    tally, through = Tally(), TalliedHistogram(h2)
    for v in values:
        h1.observe(v)
        through.observe(tally.row(), v)
    tally.flush()
    assert _without_created(generate_latest(tallied)) == _without_created(generate_latest(direct))


def _without_created(text: bytes) -> list[str]:
    lines = text.decode().splitlines()
    return [line for line in lines if "_created" not in line]
