"""Issue 8.1: bad settings get a clear, specific message, and nothing already loaded changes.

Each case runs through the Python API (a `SynthvizError` subclass whose message holds the key
words; the model loaded before is bit-for-bit unchanged) and, where the CLI has a flag for it,
through `synthviz stats` and `synthviz export --force` onto an earlier export (one
'synthviz: error:' line, non-zero exit, no traceback; the earlier export's bytes unchanged).
Settings that are repaired rather than refused (probabilities clamped to 1, correlation rows
rescaled) must report their count through `model.provenance` and a CLI warning line.
"""

from __future__ import annotations

import importlib.util
import logging

import pytest
import torch

import synthviz
from synthviz.config import HierarchyConfig, ModelConfig
from synthviz.errors import ConfigError, ModelFileError, SynthvizError
from synthviz.hierarchy import Forest
from synthviz.model import MIN_CORRELATION_DIAG, build_model
from tests.reliability.helpers import (assert_cli_error, assert_model_unchanged, cli_fork,
                                       folder_digest, model_snapshot, tiny_config)

HAS_VARIATIONS = importlib.util.find_spec("synthviz.variations") is not None
HAS_L0_TARGET = importlib.util.find_spec("synthviz.l0_target") is not None
HAS_EXPORT = importlib.util.find_spec("synthviz.export") is not None
needs_variations = pytest.mark.skipif(not HAS_VARIATIONS, reason="synthviz/variations.py not landed")


def cfg_with(**changes):
    return ModelConfig.from_dict(tiny_config(**changes))


def hier(**changes):
    d = tiny_config()["hierarchy"]
    d.update(changes)
    return d


def variation(**kw):
    from synthviz.variations import Variation
    return lambda m: Variation(**kw).apply(m)


def solve(target, first_k_target=None, first_k=4096):
    def run(m):
        from synthviz.l0_target import solve_l0
        return solve_l0(m, target, first_k_target, first_k=first_k)
    return run


def me_single_child(m):
    d = {"roots": [{"feature_index": 0, "mutually_exclusive_children": True,
                    "children": [{"feature_index": 1, "children": []}]}]}
    return Forest.from_dict(d, m.num_features)


HUGE = 10**9  # a dimension no machine can hold at 300 features (6.7 TB to build)

