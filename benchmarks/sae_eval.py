"""SAE evaluation at the SynthSAEBench-16k base: synthviz against sae_lens, side by side in one run.

    python -m benchmarks.sae_eval                # writes benchmarks/sae_eval.json and its
                                                 # section of benchmarks/RESULTS.md
    python -m benchmarks.sae_eval --render       # only rewrite that section from the JSON
    python -m benchmarks.sae_eval --quick        # fewer samples and runs (a smoke test)
    python -m benchmarks.sae_eval --sae FOLDER   # an SAE folder instead of the quickly trained one

Setup: the 16k base from synthviz's cache (sae_lens loads synthviz's saved files: the same model),
an SAE with 4096 latents, 100,000 samples. Unless `--sae` is given, the SAE is a BatchTopK SAE
(k=25) quickly trained with sae_lens's `train_toy_sae` (synthviz's sampler feeding it) and saved
with `save_inference_model`; it is for timing, not a good SAE.

- sae_lens: `eval_sae_on_synthetic_data` at batch sizes 1024, 2048 and 4096 once on 4096 samples,
  then at its fastest batch size over the full sample count, `--their-runs` times;
- synthviz: `evaluate_sae` (its matching cache cleared before every run, so both sides pay the
  Hungarian matching every time), `--runs` times, alternating with sae_lens's runs;
- memory: in a fresh process per side, the peak RSS added by an evaluation of three batches
  (VmHWM after minus VmRSS before; the peak is per batch, so three batches show it);
- the numbers of both sides side by side (mcc and uniqueness must be equal; the rest within
  sampling error) and the 1-minute load average around every run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
OUT_JSON = HERE / "sae_eval.json"
D_SAE, K = 4096, 25


def _say(msg: str) -> None:
    print(f"[sae-bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


def models(folder: Path):
    import synthviz
    from sae_lens.synthetic import SyntheticModel

    ours = synthviz.load("base", device="cpu")
    if not folder.exists():
        ours.save(folder)
    theirs = SyntheticModel.load_from_disk(str(folder))
    assert torch.equal(theirs.feature_dict.feature_vectors.data, ours.feature_vectors)
    return ours, theirs


def train_sae(model, out: Path, samples: int) -> None:
    from synthviz.sae.training import train_toy_sae

    t0 = time.perf_counter()
    train_toy_sae(model, D_SAE, K, architecture="batchtopk", training_samples=samples,
                  batch_size=1024, lr=3e-3, seed=0, out=out)
    _say(f"trained the {D_SAE}-latent SAE on {samples} samples in "
         f"{time.perf_counter() - t0:.0f} s")


def run_ours(model, sae, n: int, batch: int) -> tuple[float, dict]:
    from synthviz.sae import evaluate as ev

    ev._MATCH_CACHE.clear()
    gc.collect()
    t0 = time.perf_counter()
    res = ev.evaluate_sae(model, sae, n, seed=int(time.time()) % 10_000, batch_size=batch)
    return time.perf_counter() - t0, res.to_dict()


def run_theirs(sl_model, sl_sae, n: int, batch: int) -> tuple[float, dict]:
    from sae_lens.synthetic.evals import eval_sae_on_synthetic_data

    gc.collect()
    t0 = time.perf_counter()
    res = eval_sae_on_synthetic_data(sl_sae, sl_model.feature_dict, sl_model.activation_generator,
                                     num_samples=n, batch_size=batch)
    return time.perf_counter() - t0, res.to_dict()


def memory_child(impl: str, folder: str, sae_dir: str, batch: int) -> dict:
    """In a fresh process: peak RSS added by evaluating 3 batches."""
    if impl == "synthviz":
        import synthviz
        from synthviz.sae import evaluate_sae, load_sae
        model, sae = synthviz.load(folder, device="cpu"), load_sae(sae_dir)
        model.sample(64, seed=0)  # lazy tables, as any evaluation finds them

        def go():
            return evaluate_sae(model, sae, 3 * batch, seed=1, batch_size=batch)
    else:
        from sae_lens import SAE
        from sae_lens.synthetic import SyntheticModel
        from sae_lens.synthetic.evals import eval_sae_on_synthetic_data
        model, sae = SyntheticModel.load_from_disk(folder), SAE.load_from_disk(sae_dir)
        model.activation_generator.sample(64)

        def go():
            return eval_sae_on_synthetic_data(sae, model.feature_dict, model.activation_generator,
                                              num_samples=3 * batch, batch_size=batch)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # resets VmHWM to the current RSS
    before = _status_kib("VmRSS")
    go()
    peak = _status_kib("VmHWM")
    return {"rss_before_mib": before / 1024, "delta_mib": (peak - before) / 1024}


def memory(impl: str, folder: Path, sae_dir: Path, batch: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.sae_eval", "--child-memory", impl,
           "--folder", str(folder), "--sae", str(sae_dir), "--batch", str(batch)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"memory child for {impl} failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


SECTION = "SAE evaluation (issue 14)"
KEYS = ("mcc", "uniqueness", "explained_variance", "shrinkage", "sae_l0", "true_l0",
        "dead_latents")


def _flat(d: dict) -> dict:
    return {**{k: d[k] for k in KEYS},
            **{f"classification/{k}": v for k, v in d["classification"].items()}}


def _runs(runs: list[dict], digits: int) -> str:
    return ", ".join(f"{r['seconds']:.{digits}f} at load {r['load']}" for r in runs)


def render(out: dict, machine: str) -> str:
    """The RESULTS.md section (without its heading) from a results dict."""
    ours = [r["seconds"] for r in out["ours"]]
    theirs = [r["seconds"] for r in out["theirs"]]
    loads = [r["load"] for r in out["ours"] + out["theirs"]]
    quiet = max(loads) < 2.0  # one process at one thread on 2 cores: about 1
    lines = [
        f"`python -m benchmarks.sae_eval` on {machine}: **no GPU**; "
        + (f"nothing else ran on the machine (1-minute load average {min(loads):.1f} to "
           f"{max(loads):.1f} on 2 cores, the benchmark itself; each run's load is given "
           "below)." if quiet else
           "the machine was shared with other work and heavily loaded while this ran "
           f"(1-minute load average {min(loads):.1f} to {max(loads):.1f} on 2 cores; each "
           "run's load is given below), so the timings are noisy; the ratio is what the run "
           "measured, not a figure for an idle machine."),
        "",
        f"Setup: the 16k base (16,384 features, 768 dims), an SAE with {out['d_sae']} latents "
        f"({out['sae']}), {out['samples']:,} samples, torch threads: {out['threads']}. "
        "sae_lens: `eval_sae_on_synthetic_data`; synthviz: `synthviz.sae.evaluate_sae` (batches "
        "of 4096, its matching cache cleared before every run, so both sides compute the "
        "Hungarian matching for MCC every run). synthviz encodes each sample from its active "
        "features (`synthviz.sae.feature_encode`: F @ W_enc, [16384, 4096] float32, computed "
        "once per evaluation and included in its time; equal to the dense encode up to float32 "
        "rounding) and decodes densely for this SAE (more than 1/16 of its latents fire).",
        "",
        "sae_lens's batch size, tried on 4,096 samples each:",
        "",
        "| batch | samples/s | load |", "|---|---|---|"]
    for bs, r in out["sweep"].items():
        lines.append(f"| {bs} | {r['samples_per_s']:.0f} | {r['load']} |")
    lines += [
        "",
        f"| | sae_lens (batch {out['best_batch']}) | synthviz | ratio | goal | reached |",
        "|---|---|---|---|---|---|",
        f"| evaluation of {out['samples']:,} samples, median seconds | "
        f"{statistics.median(theirs):.0f} ({len(theirs)} run{'s' if len(theirs) > 1 else ''}: "
        f"{_runs(out['theirs'], 0)}) | {statistics.median(ours):.1f} ({len(ours)} runs: "
        f"{_runs(out['ours'], 1)}) | "
        f"{out['speedup']:.1f}x | >= 5x | {'yes' if out['speedup'] >= 5 else 'no'} |",
        f"| peak memory added by an evaluation (3 batches, fresh process) | "
        f"{out['memory']['sae_lens']['delta_mib']:.0f} MiB | "
        f"{out['memory']['synthviz']['delta_mib']:.0f} MiB | "
        f"{out['memory']['synthviz']['delta_mib'] / out['memory']['sae_lens']['delta_mib']:.2f}"
        " of sae_lens's | | |",
        "",
        f"Spread: {len(theirs)} sae_lens run(s) of about {statistics.median(theirs) / 60:.0f} "
        f"minutes each; against synthviz's slowest run the ratio is "
        f"{statistics.median(theirs) / max(ours):.1f}x, against its fastest "
        f"{statistics.median(theirs) / min(ours):.1f}x."
        + ("" if quiet and len(theirs) >= 3 else
           " Re-measure on a quiet machine with "
           "`python -m benchmarks.sae_eval --runs 5 --their-runs 3 --threads 1`."),
        "",
        "The numbers of both sides (first run of each; different random draws, so the "
        "sample-dependent numbers agree within sampling error, while MCC and uniqueness, which "
        "depend only on the weights, are equal):",
        "",
        "| metric | sae_lens | synthviz |", "|---|---|---|"]
    a, b = _flat(out["theirs"][0]["result"]), _flat(out["ours"][0]["result"])
    spread = {k: [_flat(r["result"])[k] for r in out["ours"]] for k in a}
    lines[-2] = "| metric | sae_lens | synthviz | synthviz, all runs (min to max) |"
    lines[-1] = "|---|---|---|---|"
    for k in a:
        lines.append(f"| {k} | {a[k]:.6g} | {b[k]:.6g} | {min(spread[k]):.6g} to "
                     f"{max(spread[k]):.6g} |")
    return "\n".join(lines) + "\n"


def write_section(out: dict) -> None:
    """Replace (or append) this benchmark's section of benchmarks/RESULTS.md."""
    from benchmarks.run import machine as machine_info

    m = machine_info()
    body = render(out, f"{m['cpu']} ({m['cores']} cores, {m['ram_gib']} GiB RAM), torch "
                       f"{m['torch']}, sae_lens {m['sae_lens']}, {out.get('date', '')}".rstrip(", "))
    md = (HERE / "RESULTS.md").read_text()
    head = f"## {SECTION}\n"
    if head in md:
        before, rest = md.split(head, 1)
        nxt = rest.find("\n## ")
        after = "" if nxt < 0 else rest[nxt + 1:]
        md = before + head + "\n" + body + ("\n" + after if after else "")
    else:
        md = md.rstrip("\n") + "\n\n" + head + "\n" + body
    (HERE / "RESULTS.md").write_text(md)


