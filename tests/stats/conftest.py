"""Fixtures shared by the statistics tests: the small sae_lens-built model loaded in synthviz, and
samples from both implementations (sampled once per session, kept small for runtime)."""

from __future__ import annotations

import pytest
import torch

import synthviz
from synthviz.stats import entries_from_dense

SL_SAMPLES = 8192  # sae_lens is the slow sampler; 2 batches
SV_SAMPLES = 16384


@pytest.fixture(scope="session")
def small(sae_lens_small):
    """SMALL_CONFIG (2048 features, D=64, hierarchy with ME and rescaling, rank-6 copula) as
    built by sae_lens, saved, and loaded with synthviz."""
    _, folder = sae_lens_small
    return synthviz.load_folder(folder, device="cpu")


@pytest.fixture(scope="session")
def sl_entries(sae_lens_small):
    """(rows, cols, values, samples) from sae_lens's own `sample_with_features`."""
    sl, _ = sae_lens_small
    torch.manual_seed(1234)
    parts, off = [], 0
    for _ in range(SL_SAMPLES // 4096):
        _, feats = sl.sample_with_features(4096)
        r, c, v, b = entries_from_dense(feats)
        parts.append((r + off, c, v))
        off += b
    rows, cols, vals = (torch.cat(x) for x in zip(*parts))
    return rows, cols, vals, off


@pytest.fixture(scope="session")
def sv_entries(small):
    """(hidden, rows, cols, values, samples) from synthviz's sampler, one batch, fixed seed."""
    hidden, rows, cols, vals = small.sample_entries(SV_SAMPLES, seed=99)
    return hidden, rows, cols, vals, SV_SAMPLES