# (id, action on the loaded tiny model, exception type, key words, needs)
API_CASES = [
    ("roots-zero", lambda m: build_model(cfg_with(hierarchy=hier(total_root_nodes=0))),
     ConfigError, ["total_root_nodes", "positive", "0"], None),
    ("hidden-dim-zero", lambda m: cfg_with(hidden_dim=0), ConfigError, ["hidden_dim", "0"], None),
    ("hidden-dim-negative", lambda m: cfg_with(hidden_dim=-4), ConfigError,
     ["hidden_dim", "-4"], None),
    ("num-features-zero", lambda m: cfg_with(num_features=0), ConfigError,
     ["num_features", "0"], None),
    ("hidden-dim-too-large", lambda m: build_model(cfg_with(hidden_dim=HUGE)), ConfigError,
     ["needs about", "GiB", "available"], None),
    ("num-features-too-large",
     lambda m: build_model(cfg_with(num_features=10**11, hierarchy=None)), ConfigError,
     ["needs about", "GiB", "available"], None),
    ("samples-zero", lambda m: m.sample_entries(0, seed=0), ConfigError,
     ["sample count", "positive", "0"], None),
    ("samples-negative", lambda m: m.sample(-5, seed=0), ConfigError,
     ["sample count", "positive", "-5"], None),
    ("samples-not-int", lambda m: m.sample_with_features(2.5, seed=0), ConfigError,
     ["sample count", "2.5"], None),
    ("samples-too-large", lambda m: m.sample_entries(10**13, seed=0), ConfigError,
     ["needs about", "GiB", "available", "batches of at most"], None),
    ("dense-samples-too-large", lambda m: m.sample_entries(10**11, seed=0, method="dense"),
     ConfigError, ["needs about", "GiB", "batches of at most"], None),
    ("branching-min-gt-max", lambda m: HierarchyConfig(branching_factor=(5, 3)), ConfigError,
     ["branching_factor", "min 5 > max 3"], None),
    ("branching-below-2", lambda m: HierarchyConfig(branching_factor=1), ConfigError,
     ["branching_factor", "at least 2", "1"], None),
    ("branching-min-below-2", lambda m: HierarchyConfig(branching_factor=(1, 4)), ConfigError,
     ["branching_factor", "at least 2"], None),
    ("me-parent-one-child", me_single_child, ModelFileError,
     ["hierarchy.json", "feature 0", "mutually exclusive", "at least 2"], None),
    ("variation-roots-exceed-features", variation(roots=301), ConfigError,
     ["roots", "301", "300"], "variations"),
    ("variation-hidden-dim-zero", variation(hidden_dim=0), ConfigError,
     ["hidden_dim", "at least 1", "0"], "variations"),
    ("variation-hidden-dim-too-large", variation(hidden_dim=HUGE), ConfigError,
     ["needs about", "GiB", "available"], "variations"),
    ("variation-branching-min-gt-max", variation(branching="5-3"), ConfigError,
     ["branching", "min 5 > max 3"], "variations"),
    ("variation-branching-below-2", variation(branching="1"), ConfigError,
     ["branching", "at least 2", "1"], "variations"),
    ("variation-branching-min-below-2", variation(branching="1-4"), ConfigError,
     ["branching", "at least 2"], "variations"),
    ("variation-truncate-beyond", variation(num_features=301), ConfigError,
     ["num_features", "301", "300"], "variations"),
    ("l0-target-beyond-features", solve(10**5), ConfigError,
     ["target L0", "unreachable", "300 features"], "l0_target"),
    ("l0-target-unreachable", solve(250.0), ConfigError, ["target L0", "unreachable"], "l0_target"),
    ("l0-first-k-unreachable", solve(5.0, 4.9, first_k=10), ConfigError,
     ["first-10", "unreachable"], "l0_target"),
    ("l0-target-negative", solve(-3.0), ConfigError, ["L0", "positive"], "l0_target"),
    ("variation-l0-unreachable", variation(target_l0=250.0), ConfigError,
     ["target L0", "unreachable"], "variations"),
    ("variation-first-k-above-l0", variation(target_l0=5.0, target_l0_first_k=6.0), ConfigError,
     ["cannot exceed", "6"], "variations"),
]

NEEDS = {None: True, "variations": HAS_VARIATIONS, "l0_target": HAS_L0_TARGET}


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_refuses_with_specific_message(case, loaded_model):
    _, action, exc_type, words, needs = case
    if not NEEDS[needs]:
        pytest.skip(f"synthviz/{needs}.py has not landed")
    before = model_snapshot(loaded_model)
    with pytest.raises(exc_type) as info:
        action(loaded_model)
    assert isinstance(info.value, SynthvizError)
    msg = str(info.value)
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    assert_model_unchanged(loaded_model, before)
    # the model still samples after the refusal
    assert loaded_model.sample(8, seed=0).shape == (8, loaded_model.hidden_dim)


