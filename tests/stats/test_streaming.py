"""Issue 5, streaming: every accumulator fed 10 batches gives the one-batch result on the same
samples; `collect` feeds what the sampler draws; `summarize` keeps its keys."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import (CooccurrenceAccumulator, FiringAccumulator, InterferenceAccumulator,
                            L0Accumulator, MagnitudeAccumulator, ValidityAccumulator, collect,
                            feed, forest_summary, select_features, superposition_stats)
from synthviz.stats.summary import summarize

FOUNDATION_KEYS = {"num_features", "hidden_dim", "samples", "l0_mean", "l0_first_4096", "rho_mm",
                   "active_magnitude_std", "me_violations", "orphan_children"}


def _accumulators(model):
    feats = select_features(model, how="subtree", root=model.forest.roots[0])
    accs = [L0Accumulator(first_k=512), FiringAccumulator(model.num_features),
            CooccurrenceAccumulator(feats), MagnitudeAccumulator(), ValidityAccumulator(),
            InterferenceAccumulator(model, max_samples=600, chunk=128)]
    for a in accs:
        if hasattr(a, "bind"):
            a.bind(model)
    return accs


def _same(a, b, path="result"):
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            _same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            _same(a[k], b[k], f"{path}[{k}]")
    elif isinstance(a, torch.Tensor):
        if a.dtype.is_floating_point:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True), path
        else:
            assert torch.equal(a, b), path
    elif isinstance(a, float):
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    else:
        assert a == b, path


def test_ten_batches_equal_one(small):
    n = 5000
    hidden, rows, cols, vals = small.sample_entries(n, seed=17)
    one = _accumulators(small)
    feed(one, rows, cols, vals, n, hidden)
    ten = _accumulators(small)
    edges = torch.linspace(0, n, 11).long().tolist()
    for s, e in zip(edges, edges[1:]):
        sel = (rows >= s) & (rows < e)
        feed(ten, rows[sel] - s, cols[sel], vals[sel], e - s, hidden[s:e])
    for a, b in zip(one, ten):
        _same(a.result(), b.result(), type(a).__name__)


def test_collect_feeds_the_sampler_batches(small):
    calls = []
    res = collect(small, 3000, [L0Accumulator(), FiringAccumulator(small.num_features)], seed=8,
                  batch_size=1024, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1024, 3000), (2048, 3000), (3000, 3000)]
    gen = torch.Generator().manual_seed(8)
    counts = torch.zeros(small.num_features, dtype=torch.long)
    for b in (1024, 1024, 952):
        _, r, c, v = small.sample_entries(b, generator=gen)
        counts += torch.bincount(c, minlength=small.num_features)
    assert torch.equal(res[1].counts, counts)
    assert res[0].samples == 3000
    # bound by collect: the firing result knows the model
    assert not torch.isnan(res[1].expected_rate).any()
    single = collect(small, 10, L0Accumulator(), seed=1)
    assert single.samples == 10
    with pytest.raises(ConfigError, match="positive"):
        collect(small, 0, [L0Accumulator()])


def test_summarize_keys_and_values(small):
    calls = []
    out = summarize(small, n_samples=4096, seed=2, progress=lambda d, t: calls.append((d, t)))
    assert FOUNDATION_KEYS <= set(out)
    new = {"expected_l0", "expected_l0_first_4096", "l0_median", "l0_p5", "l0_p95", "mean_abs_cos",
           "mean_p95_abs_cos", "mean_p99_abs_cos", "me_parents", "sir", "hierarchy_roots"}
    assert new <= set(out)
    sup = superposition_stats(small.feature_vectors)
    assert out["rho_mm"] == pytest.approx(sup.rho_mm, abs=1e-7)
    assert out["mean_p99_abs_cos"] == pytest.approx(sup.mean_percentile[99], abs=1e-7)
    l0 = collect(small, 4096, L0Accumulator(), seed=2)
    assert out["l0_mean"] == pytest.approx(l0.mean) and out["l0_first_4096"] == out["l0_mean"]
    assert out["me_violations"] == 0 and out["orphan_children"] == 0
    assert out["expected_l0"] == pytest.approx(out["l0_mean"], rel=0.03)
    fs = forest_summary(small.forest)
    assert out["me_parents"] == fs.me_parents and out["hierarchy_roots"] == fs.roots
    assert calls[-1][0] == calls[-1][1]
    other = summarize(small, n_samples=1000, first_k=512, superposition=False,
                      interference_samples=0)
    assert FOUNDATION_KEYS <= set(other) and "l0_first_512" in other
    assert other["rho_mm"] is None and "sir" not in other
