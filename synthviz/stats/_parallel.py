"""Run independent pieces of a statistic on Python worker threads, each with torch single-threaded.

torch releases the GIL inside its operators, so `torch.get_num_threads()` workers keep the cores
busy. Compared with torch's own intra-op threads this avoids an OpenMP barrier after every
medium-sized operation, which on a machine shared with other processes made such loops several
times slower. The intra-op thread count is restored afterwards (it is process-wide meanwhile).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import torch

_LOCK = threading.Lock()  # one threaded statistic at a time changes the thread setting


def workers_for(device: torch.device) -> int:
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def run_phases(phases: Sequence[tuple[Callable, Sequence]], n_workers: int,
               new_state: Callable[[], dict] | None = None,
               poll: Callable[[], None] | None = None) -> list[dict]:
    """For each (fn, items) phase in turn, call fn(item, state) for every item, spread over
    `n_workers` threads (each with its own `state`, from `new_state`). `poll` is called from the
    calling thread about 5 times a second (progress reporting). Returns the workers' states."""
    states = [new_state() if new_state else {} for _ in range(max(1, n_workers))]
    if n_workers <= 1:
        for fn, items in phases:
            for it in items:
                fn(it, states[0])
                if poll:
                    poll()
        return states
    with _LOCK:
        saved = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=n_workers) as pool:
                for fn, items in phases:
                    queue = list(items)
                    qlock = threading.Lock()

                    def work(state, fn=fn, queue=queue, qlock=qlock):
                        while True:
                            with qlock:
                                if not queue:
                                    return
                                it = queue.pop(0)
                            fn(it, state)

                    futs = [pool.submit(work, st) for st in states]
                    try:
                        while True:
                            finished, _ = wait(futs, timeout=0.2)
                            if poll:
                                poll()  # may raise (e.g. Cancelled from a progress callback)
                            if len(finished) == len(futs):
                                break
                    except BaseException:
                        with qlock:  # workers stop after their current item
                            queue.clear()
                        wait(futs)
                        raise
                    for f in futs:
                        f.result()  # re-raise a worker's error
        finally:
            torch.set_num_threads(saved)
    return states
