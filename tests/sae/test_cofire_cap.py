"""The cap on co-firing (latent, feature) pairs: an evaluation counts at most
`evaluate.MAX_PAIRS` (4,000,000) pairs, stopping before the first sample that would pass it, so a
dense SAE cannot make the per-latent co-firing table the slow part."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthviz.sae import SAEAccumulator, evaluate, load_sae
from synthviz.stats.stream import entries_from_dense, feed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_cap_is_four_million_pairs():
    assert evaluate.MAX_PAIRS == 4_000_000


def test_a_dense_sae_stops_at_the_cap(sae_world):
    """Every latent fires on every sample (b_enc raised): a sample holds d_sae x (its active
    features) pairs, so 4M pairs run out after about 1,500 of the 3,000 samples asked for."""
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    sae.b_enc = sae.b_enc + 1e4
    acc = SAEAccumulator(sae, cofire_samples=3000, top_cofire=2, encode="dense")
    acc.bind(model)
    ons = []
    for seed in (1, 2, 3):
        h, f = model.sample_with_features(1000, seed=seed, dense=True)
        rows, cols, vals, b = entries_from_dense(f)
        feed([acc], rows, cols, vals, b, h)
        ons.append(f > 0)
    res = acc.result()
    on = torch.cat(ons).numpy()
    pairs = np.cumsum(sae.d_sae * on.sum(1).astype(np.int64))
    used = int((pairs <= 4_000_000).sum())
    assert 0 < used < 3000  # the cap binds inside the samples asked for
    assert res.summary["cofire_samples_used"] == used
    assert acc.cofire_pairs == pairs[used - 1] <= evaluate.MAX_PAIRS
    # the table is made of exactly the samples within the cap
    counts = on[:used].sum(0)
    top = np.sort(counts)[::-1][:2] / used
    lt = res.latents
    assert np.allclose(lt["top_fraction"], top[None, :])
    assert np.array_equal(counts[lt["top_features"]], np.tile(np.sort(counts)[::-1][:2],
                                                              (sae.d_sae, 1)))