# (id, extra CLI args, key words); the source is the tiny model folder
CLI_CASES = [
    ("samples-zero", ["--samples", "0"], ["--samples", "positive", "0"], None),
    ("samples-negative", ["--samples", "-7"], ["samples", "-7"], None),
    ("roots-exceed-features", ["--roots", "301"], ["roots", "301", "300"], "variations"),
    ("hidden-dim-zero", ["--hidden-dim", "0"], ["hidden_dim", "at least 1"], "variations"),
    ("hidden-dim-negative", ["--hidden-dim", "-3"], ["hidden_dim", "-3"], "variations"),
    ("hidden-dim-too-large", ["--hidden-dim", str(HUGE)], ["needs about", "GiB", "available"],
     "variations"),
    ("num-features-zero", ["--num-features", "0"], ["num_features", "at least 1"], "variations"),
    ("branching-min-gt-max", ["--branching", "5-3"], ["branching", "min 5 > max 3"], "variations"),
    ("branching-below-2", ["--branching", "1"], ["branching", "at least 2"], "variations"),
    ("branching-min-below-2", ["--branching", "1-4"], ["branching", "at least 2"], "variations"),
    ("branching-garbage", ["--branching", "many"], ["branching", "many"], "variations"),
    ("me-portion-above-1", ["--me-portion", "1.5"], ["me_portion", "[0, 1]"], "variations"),
    ("me-depths-reversed", ["--me-min-depth", "2", "--me-max-depth", "1"],
     ["me_max_depth", "me_min_depth"], "variations"),
    ("rel-p-zero", ["--rel-p", "0"], ["rel_p", "positive"], "variations"),
    ("l0-target-unreachable", ["--target-l0", "250"], ["target L0", "unreachable"],
     "variations"),
    ("l0-target-beyond-features", ["--target-l0", "100000"], ["unreachable", "300 features"],
     "variations"),
    ("l0-first-k-above-l0", ["--target-l0", "5", "--target-l0-first-k", "6"],
     ["cannot exceed"], "variations"),
    ("l0-first-k-unreachable", ["--target-l0", "5", "--target-l0-first-k", "4.9",
                                "--first-k", "10"], ["first-10", "unreachable"], "variations"),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_stats_refuses(case, tiny_model_folder, tmp_path):
    _, extra, words, needs = case
    if needs == "variations" and not HAS_VARIATIONS:
        pytest.skip("synthviz/variations.py has not landed")
    res = cli_fork(["stats", str(tiny_model_folder), "--samples", "20", "--device", "cpu",
                    *extra], env={"SYNTHVIZ_CACHE": str(tmp_path / "cache")})
    assert_cli_error(res, *words)


@pytest.mark.skipif(not HAS_EXPORT, reason="synthviz/export.py has not landed")
@pytest.mark.parametrize("case", [c for c in CLI_CASES if c[0] != "samples-zero"],
                         ids=[c[0] for c in CLI_CASES if c[0] != "samples-zero"])
def test_cli_export_refuses_and_keeps_earlier_export(case, tiny_model_folder, loaded_model,
                                                     tmp_path):
    _, extra, words, needs = case
    if needs == "variations" and not HAS_VARIATIONS:
        pytest.skip("synthviz/variations.py has not landed")
    earlier = tmp_path / "earlier"
    loaded_model.save(earlier)
    before = folder_digest(earlier)
    args = ["export", str(tiny_model_folder), "--out", str(earlier), "--force", "--device", "cpu"]
    if "--samples" not in extra:
        args += ["--samples", "20"]
    res = cli_fork([*args, *extra], env={"SYNTHVIZ_CACHE": str(tmp_path / "cache")})
    words = [w.replace("positive", "") for w in words]  # export allows --samples 0
    assert_cli_error(res, *[w for w in words if w])
    assert folder_digest(earlier) == before


# ---------------------------------------------------------------------------- repaired, with a count

def clamping_config(seed: int = 11):
    # high probabilities with compensation: many children would need p > 1
    return cfg_with(seed=seed, firing_probability={"generator_name": "zipfian", "exponent": 0.5,
                                                   "max_prob": 0.9, "min_prob": 0.2})


def rescaling_config(seed: int = 11):
    d = tiny_config(seed=seed)
    d["correlation"] = {"rank": 8, "correlation_scale": 0.3, "seed": None}
    return ModelConfig.from_dict(d)


def test_clamped_probabilities_are_counted():
    m = build_model(clamping_config(), device="cpu")
    n = m.provenance.probabilities_clamped
    base_p = m.cfg.firing_probability.generate(m.num_features)
    expected = int(((m.firing_probabilities >= 1) & (base_p < 1)).sum())
    assert n == expected and n > 0
    assert float(m.firing_probabilities.max()) <= 1.0


def test_rescaled_correlation_rows_are_counted():
    m = build_model(rescaling_config(), device="cpu")
    n = m.provenance.correlation_rows_rescaled
    sq = (m.correlation_factor.double() ** 2).sum(1)
    at_floor = int((m.correlation_diag <= MIN_CORRELATION_DIAG * 1.0001).sum())
    assert n == at_floor and n > 0
    assert bool((1 - sq >= MIN_CORRELATION_DIAG * 0.999).all())  # every row now has c_i >= 0.01


@pytest.mark.parametrize("kind", ["clamped", "rescaled"])
def test_repairs_survive_save_and_load_and_reach_the_cli(kind, tmp_path):
    cfg = clamping_config() if kind == "clamped" else rescaling_config()
    built = build_model(cfg, device="cpu")
    key = "probabilities_clamped" if kind == "clamped" else "correlation_rows_rescaled"
    count = getattr(built.provenance, key)
    assert count > 0
    built.save(tmp_path / "m")
    assert getattr(synthviz.load(tmp_path / "m", device="cpu").provenance, key) == count
    res = cli_fork(["stats", str(tmp_path / "m"), "--samples", "20", "--device", "cpu"])
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if ln.startswith("synthviz: warning:")]
    word = "clamped to 1" if kind == "clamped" else "correlation rows were rescaled"
    assert any(f" {count} " in ln and word in ln for ln in warnings), res.stderr
    assert "Traceback" not in res.stderr


