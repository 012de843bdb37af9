"""Side-by-side benchmarks of synthviz and sae_lens 6.54.12 at the SynthSAEBench-16k config.

    python -m benchmarks.run                       # every part, then writes benchmarks/RESULTS.md
    python -m benchmarks.run --quick               # fewer repetitions, smaller scaling table
    python -m benchmarks.run --parts sample,memory # only some parts (others keep their last results)
    python -m benchmarks.run --render              # rewrite RESULTS.md from results.json only

Parts:
  sample         sample_with_features(4096) and (1024), samples/s, medians of several runs, at 2 and
                 1 torch threads, plus where synthviz's time goes.
  build          the 16k base from its config with 100 orthogonalization steps: synthviz timed in
                 full (no disk cache); sae_lens extrapolated from a few timed steps of its own
                 `orthogonalize_embeddings` at 16384x768 plus its measured build without them.
  superposition  rho_mm, p95/p99 and mean |cos| of 16384x768: sae_lens's compute_superposition_stats
                 against synthviz.stats.superposition, with the largest difference of the numbers.
  memory         peak memory added by sampling one 4096 batch, each in a fresh subprocess.
  scaling        samples/s for N = 4k, 16k, 64k, 256k (4-way branching, depth 3, N/128 roots).

Results of every part are kept in benchmarks/results.json (so a partial run updates only its parts)
and rendered into benchmarks/RESULTS.md. The sections of RESULTS.md that other work fills in
(app latency, server memory) are carried over unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import gc
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"
PARTS = ("sample", "build", "superposition", "memory", "scaling")
KEEP_SECTIONS = ("App live-update latency", "Server memory (sessions)",
                 "SAE evaluation (issue 14)")
PLACEHOLDER = "_To be filled in by the app work; not measured by `benchmarks/run.py`._"

log = logging.getLogger("benchmarks")


# ---------------------------------------------------------------------------- helpers

def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _times(fn, reps: int, warmup=None) -> list[float]:
    if warmup is not None:
        warmup()
    out = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _med(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _mem_available() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def machine() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    ram = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    import sae_lens
    import synthviz
    return {
        "cpu": cpu, "cores": os.cpu_count(), "ram_gib": round(ram / 2**30, 1),
        "python": platform.python_version(), "torch": torch.__version__,
        "sae_lens": sae_lens.__version__, "synthviz": synthviz.__version__,
        "platform": platform.platform(), "default_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }


class Context:
    """The 16k base for both implementations (sae_lens loads synthviz's saved files: same model)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self._tmp = tempfile.TemporaryDirectory(prefix="synthviz-bench-")
        self.folder = Path(self._tmp.name) / "base"
        self._ours = self._theirs = None

    def ours(self):
        if self._ours is None:
            import synthviz
            self._ours = synthviz.load("base", device="cpu")
        return self._ours

    def folder_ready(self) -> Path:
        if not self.folder.exists():
            self.ours().save(self.folder)
        return self.folder

    def theirs(self):
        if self._theirs is None:
            from sae_lens.synthetic import SyntheticModel
            self._theirs = SyntheticModel.load_from_disk(self.folder_ready())
            gen = self._theirs.activation_generator
            ours = self.ours()
            assert torch.equal(gen.firing_probabilities, ours.firing_probabilities)
            assert torch.equal(self._theirs.feature_dict.feature_vectors.data, ours.feature_vectors)
        return self._theirs

    def close(self):
        self._tmp.cleanup()


# ---------------------------------------------------------------------------- sample

def part_sample(ctx: Context, threads_list: list[int]) -> dict:
    from synthviz import sampling
    ours, theirs = ctx.ours(), ctx.theirs()
    reps_ours, reps_theirs = (3, 1) if ctx.quick else (7, 3)
    out = {"rows": [], "split": {}, "reps": {"synthviz": reps_ours, "sae_lens": reps_theirs}}
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    before = torch.get_num_threads()
    for batch in (4096, 1024):
        _say(f"sample: batch {batch}, threads {threads_list}, interleaved")
        t_ours = {th: [] for th in threads_list}
        t_dense = {th: [] for th in threads_list}
        t_theirs = {th: [] for th in threads_list}
        loads = []
        for th in threads_list:  # warm-ups: lazy tables, caches, allocator
            torch.set_num_threads(th)
            ours.sample_with_features(64, generator=gen)
            theirs.sample_with_features(64)
        # the two implementations and the thread settings take turns, so that they all see the
        # same mix of load from the machine's other users
        for rep in range(max(reps_ours, reps_theirs)):
            for th in threads_list:
                torch.set_num_threads(th)
                gc.collect()
                if rep < reps_ours:
                    t0 = time.perf_counter()
                    ours.sample_with_features(batch, generator=gen)
                    t_ours[th].append(time.perf_counter() - t0)
                if rep < max(1, reps_ours // 2):
                    t0 = time.perf_counter()
                    ours.sample_with_features(batch, generator=gen, dense=True)
                    t_dense[th].append(time.perf_counter() - t0)
                if rep < reps_theirs:
                    t0 = time.perf_counter()
                    theirs.sample_with_features(batch)
                    t_theirs[th].append(time.perf_counter() - t0)
                loads.append(_load())
        for th in threads_list:
            out["rows"].append({
                "threads": th, "batch": batch,
                "synthviz_s": t_ours[th], "synthviz_dense_s": t_dense[th], "sae_lens_s": t_theirs[th],
                "synthviz_per_s": batch / _med(t_ours[th]),
                "synthviz_dense_per_s": batch / _med(t_dense[th]),
                "sae_lens_per_s": batch / _med(t_theirs[th]),
                "ratio": _med(t_theirs[th]) / _med(t_ours[th]), "load": _med(loads)})
    for threads in threads_list:
        torch.set_num_threads(threads)
        # where synthviz's time goes, at this thread count
        tb = ours.tables()
        w, b = ours._vectors()
        split = {"sample_sparse": [], "decode": [], "to_coo": []}
        if hasattr(sampling, "sample_top"):
            split["top_level"] = []
        for _ in range(reps_ours):
            if "top_level" in split:
                t0 = time.perf_counter()
                sampling.sample_top(tb, 4096, gen)
                split["top_level"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rows, cols, vals = sampling.sample_sparse(tb, 4096, gen)
            t1 = time.perf_counter()
            sampling.decode(rows, cols, vals, 4096, w, b)
            t2 = time.perf_counter()
            sampling.to_coo(rows, cols, vals, 4096, ours.num_features)
            t3 = time.perf_counter()
            split["sample_sparse"].append(t1 - t0)
            split["decode"].append(t2 - t1)
            split["to_coo"].append(t3 - t2)
        out["split"][str(threads)] = {k: _med(v) for k, v in split.items()}
        out["split"][str(threads)]["entries_per_sample"] = rows.numel() / 4096
    torch.set_num_threads(before)
    # same model, same law: mean L0 of each implementation's own samples
    _, f = ours.sample_with_features(4096, generator=gen)
    _, g = theirs.sample_with_features(4096)
    out["l0"] = {"synthviz": f._nnz() / 4096, "sae_lens": float((g > 0).sum()) / 4096}
    return out


# ---------------------------------------------------------------------------- build

def part_build(ctx: Context) -> dict:
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig
    from sae_lens.synthetic.feature_dictionary import orthogonalize_embeddings

    from synthviz.config import base_config
    from synthviz.model import build_model, make_dictionary
    from synthviz.orthogonalize import orthogonalize

    cfg = base_config()
    steps = cfg.orthogonalization.num_steps
    lr = cfg.orthogonalization.lr
    reps = 1 if ctx.quick else 2
    raw, _ = make_dictionary(cfg.num_features, cfg.hidden_dim, cfg.bias, cfg.seed)
    ours_total, ours_steps, sl_steps = [], [], []
    theirs = None
    # a synthviz build and one timed sae_lens step take turns, so they share the machine's load
    for i in range(reps):
        _say(f"build: synthviz full build {i + 1}/{reps}")
        stamps: list[float] = []
        gc.collect()
        t0 = time.perf_counter()
        build_model(cfg, device="cpu", progress=lambda k, n: stamps.append(time.perf_counter()))
        ours_total.append(time.perf_counter() - t0)
        ours_steps.append((stamps[-1] - stamps[0]) / (len(stamps) - 1))
        _say(f"build: sae_lens orthogonalize_embeddings, one step at 16384x768 ({i + 1}/{reps})")
        gc.collect()
        t0 = time.perf_counter()
        theirs = orthogonalize_embeddings(raw.clone(), num_steps=1, lr=lr,
                                          chunk_size=cfg.orthogonalization.chunk_size)
        sl_steps.append(time.perf_counter() - t0)
    # sae_lens's build without orthogonalization (hierarchy, correlation, dictionary, ...)
    _say("build: sae_lens build without orthogonalization")
    d = cfg.to_dict()
    d["orthogonalization"] = None
    gc.collect()
    t0 = time.perf_counter()
    SyntheticModel(SyntheticModelConfig.from_dict(d))
    sl_rest = time.perf_counter() - t0
    k = 1
    sl_k = sum(sl_steps)
    sl_step = _med(sl_steps)
    ours_k = orthogonalize(raw.clone(), k, lr)
    extrapolated = sl_rest + steps * sl_step
    return {
        "steps": steps, "synthviz_total_s": ours_total, "synthviz_step_s": ours_steps,
        "sae_lens_rest_s": sl_rest, "sae_lens_timed_steps": len(sl_steps), "sae_lens_timed_s": sl_k,
        "sae_lens_steps_s": sl_steps, "trajectory_steps": k,
        "sae_lens_step_s": sl_step, "sae_lens_extrapolated_s": extrapolated,
        "ratio": extrapolated / _med(ours_total),
        "step_ratio": sl_step / _med(ours_steps),
        "trajectory_max_abs_diff": float((ours_k - theirs).abs().max()),
        "trajectory_coords_over_1e-5": int(((ours_k - theirs).abs() > 1e-5).sum()),
        "trajectory_coords": ours_k.numel(),
        "lr": lr,
        "step_gflop": 4 * cfg.num_features * cfg.hidden_dim**2 / 1e9,
        "sae_lens_step_gflop": 6 * cfg.num_features**2 * cfg.hidden_dim / 1e9,
        "matmul_gflops": _matmul_gflops(cfg.hidden_dim),
        "load": _load(),
    }


# ---------------------------------------------------------------------------- superposition

def part_superposition(ctx: Context) -> dict:
    from sae_lens.synthetic.stats import compute_superposition_stats
    ours_m, theirs_m = ctx.ours(), ctx.theirs()
    out: dict = {}
    _say("superposition: sae_lens compute_superposition_stats (about a minute)")
    gc.collect()
    t0 = time.perf_counter()
    sl = compute_superposition_stats(theirs_m.feature_dict, percentiles=[95, 99])
    out["sae_lens_s"] = [time.perf_counter() - t0]
    out["sae_lens"] = {"rho_mm": sl.mean_max_abs_cos_sim, "p95": sl.mean_percentile_abs_cos_sim[95],
                       "p99": sl.mean_percentile_abs_cos_sim[99], "mean_abs_cos": sl.mean_abs_cos_sim}
    try:
        from synthviz.stats.superposition import superposition_stats
    except ImportError as exc:
        out["synthviz_missing"] = f"synthviz.stats.superposition not importable: {exc}"
        return out
    reps = 1 if ctx.quick else 3
    _say(f"superposition: synthviz superposition_stats x{reps}")
    res = {}

    def run():
        res["s"] = superposition_stats(ours_m.feature_vectors, percentiles=(95, 99))
    out["synthviz_s"] = _times(run, reps)
    s = res["s"]
    out["synthviz"] = {"rho_mm": s.rho_mm, "p95": s.mean_percentile[95], "p99": s.mean_percentile[99],
                       "mean_abs_cos": s.mean_abs_cos}
    out["max_abs_diff"] = {
        "rho_mm": abs(s.rho_mm - sl.mean_max_abs_cos_sim),
        "p95_mean": abs(s.mean_percentile[95] - sl.mean_percentile_abs_cos_sim[95]),
        "p99_mean": abs(s.mean_percentile[99] - sl.mean_percentile_abs_cos_sim[99]),
        "mean_abs_cos": abs(s.mean_abs_cos - sl.mean_abs_cos_sim),
        "per_feature_max": float((s.max_abs_cos - sl.max_abs_cos_sims).abs().max()),
        "per_feature_p95": float((s.percentile[95] - sl.percentile_abs_cos_sims[95]).abs().max()),
        "per_feature_p99": float((s.percentile[99] - sl.percentile_abs_cos_sims[99]).abs().max()),
    }
    out["ratio"] = _med(out["sae_lens_s"]) / _med(out["synthviz_s"])
    # what bounds an exact computation: the Gram matrix's upper triangle at this machine's matmul rate
    n, d = ours_m.feature_vectors.shape
    out["gram_gflop"] = n * n * d / 1e9
    out["matmul_gflops"] = _matmul_gflops(d)
    out["load"] = _load()
    return out


def _matmul_gflops(d: int) -> float:
    """This machine's float32 matmul rate right now, on a [2048, d] @ [d, 2048] product."""
    a = torch.randn(2048, d)
    t = _times(lambda: a @ a.T, 5, warmup=lambda: a @ a.T)
    return 2 * 2048 * 2048 * d / min(t) / 1e9


# ---------------------------------------------------------------------------- memory

def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(impl: str, folder: str, batch: int, threads: int | None) -> dict:
    """Runs in a fresh process: RSS peak while sampling one batch minus RSS just before."""
    if threads:
        torch.set_num_threads(threads)
    if impl == "synthviz":
        import synthviz
        model = synthviz.load(folder, device="cpu")

        def sample(b):
            return model.sample_with_features(b, seed=1)
    else:
        from sae_lens.synthetic import SyntheticModel
        model = SyntheticModel.load_from_disk(folder)
        torch.manual_seed(1)

        def sample(b):
            return model.sample_with_features(b)
    sample(64)  # builds lazy tables and caches, as any later call would find them
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM (the peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    hidden, feats = sample(batch)
    peak = _status_kib("VmHWM")
    out_bytes = hidden.numel() * hidden.element_size()
    if feats.is_sparse:
        out_bytes += feats._indices().numel() * 8 + feats._values().numel() * feats.element_size()
    else:
        out_bytes += feats.numel() * feats.element_size()
    return {"rss_before_mib": before / 1024, "peak_mib": peak / 1024,
            "delta_mib": (peak - before) / 1024, "output_mib": out_bytes / 2**20}


def part_memory(ctx: Context, threads: int | None) -> dict:
    folder = str(ctx.folder_ready())
    reps = 1 if ctx.quick else 3
    out: dict = {"method": (
        "each measurement runs in a fresh Python process: load the 16k base, sample 64 to warm up, "
        "reset the kernel's peak-RSS mark (write 5 to /proc/self/clear_refs), read VmRSS, sample one "
        "4096 batch with sample_with_features (keeping its outputs), read VmHWM; the figure is "
        "VmHWM - VmRSS, in MiB"), "batch": 4096}
    for impl in ("synthviz", "sae_lens"):
        runs = []
        for i in range(reps):
            _say(f"memory: {impl} {i + 1}/{reps}")
            cmd = [sys.executable, "-m", "benchmarks.run", "--child-memory", impl, "--folder", folder]
            if threads:
                cmd += ["--threads", str(threads)]
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"memory child for {impl} failed:\n{res.stderr[-2000:]}")
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[impl] = {k: _med([r[k] for r in runs]) for k in runs[0]}
        out[impl]["runs_delta_mib"] = [r["delta_mib"] for r in runs]
    out["fraction"] = out["synthviz"]["delta_mib"] / out["sae_lens"]["delta_mib"]
    out["load"] = _load()
    return out


# ---------------------------------------------------------------------------- scaling

def scaling_config(n: int):
    from synthviz.config import base_config
    cfg = base_config()
    return cfg.replace(num_features=n, orthogonalization=None,
                       hierarchy=dataclasses.replace(cfg.hierarchy, total_root_nodes=n // 128))


def part_scaling(ctx: Context) -> dict:
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    from synthviz.model import build_model
    sizes = [4096, 16384, 65536] if ctx.quick else [4096, 16384, 65536, 262144]
    out = {"rows": [], "batch": 1024, "note": (
        "no orthogonalization (random unit directions): which features fire and the decode cost do "
        "not depend on how orthogonal the dictionary is")}
    gen = torch.Generator().manual_seed(0)
    for n in sizes:
        cfg = scaling_config(n)
        row: dict = {"n": n, "roots": n // 128}
        _say(f"scaling: N={n} synthviz build")
        gc.collect()
        t0 = time.perf_counter()
        ours = build_model(cfg, device="cpu")
        row["synthviz_build_s"] = time.perf_counter() - t0
        row["in_trees"] = ours.forest.num_nodes
        reps = 3 if ctx.quick else 5
        theirs = None
        # sae_lens builds [batch, N] dense tensors (a normal draw, the fired mask, the activations
        # and the hierarchy's copy) and a dense [batch, N] @ [N, D] decode
        need = 6 * 1024 * n * 4 + n * cfg.hidden_dim * 4
        if need > 0.5 * _mem_available():
            row["sae_lens_skipped"] = (f"needs about {need / 2**30:.1f} GiB at batch 1024, more than "
                                       f"half of the {_mem_available() / 2**30:.1f} GiB available")
        else:
            _say(f"scaling: N={n} sae_lens build")
            gc.collect()
            t0 = time.perf_counter()
            theirs = SyntheticModel(SyntheticModelConfig.from_dict(cfg.to_dict()))
            row["sae_lens_build_s"] = time.perf_counter() - t0
            theirs.sample_with_features(64)
        reps_theirs = 1 if (ctx.quick or n >= 65536) else 3
        ours.sample_with_features(64, generator=gen)
        torch.manual_seed(0)
        _say(f"scaling: N={n} sampling, interleaved")
        times: dict = {"ours_1024": [], "ours_4096": [], "theirs_1024": []}
        for rep in range(reps):
            for key, fn in (("ours_1024", lambda: ours.sample_with_features(1024, generator=gen)),
                            ("ours_4096", lambda: ours.sample_with_features(4096, generator=gen)),
                            ("theirs_1024", lambda: theirs.sample_with_features(1024))):
                if key == "theirs_1024" and (theirs is None or rep >= reps_theirs):
                    continue
                gc.collect()
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        row["synthviz_1024_per_s"] = 1024 / _med(times["ours_1024"])
        row["synthviz_4096_per_s"] = 4096 / _med(times["ours_4096"])
        _, f = ours.sample_with_features(4096, generator=gen)
        row["l0"] = f._nnz() / 4096
        if theirs is not None:
            row["sae_lens_1024_per_s"] = 1024 / _med(times["theirs_1024"])
            row["sae_lens_reps"] = reps_theirs
            row["ratio_1024"] = row["synthviz_1024_per_s"] / row["sae_lens_1024_per_s"]
        del ours, theirs, f
        gc.collect()
        row["load"] = _load()
        out["rows"].append(row)
    return out


# ---------------------------------------------------------------------------- report

def _f(x: float, nd: int = 0) -> str:
    return f"{x:,.{nd}f}"


def _x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio < 10 else f"{ratio:.0f}x"


def _keep_sections(old: str) -> dict[str, str]:
    """Bodies of the sections other work fills in, from an existing RESULTS.md."""
    kept = {}
    for title in KEEP_SECTIONS:
        head = f"## {title}\n"
        if head in old:
            body = old.split(head, 1)[1]
            nxt = body.find("\n## ")
            kept[title] = (body if nxt < 0 else body[:nxt + 1]).strip("\n")
    return kept


def render(results: dict, old_md: str = "") -> str:
    m = results.get("machine", {})
    L: list[str] = []
    add = L.append
    add("# Benchmarks: synthviz against sae_lens")
    add("")
    add("Written by `python -m benchmarks.run` (see its docstring for options). Each part measures "
        "both implementations side by side in the same minutes on the same machine, at the "
        "SynthSAEBench-16k config unless stated otherwise; each part's date, torch threads and load "
        "average are given with it.")
    add("")
    add("## Machine and versions")
    add("")
    add(f"- CPU: {m.get('cpu')} ({m.get('cores')} cores), RAM {m.get('ram_gib')} GiB; {m.get('platform')}")
    add(f"- Python {m.get('python')}, torch {m.get('torch')}, sae_lens {m.get('sae_lens')}, "
        f"synthviz {m.get('synthviz')}")
    dates = sorted({results[p]["meta"]["date"] for p in PARTS if p in results})
    add(f"- Date of the measurements: {', '.join(dates)}")
    add("- The machine may be shared with other work, so each part records the 1-minute load "
        "average (2.0 means both cores busy) next to its figures. Ratios are taken between "
        "figures measured in the same minutes. Parts measured on different dates may come from "
        "different virtual machines of this kind (the kernel build differs), whose speeds "
        "differ: compare ratios, not absolute times, across dates.")
    add("- No GPU was lent to this task (the device tool reported none), so GPU rows are absent.")
    add("- torch threads: shown per part. On this 2-core machine, when other processes keep the cores "
        "busy, two torch threads can run several times slower than one (the OpenMP threads wait on "
        "each other), so the sampling rows are measured at both settings.")
    add("")

    # ---------------------------------------------------------------- goals
    add("## Goals (issue 3)")
    add("")
    add("| work | sae_lens | synthviz | ratio | goal | reached | threads, load |")
    add("|---|---|---|---|---|---|---|")
    notes: list[str] = []
    s = results.get("sample")
    if s:
        for batch, goal, stretch in ((4096, 10, 25), (1024, 10, None)):
            rows = [r for r in s["rows"] if r["batch"] == batch]
            best_o = max(rows, key=lambda r: r["synthviz_per_s"])
            best_t = max(rows, key=lambda r: r["sae_lens_per_s"])
            same = [r for r in rows if r["threads"] == 2] or rows
            ratio = best_o["synthviz_per_s"] / best_t["sae_lens_per_s"]
            ok = ratio >= goal
            goal_txt = f">= {goal}x" + (f" (stretch {stretch}x)" if stretch else "")
            reached = ("yes" if ok else "no") + (
                f", stretch {'yes' if ratio >= stretch else 'no'}" if stretch else "")
            add(f"| `sample_with_features({batch})`, samples/s (best thread setting of each) | "
                f"{_f(best_t['sae_lens_per_s'])} ({best_t['threads']} thr) | "
                f"{_f(best_o['synthviz_per_s'])} ({best_o['threads']} thr) | {ratio:.1f}x | "
                f"{goal_txt} | {reached} | best of each; load {best_o['load']} |")
            for r in same[:1]:
                add(f"| `sample_with_features({batch})`, both at {r['threads']} threads | "
                    f"{_f(r['sae_lens_per_s'])} | {_f(r['synthviz_per_s'])} | {r['ratio']:.1f}x | "
                    f"{goal_txt} | {'yes' if r['ratio'] >= goal else 'no (see below)'} | "
                    f"{r['threads']}; load {r['load']} |")
                if r["ratio"] < goal:
                    one = [x for x in rows if x["threads"] == 1]
                    notes.append(
                        f"- `sample_with_features({batch})` with both at {r['threads']} torch threads: "
                        f"{r['ratio']:.1f}x, at a load average of {r['load']} on 2 cores. synthviz's "
                        f"sampler runs a few hundred small torch ops per batch; OpenMP splits each "
                        f"across both threads and then waits at a barrier for a thread the busy "
                        f"machine has descheduled, while sae_lens's few large dense ops lose less. "
                        + (f"At 1 thread the same measurement gives {one[0]['ratio']:.1f}x. " if one else "")
                        + "The loss comes from the oversubscribed machine (a load average above its 2 "
                        "cores), not from the work; the 1-thread rows show the sampler's own speed.")
            if stretch and ratio < stretch:
                sp = s["split"].get(str(best_o["threads"]), {})
                top = sp.get("top_level")
                notes.append(
                    f"- `sample_with_features({batch})` stretch goal ({stretch}x) not reached "
                    f"({ratio:.1f}x, best setting of each). Where synthviz's time goes at "
                    f"{best_o['threads']} thread(s), per 4096 batch (medians): `sample_sparse` "
                    f"{sp['sample_sparse'] * 1e3:.0f} ms"
                    + (f" (of which the top level {top * 1e3:.0f} ms and the walk down the "
                       f"hierarchy the rest)" if top is not None else "")
                    + f", the `embedding_bag` decode {sp['decode'] * 1e3:.0f} ms, the COO "
                    f"{sp['to_coo'] * 1e3:.0f} ms. The top level still computes a copula value "
                    "for every (sample, root or feature outside the trees), a rank-25 matmul that "
                    "writes batch x 5,600 floats; the decode reads one 3 KiB dictionary row per "
                    "active feature (about 140,000 rows per batch), which is bound by memory "
                    "bandwidth on this shared machine.")
    b = results.get("build")
    if b:
        ok = b["ratio"] >= 30
        add(f"| build of the 16k base, {b['steps']} orthogonalization steps | "
            f"{b['sae_lens_extrapolated_s'] / 60:.1f} min (**extrapolated** from "
            f"{b['sae_lens_timed_steps']} timed step(s)) | {_med(b['synthviz_total_s']):.1f} s | "
            f"{_x(b['ratio'])} | >= 30x | {'yes' if ok else 'no'} | {b['meta']['threads']}; "
            f"load {b['load']} |")
        if not ok:
            gf = b.get("matmul_gflops")
            floor = (f" Those two matmuls are 4 N D^2 = {b['step_gflop']:.1f} GFLOP a step; at the "
                     f"{gf:.0f} GFLOP/s this machine's matmul reached in the same minutes that is "
                     f"{b['step_gflop'] / gf:.2f} s a step. sae_lens's step is 3 N x N x D matmuls "
                     f"(forward and backward, {b['sae_lens_step_gflop']:.0f} GFLOP), so if both ran at "
                     f"the matmul rate the ratio would be about "
                     f"{b['sae_lens_step_gflop'] / b['step_gflop']:.0f}x: the goal sits at the "
                     f"ratio of the work itself." if gf else "")
            notes.append(f"- Build goal not reached ({b['ratio']:.0f}x); synthviz's step takes "
                         f"{_med(b['synthviz_step_s']):.2f} s (two [N, D] x [D, D] matmuls and a "
                         f"fused Adam update), the rest of its build "
                         f"{_med(b['synthviz_total_s']) - b['steps'] * _med(b['synthviz_step_s']):.1f} s."
                         + floor)
    p = results.get("superposition")
    if p:
        if "synthviz_missing" in p:
            add(f"| superposition statistics, 16384x768 | {p['sae_lens_s'][0]:.1f} s | not measured | - | "
                f">= 15x, same numbers to 1e-4 | not measured | |")
            notes.append(f"- Superposition statistics: {p['synthviz_missing']}.")
        else:
            worst = max(p["max_abs_diff"].values())
            ok = p["ratio"] >= 15 and worst <= 1e-4
            add(f"| superposition statistics, 16384x768 | {_med(p['sae_lens_s']):.1f} s | "
                f"{_med(p['synthviz_s']):.2f} s | {_x(p['ratio'])} (largest difference {worst:.1e}) | "
                f">= 15x, same numbers to 1e-4 | {'yes' if ok else 'no'} | {p['meta']['threads']}; "
                f"load {p['load']} |")
            if not ok:
                gf = p.get("matmul_gflops")
                floor = (f" The exact statistics need the upper triangle of the N x N Gram matrix, "
                         f"N^2 D = {p['gram_gflop']:.0f} GFLOP; this machine's matmul ran at "
                         f"{gf:.0f} GFLOP/s in the same minutes, a floor of "
                         f"{p['gram_gflop'] / gf:.1f} s before any percentile selection, against "
                         f"{_med(p['sae_lens_s']) / 15:.1f} s for 15x." if gf else "")
                notes.append(f"- Superposition goal not reached: {p['ratio']:.1f}x (synthviz "
                             f"{_med(p['synthviz_s']):.1f} s), largest difference {worst:.1e}."
                             + floor + " (The statistics are synthviz.stats.superposition, owned "
                             "by the statistics work.)")
    mem = results.get("memory")
    if mem:
        ok = mem["fraction"] <= 0.5
        add(f"| peak memory while sampling a 4096 batch | {mem['sae_lens']['delta_mib']:.0f} MiB | "
            f"{mem['synthviz']['delta_mib']:.0f} MiB | {mem['fraction']:.3f} of sae_lens's | "
            f"<= 0.5 | {'yes' if ok else 'no'} | {mem['meta']['threads']}; load {mem['load']} |")
        if not ok:
            notes.append(f"- Memory goal not reached: {mem['fraction']:.2f} of sae_lens's.")
    add("")
    if notes:
        add("### Goals not reached, and what limits them")
        add("")
        L.extend(notes)
        add("")

    # ---------------------------------------------------------------- details
    if s:
        meta = s["meta"]
        add("## Sampling")
        add("")
        add(f"Medians of {s['reps']['synthviz']} runs (synthviz) and {s['reps']['sae_lens']} runs "
            f"(sae_lens) after one warm-up call with 64 samples; the implementations and thread "
            f"settings take turns call by call, so they share the machine's load; {meta['date']}, load "
            f"{meta['load_start']} -> {meta['load_end']}. sae_lens loads the very files synthviz "
            f"saved (`SyntheticModel.load_from_disk`), so both sample the same model. synthviz "
            f"returns the features as a sparse COO tensor; the `dense=True` column also builds the "
            f"[B, N] dense tensor that sae_lens returns.")
        add("")
        add("| batch | torch threads | sae_lens samples/s | synthviz samples/s | ratio | synthviz `dense=True` samples/s | load |")
        add("|---|---|---|---|---|---|---|")
        for r in s["rows"]:
            add(f"| {r['batch']} | {r['threads']} | {_f(r['sae_lens_per_s'])} | {_f(r['synthviz_per_s'])} | "
                f"{r['ratio']:.1f}x | {_f(r['synthviz_dense_per_s'])} | {r['load']} |")
        add("")
        add(f"Mean active features per sample (same model, each implementation's own samples): "
            f"synthviz {s['l0']['synthviz']:.2f}, sae_lens {s['l0']['sae_lens']:.2f}.")
        add("")
        add("Where synthviz's time goes for one 4096 batch (medians, ms):")
        add("")
        keys = list(next(iter(s["split"].values())).keys())
        keys = [k for k in keys if k != "entries_per_sample"]
        add("| threads | " + " | ".join(keys) + " |")
        add("|---|" + "---|" * len(keys))
        for th, sp in s["split"].items():
            add(f"| {th} | " + " | ".join(f"{sp[k] * 1e3:.1f}" for k in keys) + " |")
        add("")
        if "top_level" in keys:
            add("`top_level` is the part of `sample_sparse` that decides which roots and features "
                "outside any tree fire; the rest of `sample_sparse` is the hierarchy walk and the "
                "magnitudes.")
            add("")
    if b:
        meta = b["meta"]
        add("## Build of the 16k base")
        add("")
        add(f"{meta['date']}, load {meta['load_start']} -> {meta['load_end']}, torch threads {meta['threads']}.")
        add("")
        add(f"- synthviz, `build_model(base_config())` from the config, no disk cache, "
            f"{len(b['synthviz_total_s'])} run(s): " + ", ".join(f"{t:.1f} s" for t in b["synthviz_total_s"])
            + f" (median {_med(b['synthviz_total_s']):.1f} s); one orthogonalization step "
            f"{_med(b['synthviz_step_s']):.3f} s.")
        add(f"- sae_lens, **extrapolated**: its build without orthogonalization measured "
            f"{b['sae_lens_rest_s']:.1f} s; {b['sae_lens_timed_steps']} step(s) of its "
            f"`orthogonalize_embeddings` at 16384x768 (one step per call, alternating with the "
            f"synthviz builds) measured {b['sae_lens_timed_s']:.1f} s, median "
            f"{b['sae_lens_step_s']:.1f} s a step; total {b['sae_lens_rest_s']:.1f} + {b['steps']} x "
            f"{b['sae_lens_step_s']:.1f} = {b['sae_lens_extrapolated_s']:.0f} s "
            f"({b['sae_lens_extrapolated_s'] / 60:.1f} min).")
        add(f"- Ratio of the builds {b['ratio']:.0f}x; ratio of one step {b['step_ratio']:.0f}x.")
        add(f"- After {b.get('trajectory_steps', b['sae_lens_timed_steps'])} step(s) from the same start, synthviz's Gram-form "
            f"dictionary differs from sae_lens's by at most {b['trajectory_max_abs_diff']:.1e}; "
            f"{b.get('trajectory_coords_over_1e-5', '?')} of {b.get('trajectory_coords', 0):,} "
            f"coordinates differ by more than 1e-5. Adam's first step moves every coordinate by "
            f"lr ({b.get('lr', 0):.0e}) in the direction of its gradient's sign, so a coordinate whose "
            f"gradient is within float rounding of zero can move the other way in one form: up to "
            f"2 x lr apart. tests/test_orthogonalize.py checks the trajectories at N=2048, D=128.")
        add("")
    if p:
        meta = p["meta"]
        add("## Superposition statistics (16384x768, the base dictionary)")
        add("")
        add(f"{meta['date']}, load {meta['load_start']} -> {meta['load_end']}, torch threads {meta['threads']}.")
        add("")
        if "synthviz_missing" in p:
            add(f"sae_lens: {p['sae_lens_s'][0]:.1f} s. synthviz: {p['synthviz_missing']}.")
        else:
            add("| | sae_lens | synthviz | difference |")
            add("|---|---|---|---|")
            add(f"| time | {', '.join(f'{t:.1f}' for t in p['sae_lens_s'])} s | "
                f"{', '.join(f'{t:.2f}' for t in p['synthviz_s'])} s | {p['ratio']:.0f}x faster |")
            for k, name in (("rho_mm", "rho_mm (mean max \\|cos\\|)"), ("p95", "mean p95 \\|cos\\|"),
                            ("p99", "mean p99 \\|cos\\|"), ("mean_abs_cos", "mean \\|cos\\| over pairs")):
                diff_key = k if k in p["max_abs_diff"] else f"{k}_mean"
                add(f"| {name} | {p['sae_lens'][k]:.6f} | {p['synthviz'][k]:.6f} | "
                    f"{p['max_abs_diff'][diff_key]:.1e} |")
            add(f"| per-feature max \\|cos\\|, largest difference | | | {p['max_abs_diff']['per_feature_max']:.1e} |")
            add(f"| per-feature p95, largest difference | | | {p['max_abs_diff']['per_feature_p95']:.1e} |")
            add(f"| per-feature p99, largest difference | | | {p['max_abs_diff']['per_feature_p99']:.1e} |")
        add("")
    if mem:
        meta = mem["meta"]
        add("## Peak memory while sampling a 4096 batch")
        add("")
        add(f"{meta['date']}, torch threads {meta['threads']}. Method: {mem['method']}. Median of "
            f"{len(mem['synthviz']['runs_delta_mib'])} process(es) each.")
        add("")
        add("| | RSS before (MiB) | added by sampling (MiB) | outputs kept (MiB) |")
        add("|---|---|---|---|")
        for impl in ("sae_lens", "synthviz"):
            r = mem[impl]
            add(f"| {impl} | {r['rss_before_mib']:.0f} | {r['delta_mib']:.1f} | {r['output_mib']:.1f} |")
        add("")
        add("sae_lens returns the features as a dense [4096, 16384] float32 tensor (256 MiB); "
            "synthviz returns a sparse COO tensor.")
        add("")
    sc = results.get("scaling")
    if sc:
        meta = sc["meta"]
        add("## How cost grows with N")
        add("")
        add(f"Hierarchy as in the paper's scaling benchmark: N/128 roots, 4-way branching, depth 3, ME "
            f"everywhere; correlation rank 25; D = 768; {sc['note']}. {meta['date']}, torch threads "
            f"{meta['threads']}. Medians of several runs for synthviz, taking turns with sae_lens's "
            f"runs (reps per row shown). synthviz's cost per sample grows with the firings (L0) and "
            f"with a rank-r matmul over the top-level features (roots and features outside trees), "
            f"which dominates at 256k; sae_lens's grows with N (dense [batch, N] draws and a dense "
            f"[batch, N] @ [N, D] decode).")
        add("")
        add("| N | features in trees | mean L0 | synthviz 1024 samples/s | sae_lens 1024 samples/s (reps) | ratio | synthviz 4096 samples/s | build synthviz / sae_lens (s) | load |")
        add("|---|---|---|---|---|---|---|---|---|")
        for r in sc["rows"]:
            if "sae_lens_skipped" in r:
                theirs = f"skipped: {r['sae_lens_skipped']}"
                ratio = "-"
                build = f"{r['synthviz_build_s']:.1f} / -"
            else:
                theirs = f"{_f(r['sae_lens_1024_per_s'])} ({r['sae_lens_reps']})"
                ratio = _x(r["ratio_1024"])
                build = f"{r['synthviz_build_s']:.1f} / {r['sae_lens_build_s']:.1f}"
            add(f"| {r['n']:,} | {r['in_trees']:,} | {r['l0']:.1f} | {_f(r['synthviz_1024_per_s'])} | "
                f"{theirs} | {ratio} | {_f(r['synthviz_4096_per_s'])} | {build} | {r['load']} |")
        add("")
    kept = _keep_sections(old_md)
    for title in KEEP_SECTIONS:
        add(f"## {title}")
        add("")
        add(kept.get(title) or PLACEHOLDER)
        add("")
    return "\n".join(L)


# ---------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, scaling up to 64k")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for every part but sampling (default: torch's default)")
    ap.add_argument("--sample-threads", default="2,1",
                    help="thread counts the sampling part measures (default: 2,1)")
    ap.add_argument("--no-write", action="store_true", help="print results, write no files")
    ap.add_argument("--render", action="store_true",
                    help="measure nothing: rewrite RESULTS.md from benchmarks/results.json")
    ap.add_argument("--child-memory", choices=("synthviz", "sae_lens"), help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    logging.getLogger("synthviz").setLevel(logging.ERROR)
    if args.child_memory:
        print(json.dumps(memory_child(args.child_memory, args.folder, 4096, args.threads)))
        return 0
    parts = [] if args.render else [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {', '.join(PARTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.exists() else {}
    if parts or "machine" not in results:
        results["machine"] = machine()
    ctx = Context(args.quick)
    try:
        for part in parts:
            meta = {"date": _now(), "load_start": _load(), "quick": args.quick,
                    "threads": torch.get_num_threads()}
            t0 = time.perf_counter()
            if part == "sample":
                res = part_sample(ctx, [int(x) for x in args.sample_threads.split(",")])
            elif part == "build":
                res = part_build(ctx)
            elif part == "superposition":
                res = part_superposition(ctx)
            elif part == "memory":
                res = part_memory(ctx, args.threads)
            else:
                res = part_scaling(ctx)
            meta.update(load_end=_load(), wall_s=round(time.perf_counter() - t0, 1))
            res["meta"] = meta
            results[part] = res
            _say(f"{part} done in {meta['wall_s']} s")
            if not args.no_write:
                RESULTS_JSON.write_text(json.dumps(results, indent=1, default=float) + "\n")
    finally:
        ctx.close()
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
    md = render(results, old)
    if args.no_write:
        print(md)
    else:
        RESULTS_MD.write_text(md)
        _say(f"wrote {RESULTS_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
