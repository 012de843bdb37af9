"""Issue 2: the `synthviz` command line (presets, stats) and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

FOUNDATION_KEYS = {"num_features", "hidden_dim", "l0_mean", "l0_first_4096", "rho_mm",
                   "active_magnitude_std", "me_violations", "orphan_children", "samples"}


def synthviz(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "synthviz.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_presets_lists_base():
    res = synthviz("presets")
    assert res.returncode == 0, res.stderr
    names = res.stdout.split()
    assert "base" in names and len(names) == len(set(names))


def test_stats_json_on_a_folder(sae_lens_small):
    _, folder = sae_lens_small
    res = synthviz("stats", str(folder), "--samples", "5000", "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert FOUNDATION_KEYS <= set(out)
    assert out["num_features"] == 2048 and out["hidden_dim"] == 64 and out["samples"] == 5000
    assert out["me_violations"] == 0 and out["orphan_children"] == 0
    assert 0 < out["l0_first_4096"] <= out["l0_mean"]
    assert 0 < out["rho_mm"] < 1 and out["active_magnitude_std"] > 0


def test_errors_are_one_line_without_traceback(tmp_path):
    cases = [
        (("stats", str(tmp_path / "nope") + "/", "--samples", "10"), "no such model folder"),
        (("stats", "not a source", "--samples", "10"), "not a preset"),
        (("stats", "base", "--samples", "0"), "--samples"),
    ]
    for args, words in cases:
        res = synthviz(*args, env={"HF_HUB_OFFLINE": "1"})
        assert res.returncode != 0, args
        assert "Traceback" not in res.stderr, res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("synthviz: error:") and words in last, last


def test_presets_verbose_descriptions_are_formatted():
    from synthviz.presets import PRESETS

    res = synthviz("presets", "--verbose")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == list(PRESETS)
    for ln in lines:  # an unformatted f-string placeholder leaves a literal brace
        assert "{" not in ln and "}" not in ln, ln
    assert "hidden_dim=1024" in next(ln for ln in lines if ln.startswith("d-1024\t"))
