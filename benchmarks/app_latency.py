"""App live-update latency: how long a cheap change takes to reach every plot, on the 16k base.

    python benchmarks/app_latency.py                  # 8192 samples, torch threads 1 and 2
    python benchmarks/app_latency.py --repeats 3 --threads 1 --samples 16384

For each cheap change (rel_p, a constant magnitude std, truncation, the sample count) a headless
`Controller` is set to a value it has not seen (so nothing comes from the result caches), and the
script measures:
- update: from setting the parameter to the controller publishing its first drawing (the sampled
  statistics with the expected rates and interference; a truncation's superposition statistics
  come from the base's prefix tables);
- drawings: how many times the results were published for the change (1: everything at once);
- plots: building every HoloViews plot from the last published results (what the page does off
  the UI thread);
- render: turning the plots of one tab into Bokeh models (what the UI thread does; the page only
  renders the visible tab), shown for the L0 tab and for the slowest tab;
- every plot: until the last drawing is published, plus building its plots, plus rendering the
  slowest tab: the longest a user waits for any plot of the change.
Prints a Markdown table (medians and maxima over the changes of each kind) and the machine load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import holoviews as hv  # noqa: E402
import torch  # noqa: E402

from synthviz.app import Controller  # noqa: E402
from synthviz.app.views import build_plots  # noqa: E402

TABS = {"L0": ["l0"], "Frequencies": ["frequencies"], "Co-occurrence": ["cooccurrence"],
        "Hierarchy": ["tree", "forest"], "Superposition": ["cos_hist", "max_cos", "interference"],
        "Magnitudes": ["magnitudes"]}


def changes(repeats: int) -> dict[str, list[dict]]:
    """Fresh values for each kind of cheap change (each computed once: no cache hits)."""
    rel = [0.5, 0.75, 1.25, 1.5, 0.6, 0.9, 1.1, 0.4, 1.7, 0.3][:repeats]
    std = [0.0, 0.1, 2.5, 1.0, 0.3, 0.7, 1.5, 2.0, 0.05, 0.2][:repeats]
    trunc = [8192, 4096, 12288, 6144, 10240, 2048, 14336, 3072, 5120, 7168][:repeats]
    return {
        "rel_p": [{"rel_p": v} for v in rel],
        "std (constant)": [{"std_mode": "constant", "std": v} for v in std],
        "truncation": [{"num_features": v} for v in trunc],
        "samples": [{"samples": v} for v in (4096, 16384, 2048, 32768, 1024)[:repeats]],
    }


def reset(c: Controller, samples: int) -> None:
    c.param.update(rel_p=1.0, std_mode="base", num_features=16384, samples=samples)
    c.wait(600)


def measure(c: Controller, change: dict) -> dict[str, float]:
    published: list[tuple[float, object]] = []
    lock = threading.Lock()

    def record(event):
        with lock:
            published.append((time.perf_counter(), event.new))
    watcher = c.param.watch(record, ["results"])
    target = {k: v for k, v in change.items()}
    t0 = time.perf_counter()
    c.param.update(**change)
    c.wait(600)
    c.param.unwatch(watcher)
    mine = [(t, r) for t, r in published
            if r is not None and all(r.settings[k] == v for k, v in target.items())]
    first_t, first = mine[0]
    last_t, last = mine[-1]
    t1 = time.perf_counter()
    plots = build_plots(first, c)
    t_plots = time.perf_counter() - t1
    render = {}
    for tab, names in TABS.items():
        t2 = time.perf_counter()
        for n in names:
            hv.render(plots[n], backend="bokeh")
        render[tab] = time.perf_counter() - t2
    if last is not first:
        t1 = time.perf_counter()
        build_plots(last, c)
        t_plots = time.perf_counter() - t1
    return {"update": first_t - t0, "plots": t_plots, "render_l0": render["L0"],
            "render_max": max(render.values()), "slowest_tab": max(render, key=render.get),
            "complete": last_t - t0, "drawings": len(mine),
            "every": last_t - t0 + t_plots + max(render.values()),
            "sampling": first.stats.seconds}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=4, help="changes of each kind (max 10)")
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--threads", default="1,2", help="torch thread counts to measure, e.g. 1,2")
    args = ap.parse_args(argv)
    hv.extension("bokeh")
    c = Controller(samples=args.samples)
    c.wait(900)
    if c.error:
        print("controller error:", c.error)
        return 1
    rows = []
    for threads in [int(x) for x in args.threads.split(",")]:
        torch.set_num_threads(threads)
        reset(c, args.samples)
        build_plots(c.results, c)  # warm the plotting code paths once
        for kind, values in changes(args.repeats).items():
            ms = []
            load0 = os.getloadavg()[0]
            for change in values:
                ms.append(measure(c, change))
                reset(c, args.samples)
            load1 = os.getloadavg()[0]
            med = {k: statistics.median(m[k] for m in ms) for k in
                   ("update", "plots", "render_l0", "render_max", "every", "complete",
                    "sampling", "drawings")}
            mx = {k: max(m[k] for m in ms) for k in ("every", "update", "drawings")}
            slow = statistics.mode(m["slowest_tab"] for m in ms)
            rows.append((threads, kind, len(ms), med, mx, slow, load0, load1))
            print(f"threads {threads} {kind}: every plot median {med['every']:.2f} s "
                  f"(max {mx['every']:.2f}), drawings {mx['drawings']}", flush=True)
    c.close()
    print()
    print(f"16k base, {args.samples:,} samples per update; medians over {args.repeats} fresh "
          f"values per kind; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    print("| torch threads | change | update (s) | drawings | plots (s) | render L0 tab (s) | "
          "slowest tab render (s) | every plot (s), median / max | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for threads, kind, n, med, mx, slow, l0, l1 in rows:
        print(f"| {threads} | {kind} | {med['update']:.2f} | {mx['drawings']:.0f} | "
              f"{med['plots']:.2f} | {med['render_l0']:.2f} | {med['render_max']:.2f} ({slow}) | "
              f"{med['every']:.2f} / {mx['every']:.2f} | {l0:.1f} -> {l1:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
