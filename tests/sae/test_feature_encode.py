"""Encoding from the active features (synthviz.sae.feature_encode) against the dense encode.

The two differ only by float32 rounding: the tolerance is the standard bound for float32 sums,
(terms + 2) x eps x the sum of the terms' absolute values, taken for both paths (the dense one
also rounds the hidden vector it is given), element by element.
"""

from __future__ import annotations

import pytest
import torch

from synthviz.sae import feature_encode, load_sae
from synthviz.sae.evaluate import evaluate_sae

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EPS = torch.finfo(torch.float32).eps


def _bound(sae, model, hidden, rows, cols, vals):
    """Elementwise rounding bound [B, d_sae] for |features path - dense path|."""
    b = hidden.shape[0]
    f, w = model.feature_vectors.double(), sae.W_enc.double().abs()
    l0 = int(torch.bincount(rows, minlength=b).max())
    terms = model.hidden_dim + l0 + 2
    # the hidden vector's own rounding, carried through W_enc
    h_abs = torch.zeros(b, model.hidden_dim, dtype=torch.float64)
    h_abs.index_add_(0, rows, (f[cols] * vals.double()[:, None]).abs())
    h_abs += model.bias.double().abs()
    x = (hidden.double() - sae.b_dec.double()).abs()
    fw = (f @ sae.W_enc.double()).abs()
    s = torch.zeros(b, sae.d_sae, dtype=torch.float64)
    s.index_add_(0, rows, fw[cols] * vals.double().abs()[:, None])
    return terms * EPS * (h_abs @ w + x @ w + s + sae.b_enc.double().abs() + 1e-30)


def test_pre_activations_equal_the_dense_path(sae_world, monkeypatch):
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    hidden, rows, cols, vals = model.sample_entries(1500, seed=3)
    fenc = feature_encode.FeatureEncoder(sae, model.feature_vectors, model.bias)
    fast, dense = fenc.pre_acts(rows, cols, vals, 1500), sae.pre_acts(hidden)
    bound = _bound(sae, model, hidden, rows, cols, vals)
    assert ((fast.double() - dense.double()).abs() <= bound).all()
    # the activations agree wherever the pre-activation is not within the bound of a threshold
    fires_fast, fires_dense = sae.activate(fast) != 0, sae.encode(hidden) != 0
    near = (dense.double() - sae.threshold.double()).abs() <= 2 * bound
    assert torch.equal(fires_fast[~near], fires_dense[~near])
    # column blocks (the CPU layout) give the very same numbers as one block
    monkeypatch.setattr(feature_encode, "BLOCK_BYTES", model.num_features * 4 * 48)
    blocked = feature_encode.FeatureEncoder(sae, model.feature_vectors, model.bias)
    assert len(blocked.blocks) == 6  # 256 latents in blocks of 48
    assert torch.equal(blocked.pre_acts(rows, cols, vals, 1500), fast)


def test_a_foreign_hidden_batch_is_encoded_densely(sae_world):
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    hidden, rows, cols, vals = model.sample_entries(64, seed=4)
    fenc = feature_encode.FeatureEncoder(sae, model.feature_vectors, model.bias)
    assert fenc.explains(hidden, rows, cols, vals)
    assert not fenc.explains(hidden + 0.05, rows, cols, vals)


def test_auto_uses_the_feature_path_only_when_it_pays(sae_world):
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)  # d_in 64
    assert feature_encode.build(sae, model, "auto", l0=64 / feature_encode.MIN_GAIN) is not None
    assert feature_encode.build(sae, model, "auto", l0=64 / feature_encode.MIN_GAIN + 1) is None
    assert feature_encode.build(sae, model, "dense", l0=1.0) is None
    assert feature_encode.build(sae, model, "features", l0=1e6) is not None
    with pytest.raises(ValueError):
        feature_encode.build(sae, model, "fast")


def test_the_evaluation_is_the_same_on_both_paths(sae_world, monkeypatch):
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    n, batch = 4000, 1000
    calls = []
    pre_acts = feature_encode.FeatureEncoder.pre_acts
    monkeypatch.setattr(feature_encode.FeatureEncoder, "pre_acts",
                        lambda self, *a: calls.append(1) or pre_acts(self, *a))
    fast = evaluate_sae(model, sae, n, seed=7, batch_size=batch, encode="features").to_dict()
    assert len(calls) == n // batch  # every batch went through the feature path
    dense = evaluate_sae(model, sae, n, seed=7, batch_size=batch, encode="dense").to_dict()
    # latents whose pre-activation lies within the rounding bound of its threshold may flip
    gen = torch.Generator().manual_seed(7)
    near = 0
    for _ in range(n // batch):
        hidden, rows, cols, vals = model.sample_entries(batch, generator=gen)
        bound = _bound(sae, model, hidden, rows, cols, vals)
        near += int(((sae.pre_acts(hidden).double() - sae.threshold.double()).abs()
                     <= 2 * bound).sum())
    assert abs(fast["sae_l0"] - dense["sae_l0"]) * n <= near
    assert fast["true_l0"] == dense["true_l0"]
    for key in ("mcc", "uniqueness"):
        assert fast[key] == dense[key]
    tol = 1e-5 + near / n
    for key in ("explained_variance", "shrinkage"):
        assert fast[key] == pytest.approx(dense[key], abs=tol)
    for key, v in dense["classification"].items():
        assert fast["classification"][key] == pytest.approx(v, abs=tol)
    assert abs(fast["dead_latents"] - dense["dead_latents"]) <= near
