"""Issue 5, magnitudes: histograms and moments of active values, overall and by depth, agree with
sae_lens's samples, and child rescaling widens the distribution with depth."""

from __future__ import annotations

import math

import pytest
import torch

from synthviz.hierarchy import Forest
from synthviz.stats import MagnitudeAccumulator, collect


def _mags(model, rows, cols, vals, n):
    acc = MagnitudeAccumulator(model.forest)
    acc.bind(model)
    acc.update(rows, cols, vals, n)
    return acc.result()


def test_histograms_and_moments_are_exact(small, sv_entries):
    _, rows, cols, vals, n = sv_entries
    res = _mags(small, rows, cols, vals, n)
    v = vals.double()
    assert res.active == v.numel() and res.samples == n
    assert int(res.counts.sum()) + res.overflow == v.numel()
    assert res.mean == pytest.approx(float(v.mean()))
    assert res.std == pytest.approx(float(v.std()))
    assert res.max_seen == pytest.approx(float(v.max()))
    hi = float(res.edges[-1])
    want = torch.histc(v[v < hi].float(), res.counts.numel(), 0, hi).long()
    assert int((res.counts - want).abs().sum()) <= 2  # bin-edge rounding only
    depth = small.forest.depth[cols]
    for d, c in res.by_depth.items():
        sel = v[depth == d]
        assert res.count_by_depth[d] == sel.numel()
        assert res.mean_by_depth[d] == pytest.approx(float(sel.mean()))
        assert res.std_by_depth[d] == pytest.approx(float(sel.std()))
    assert sum(int(c.sum()) for c in res.by_depth.values()) == int(res.counts.sum())
    assert -1 in res.by_depth  # features outside trees have their own histogram
    assert res.overflow < 1e-3 * v.numel()


def test_moments_agree_with_sae_lens(small, sv_entries, sl_entries):
    _, r1, c1, v1, n1 = sv_entries
    r2, c2, v2, n2 = sl_entries
    a, b = _mags(small, r1, c1, v1, n1), _mags(small, r2, c2, v2, n2)
    for d in a.mean_by_depth:
        na, nb = a.count_by_depth[d], b.count_by_depth[d]
        se = math.sqrt(a.std_by_depth[d] ** 2 / na + b.std_by_depth[d] ** 2 / nb)
        assert abs(a.mean_by_depth[d] - b.mean_by_depth[d]) < 5 * se, d
        # the std's standard error, with slack for the heavier tails of rescaled children
        se_sd = math.sqrt(a.std_by_depth[d] ** 2 / na + b.std_by_depth[d] ** 2 / nb) * 2
        assert abs(a.std_by_depth[d] - b.std_by_depth[d]) < 5 * se_sd, d


def test_child_rescaling_widens_deeper_levels(small):
    f = small.forest
    plain = small.replace(forest=Forest(num_features=f.num_features, roots=f.roots,
                                        children=f.children, me=f.me, rescale=set()))
    scaled = collect(small, 8192, MagnitudeAccumulator(), seed=3)
    flat = collect(plain, 8192, MagnitudeAccumulator(), seed=3)
    # value / mu_i: its spread grows with depth only when children are rescaled
    s = [scaled.rel_std_by_depth[d] for d in range(4)]
    p = [flat.rel_std_by_depth[d] for d in range(4)]
    assert s[0] < s[1] < s[2] < s[3]
    assert s[3] > 1.3 * p[3]
    assert abs(p[3] - p[0]) < 0.3 * p[0]
    assert scaled.std_by_depth[3] > flat.std_by_depth[3]
