"""Issue 14: synthviz's SAE evaluation against sae_lens's `eval_sae_on_synthetic_data`.

Fed the very same samples, every metric agrees (counts exactly, float sums to rounding); streamed
through synthviz's own sampler, the sample-dependent metrics agree within sampling error, with the
standard error measured from independent synthviz runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synthviz.sae import SAEAccumulator, evaluate_sae, load_sae
from synthviz.stats.stream import entries_from_dense, feed

pytestmark = pytest.mark.usefixtures("one_torch_thread")
evals = pytest.importorskip("sae_lens.synthetic.evals")

SAMPLE_KEYS = ("true_l0", "sae_l0", "shrinkage", "explained_variance")
CLS_KEYS = ("precision", "recall", "f1_score", "accuracy")


class Replay:
    """An activation generator that hands out pre-drawn batches in order."""

    def __init__(self, batches):
        self.batches = list(batches)

    def sample(self, b):
        out = self.batches.pop(0)
        assert out.shape[0] == b
        return out


def _sae_lens_sae(folder):
    from sae_lens import SAE
    return SAE.load_from_disk(str(folder))


def test_same_samples_give_the_same_numbers(sae_world):
    sl_model, model, sae_dir = sae_world
    torch.manual_seed(5)
    batches = [sl_model.activation_generator.sample(1000) for _ in range(4)]
    theirs = evals.eval_sae_on_synthetic_data(
        _sae_lens_sae(sae_dir), sl_model.feature_dict, Replay(batches), num_samples=4000,
        batch_size=1000).to_dict()
    acc = SAEAccumulator(load_sae(sae_dir), encode="dense")  # sae_lens's own encode
    acc.bind(model)
    for feats in batches:
        hidden = sl_model.feature_dict(feats)
        rows, cols, vals, b = entries_from_dense(feats)
        feed([acc], rows, cols, vals, b, hidden)
    ours = acc.result().to_dict()
    # the geometry-only metrics are computed the same way: bit-identical
    assert ours["mcc"] == theirs["mcc"]
    assert ours["uniqueness"] == theirs["uniqueness"]
    # counts are exact
    assert ours["true_l0"] == theirs["true_l0"]
    assert ours["sae_l0"] == theirs["sae_l0"]
    assert ours["dead_latents"] == theirs["dead_latents"]
    for k in CLS_KEYS:
        assert ours["classification"][k] == pytest.approx(theirs["classification"][k], abs=1e-6)
    # sums of floats: our decoder reads only the active rows (another summation order)
    assert ours["explained_variance"] == pytest.approx(theirs["explained_variance"], abs=1e-5)
    assert ours["shrinkage"] == pytest.approx(theirs["shrinkage"], abs=1e-5)


def _flat(d):
    return {**{k: d[k] for k in SAMPLE_KEYS}, **{k: d["classification"][k] for k in CLS_KEYS}}


def _disagreeing(sae, model, theirs, n=8000, runs=6) -> list[str]:
    """Keys whose mean over `runs` synthviz runs differs from sae_lens's beyond sampling error."""
    ours = [_flat(evaluate_sae(model, sae, n, seed=100 + i, batch_size=2000).to_dict())
            for i in range(runs)]
    bad = []
    for key in theirs:
        vals = np.array([r[key] for r in ours])
        se = vals.std(ddof=1)  # spread of n-sample runs = the standard error of one run
        # the difference of two independent n-sample estimates has sd sqrt(2) * se; 5 sigma,
        # widened by 1.6 for the uncertainty of se estimated from `runs` runs
        if abs(vals.mean() - theirs[key]) > 5 * math.sqrt(2) * se * 1.6 + 1e-9:
            bad.append(key)
    return bad


def _theirs(sl_model, sae_dir, n=8000):
    torch.manual_seed(11)
    return _flat(evals.eval_sae_on_synthetic_data(
        _sae_lens_sae(sae_dir), sl_model.feature_dict, sl_model.activation_generator,
        num_samples=n, batch_size=2000).to_dict())


def test_streamed_evaluation_agrees_within_sampling_error(sae_world):
    sl_model, model, sae_dir = sae_world
    assert _disagreeing(load_sae(sae_dir), model, _theirs(sl_model, sae_dir)) == []


def test_tolerance_catches_a_different_sae(sae_world):
    """The same check flags an SAE whose thresholds were raised by 20%."""
    sl_model, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    sae.threshold = sae.threshold * 1.2
    bad = _disagreeing(sae, model, _theirs(sl_model, sae_dir))
    assert "sae_l0" in bad and "explained_variance" in bad