def summarize(out: dict) -> None:
    med = lambda xs: float(statistics.median(xs))  # noqa: E731
    out["ours_median_s"] = med([r["seconds"] for r in out["ours"]])
    if out["theirs"]:
        out["theirs_median_s"] = med([r["seconds"] for r in out["theirs"]])
        out["speedup"] = out["theirs_median_s"] / out["ours_median_s"]
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2, help="synthviz runs")
    ap.add_argument("--their-runs", type=int, default=1,
                    help="sae_lens runs (each about 15 minutes on a loaded 2-core machine)")
    ap.add_argument("--sae", type=str, default=None)
    ap.add_argument("--train-samples", type=int, default=60_000)
    ap.add_argument("--sae-note", type=str, default=None, help="how the --sae SAE was made")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the RESULTS.md section from benchmarks/sae_eval.json")
    ap.add_argument("--child-memory", choices=["synthviz", "sae_lens"])
    ap.add_argument("--folder", type=str)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--json", type=str, default=None, help="with --render: the JSON to render")
    args = ap.parse_args(argv)
    if args.child_memory:
        print(json.dumps(memory_child(args.child_memory, args.folder, args.sae, args.batch)))
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.render:
        write_section(json.loads(Path(args.json or OUT_JSON).read_text()))
        return 0
    import logging
    logging.getLogger("sae_lens").setLevel(logging.ERROR)
    n, runs, their_runs = (20_000, 1, 1) if args.quick else (args.samples, args.runs,
                                                              args.their_runs)
    tmp = tempfile.TemporaryDirectory(prefix="synthviz-sae-bench-")
    folder = Path(tmp.name) / "base"
    ours, theirs = models(folder)
    sae_dir = Path(args.sae) if args.sae else Path(tmp.name) / "sae"
    if not args.sae:
        train_sae(ours, sae_dir, 20_000 if args.quick else args.train_samples)
    from sae_lens import SAE as SLSAE

    from synthviz.sae import load_sae
    sae, sl_sae = load_sae(sae_dir), SLSAE.load_from_disk(str(sae_dir))
    out: dict = {"samples": n, "d_sae": D_SAE, "sae": args.sae_note or args.sae or
                 f"BatchTopK k={K} trained on {args.train_samples} samples (timing only)",
                 "threads": torch.get_num_threads(), "cores": os.cpu_count(),
                 "cuda": torch.cuda.is_available(), "sweep": {}, "theirs": [], "ours": []}
    sweep_n = min(n, 4096)
    for bs in (1024, 2048, 4096):
        load = _load()
        t, _ = run_theirs(theirs, sl_sae, sweep_n, bs)
        out["sweep"][bs] = {"seconds": t, "samples_per_s": sweep_n / t, "load": load}
        _say(f"sae_lens batch {bs}: {sweep_n / t:.0f} samples/s (load {load})")
    best = max(out["sweep"], key=lambda b: out["sweep"][b]["samples_per_s"])
    out["best_batch"] = best
    _say("memory (fresh processes)")
    out["memory"] = {"synthviz": memory("synthviz", folder, sae_dir, 4096),
                     "sae_lens": memory("sae_lens", folder, sae_dir, best)}
    partial = OUT_JSON.with_name("sae_eval_partial.json")
    for i in range(runs):  # alternate, so both sides see the same background load
        load = _load()
        t, res = run_ours(ours, sae, n, 4096)
        out["ours"].append({"seconds": t, "load": load, "result": res})
        _say(f"synthviz run {i + 1}: {t:.1f} s (load {load})")
        if i < their_runs:
            load = _load()
            t, res = run_theirs(theirs, sl_sae, n, best)
            out["theirs"].append({"seconds": t, "load": load, "result": res})
            _say(f"sae_lens run {i + 1}: {t:.1f} s at batch {best} (load {load})")
        summarize(out)
        partial.write_text(json.dumps(out, indent=2))  # `--render --json` of a cut-short run
    out["load_after"] = _load()
    out["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    _say(f"speedup {out['speedup']:.1f}x; memory {out['memory']}")
    (OUT_JSON.with_name("sae_eval_quick.json") if args.quick else OUT_JSON).write_text(
        json.dumps(out, indent=2))
    if not args.quick:
        write_section(out)
    print(json.dumps({k: v for k, v in out.items() if k not in ("ours", "theirs")}, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
