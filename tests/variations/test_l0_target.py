"""Issue 4, L0 targeting on the small model: the solved generator hits the targets when measured
independently, is a plain config sae_lens regenerates, and unreachable targets say what is reachable.
"""

from __future__ import annotations

import math

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.l0_target import estimate_l0, measure_l0, solve_l0
from synthviz.variations import Variation

sl_synth = pytest.importorskip("sae_lens.synthetic")

CHECK_SAMPLES = 20_000
CHECK_SEED = 12345  # not the solver's seed: an independent measurement


def _within(measured, se, target, rel):
    """|measured - target| within the solver's tolerance plus 5 standard errors of this check."""
    return abs(measured - target) <= rel * target + 5 * se


def test_measure_l0_counts_active_features(small_model):
    m = measure_l0(small_model, 3000, first_k=512, seed=4)
    _, rows, cols, _ = small_model.sample_entries(3000, seed=4)
    assert m["samples"] == 3000
    assert math.isclose(m["l0"], cols.numel() / 3000, rel_tol=1e-12)
    assert math.isclose(m["l0_first_k"], int((cols < 512).sum()) / 3000, rel_tol=1e-12)
    per = torch.bincount(rows, minlength=3000).double()
    assert math.isclose(m["l0_se"], float(per.std() / math.sqrt(3000)), rel_tol=1e-3)


def test_expected_l0_is_close_to_sampled(small_model):
    est, est_k = estimate_l0(small_model, first_k=512)
    m = measure_l0(small_model, CHECK_SAMPLES, first_k=512, seed=CHECK_SEED)
    # the estimate ignores the copula correlation; a few percent is all it may miss by
    assert _within(m["l0"], m["l0_se"], est, 0.05)
    assert _within(m["l0_first_k"], m["l0_first_k_se"], est_k, 0.05)


@pytest.mark.parametrize("target, target_k", [(12.0, 8.0), (5.0, None), (20.0, 6.0)])
def test_solved_model_hits_the_targets(small_model, target, target_k):
    model = solve_l0(small_model, target, target_k, first_k=512, use_cache=False)
    rep = model.provenance.l0_target
    assert rep["target_l0"] == target and rep["target_first_k"] == target_k
    assert rep["relative_error"] <= 0.015
    m = measure_l0(model, CHECK_SAMPLES, first_k=512, seed=CHECK_SEED)
    assert _within(m["l0"], m["l0_se"], target, 0.015)
    if target_k is not None:
        assert _within(m["l0_first_k"], m["l0_first_k_se"], target_k, 0.015)
    # the solution is a plain generator: sae_lens regenerates the same stored probabilities
    d = model.cfg.to_dict()
    d["orthogonalization"] = None
    theirs = sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(d))
    assert torch.equal(theirs.activation_generator.firing_probabilities,
                       model.firing_probabilities)
    assert model.feature_vectors is small_model.feature_vectors


def test_solutions_are_cached(small_model, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHVIZ_CACHE", str(tmp_path))
    first = Variation(target_l0=9.0, target_l0_first_k=6.0, first_k=512).apply(small_model)
    import synthviz.l0_target as lt

    def boom(*a, **k):
        raise AssertionError("solved again instead of reading the cache")
    monkeypatch.setattr(lt, "solve_analytic", boom)
    again = Variation(target_l0=9.0, target_l0_first_k=6.0, first_k=512).apply(small_model)
    assert torch.equal(first.firing_probabilities, again.firing_probabilities)
    assert first.provenance.l0_target == again.provenance.l0_target
    # a new sampler (other samples for the same seed) is a cache miss: the solution is redone
    monkeypatch.setattr("synthviz.sampling.SAMPLER_VERSION", 10**6)
    with pytest.raises(AssertionError, match="solved again"):
        Variation(target_l0=9.0, target_l0_first_k=6.0, first_k=512).apply(small_model)


def test_unreachable_l0_names_the_target_and_range(small_model):
    with pytest.raises(ConfigError, match=r"target L0 1900 is unreachable: L0 can range from 0 "
                                          r"to about \d"):
        solve_l0(small_model, 1900.0, use_cache=False)
    with pytest.raises(ConfigError, match="only 2048 features"):
        solve_l0(small_model, 5000.0, use_cache=False)


def test_unreachable_first_k_names_the_target_and_range(small_model):
    # feature 0 fires at most once per sample, so a first-1 L0 of 1.5 cannot happen
    with pytest.raises(ConfigError) as err:
        solve_l0(small_model, 10.0, 1.5, first_k=1, use_cache=False)
    msg = str(err.value)
    assert "target first-1 L0 1.5 is unreachable with L0 10" in msg
    lo, hi = (float(x) for x in msg.split("range from about ")[1].split(" (")[0].split(" to "))
    assert 0 <= lo <= hi <= 1.0