def test_no_warning_when_nothing_was_repaired(tiny_model_folder):
    m = synthviz.load(tiny_model_folder, device="cpu")
    assert (m.provenance.probabilities_clamped or 0) == 0
    assert (m.provenance.correlation_rows_rescaled or 0) == 0
    res = cli_fork(["stats", str(tiny_model_folder), "--samples", "20", "--device", "cpu"])
    assert res.returncode == 0 and "warning" not in res.stderr, res.stderr


@needs_variations
def test_rel_p_clamping_is_counted_in_api_and_cli(loaded_model, tiny_model_folder):
    from synthviz.variations import Variation

    before = model_snapshot(loaded_model)
    m = Variation(rel_p=8.0).apply(loaded_model)
    assert_model_unchanged(loaded_model, before)
    n = m.provenance.rel_p_clamped
    assert n > 0 and float(m.firing_probabilities.max()) <= 1.0
    assert n == int((m.firing_probabilities >= 1).sum())
    res = cli_fork(["stats", str(tiny_model_folder), "--samples", "20", "--device", "cpu",
                    "--rel-p", "8"])
    assert res.returncode == 0, res.stderr
    assert f"synthviz: warning: {n} firing probabilities" in res.stderr, res.stderr


def test_sampling_memory_check_allows_ordinary_batches(loaded_model):
    from synthviz.model import estimate_sample_bytes, l0_upper_bound

    hidden, rows, cols, vals = loaded_model.sample_entries(20_000, seed=1)
    measured = cols.numel() / 20_000
    bound = l0_upper_bound(loaded_model)
    # the bound is an upper estimate of the mean L0 (5 sigma of sampling noise allowed)
    se = (float(torch.bincount(rows, minlength=20_000).double().std()) / 20_000 ** 0.5)
    assert measured <= bound + 5 * se, (measured, bound)
    assert estimate_sample_bytes(loaded_model, 4096) < 64 << 20


def test_logging_stays_quiet_in_cli(tiny_model_folder, caplog):
    # library warnings are logged at WARNING; the CLI shows its own one-line summary instead
    with caplog.at_level(logging.WARNING, logger="synthviz"):
        build_model(rescaling_config(), device="cpu")
    assert any("rescaled" in r.getMessage() for r in caplog.records)
