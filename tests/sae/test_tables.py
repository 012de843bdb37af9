"""Issue 14: the per-feature, per-latent, absorption and splitting tables against a brute-force
dense computation on the same samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthviz.sae import SAEAccumulator, load_sae
from synthviz.sae.metrics import abs_cosines
from synthviz.stats.stream import entries_from_dense, feed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tables(sae_world):
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    acc = SAEAccumulator(sae, cofire_samples=3000, top_cofire=3, encode="dense")
    acc.bind(model)
    hs, fs = [], []
    for seed in (1, 2, 3):
        h, f = model.sample_with_features(1000, seed=seed, dense=True)
        rows, cols, vals, b = entries_from_dense(f)
        feed([acc], rows, cols, vals, b, h)
        hs.append(h)
        fs.append(f)
    res = acc.result()
    on = torch.cat(fs).numpy() > 0
    fires = (sae.encode(torch.cat(hs)) != 0).numpy()
    return model, sae, res, on, fires


def _prf(tp, pred, true):
    p = np.where(pred > 0, tp / np.maximum(pred, 1), 0.0)
    r = np.where(true > 0, tp / np.maximum(true, 1), 0.0)
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
    return p, r, f


def test_feature_table(tables):
    model, sae, res, on, fires = tables
    ft = res.features
    cos = abs_cosines(sae.W_dec, model.feature_vectors).numpy()
    assert np.array_equal(ft["best_latent"], cos.argmax(0))
    enc = abs_cosines(sae.W_enc.T, model.feature_vectors).numpy()
    assert np.array_equal(ft["best_latent_enc"], enc.argmax(0))
    for best, suffix in ((ft["best_latent"], ""), (ft["best_latent_enc"], "_enc")):
        lf = fires[:, best]  # [B, N]: each feature's latent
        tp = (lf & on).sum(0)
        p, r, f = _prf(tp, lf.sum(0), on.sum(0))
        assert np.allclose(ft["precision" + suffix], p)
        assert np.allclose(ft["recall" + suffix], r)
        assert np.allclose(ft["f1" + suffix], f)
    assert np.allclose(ft["rate"], on.mean(0))
    assert np.array_equal(ft["depth"], model.forest.depth.numpy())
    split = np.bincount(cos.argmax(1)[cos.max(1) >= 0.5], minlength=cos.shape[1])
    assert np.array_equal(ft["latents"], split)


def test_latent_table_matches_sae_lens_per_latent_definition(tables):
    model, sae, res, on, fires = tables
    lt = res.latents
    gt = on[:, lt["best_feature"]]
    tp = (fires & gt).sum(0)
    p, r, f = _prf(tp, fires.sum(0), gt.sum(0))
    assert np.allclose(lt["precision"], p) and np.allclose(lt["recall"], r)
    assert np.allclose(lt["f1"], f)
    assert res.classification["f1_score"] == pytest.approx(f.mean(), abs=1e-9)
    assert res.dead_latents == int((fires.sum(0) == 0).sum())


def test_top_cofiring_features(tables):
    _, _, res, on, fires = tables
    counts = fires.T.astype(np.int64) @ on.astype(np.int64)  # [L, N]
    denom = np.maximum(fires.sum(0), 1)
    top_f, top_frac = res.latents["top_features"], res.latents["top_fraction"]
    checked = 0
    for lat in np.flatnonzero(fires.sum(0) > 0)[:60]:
        want = np.sort(counts[lat])[::-1][:3] / denom[lat]
        ok = top_f[lat] >= 0
        assert np.allclose(top_frac[lat][ok], want[:ok.sum()])
        assert np.allclose(counts[lat, top_f[lat][ok]] / denom[lat], top_frac[lat][ok])
        checked += 1
    assert checked > 20


def test_absorption_edges_follow_the_729_definition(tables):
    model, _, res, on, fires = tables
    e = res.edges
    fb = res.features["best_latent"]
    assert len(e["child"]) == int((model.forest.parent >= 0).sum())
    checked = 0
    for p, c, w, wo, alone in zip(e["parent"], e["child"], e["with_child"], e["without_child"],
                                  e["no_child"]):
        pl = fires[:, fb[p]]
        both = on[:, p] & on[:, c]
        only = on[:, p] & ~on[:, c]
        kids = model.forest.children[int(p)]
        none = on[:, p] & ~on[:, kids].any(1)
        for got, mask in ((w, both), (wo, only), (alone, none)):
            if mask.any():
                assert got == pytest.approx(pl[mask].mean(), abs=1e-12)
            else:
                assert np.isnan(got)
        checked += both.any()
    assert checked > 50
    assert np.allclose(e["gap"], e["without_child"] - e["with_child"], equal_nan=True)
