"""`synthviz.stats._parallel.run_phases`: every item once, and a raising poll stops the work."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from synthviz.errors import Cancelled
from synthviz.stats._parallel import run_phases


def test_every_item_runs_once_and_threads_are_restored():
    saved = torch.get_num_threads()
    seen: list[int] = []
    lock = threading.Lock()

    def fn(item, state):
        with lock:
            seen.append(item)
        state["n"] += 1
    states = run_phases([(fn, range(50)), (fn, range(50, 80))], 2, lambda: {"n": 0})
    assert sorted(seen) == list(range(80)) and sum(s["n"] for s in states) == 80
    assert torch.get_num_threads() == saved


def test_a_raising_poll_stops_the_remaining_items():
    done: list[int] = []

    def fn(item, state):
        time.sleep(0.05)
        done.append(item)

    def poll():
        if done:
            raise Cancelled("superposition")
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        run_phases([(fn, range(200))], 2, None, poll)
    # without the stop, 200 items x 0.05 s on 2 workers would take 5 s
    assert len(done) < 40 and time.perf_counter() - t0 < 3, len(done)
