"""Issue 5, co-occurrence: ME siblings never co-fire, a child only fires with its parent, and the
measured phi of the most correlated pairs tracks the phi the copula implies."""

from __future__ import annotations

import math

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import CooccurrenceAccumulator, expected_rates, implied_phi, select_features
from synthviz.stats.analytic import bvn_upper


def _cooc(features, rows, cols, vals, n):
    acc = CooccurrenceAccumulator(features)
    acc.update(rows, cols, vals, n)
    return acc.result()


def _subtrees(model, k):
    """Feature sets covering the first k trees entirely."""
    return [select_features(model, how="subtree", root=r) for r in model.forest.roots[:k]]


@pytest.mark.parametrize("source", ["synthviz", "sae_lens"])
def test_me_siblings_never_cofire_and_children_need_parents(small, sv_entries, sl_entries, source):
    if source == "synthviz":
        _, rows, cols, vals, n = sv_entries
    else:
        rows, cols, vals, n = sl_entries
    f = small.forest
    checked_me = checked_child = 0
    for feats in _subtrees(small, 8):
        res = _cooc(feats, rows, cols, vals, n)
        pos = {int(x): i for i, x in enumerate(feats)}
        for parent, kids in f.me_groups():
            if parent not in pos:
                continue
            idx = torch.tensor([pos[c] for c in kids])
            block = res.counts[idx][:, idx]
            assert int((block - torch.diag(torch.diagonal(block))).abs().sum()) == 0
            checked_me += 1
        for c, i in pos.items():
            p = int(f.parent[c])
            if p in pos:
                # every firing of the child is a joint firing with its parent
                assert int(res.counts[i, pos[p]]) == int(res.counts[i, i])
                checked_child += int(res.counts[i, i] > 0)
    assert checked_me >= 10 and checked_child >= 50


def test_measured_phi_tracks_the_copula(small, sv_entries):
    _, rows, cols, vals, n = sv_entries
    roots = torch.tensor(small.forest.roots)  # no parent: their activity is copula + magnitude
    fac = small.correlation_factor.double()[roots]
    rho = fac @ fac.T
    iu = torch.triu_indices(len(roots), len(roots), 1)
    pairs = rho[iu[0], iu[1]].abs().argsort(descending=True)[:8]
    res = _cooc(roots, rows, cols, vals, n)
    se = 1 / math.sqrt(n)  # phi's standard error near independence; smaller away from it
    for k in pairs.tolist():
        a, b = int(iu[0, k]), int(iu[1, k])
        want = implied_phi(small, int(roots[a]), int(roots[b]))
        got = float(res.phi[a, b])
        assert abs(want) > 8 * se  # the pair is visibly correlated
        assert got == pytest.approx(want, abs=5 * se), (int(roots[a]), int(roots[b]))
    # without the correlation factor the implied phi is 0
    assert implied_phi(small.replace(correlation_factor=None, correlation_diag=None), 0, 1) == 0


def test_bvn_orthant_against_direct_integration():
    # P(X > h, Y > k) = integral over x > h of phi(x) P(Y > k | x), on a fine grid
    for h, k, r in [(0.3, 1.2, 0.4), (2.0, 2.5, -0.3), (1.0, 0.5, 0.95), (-0.5, 2.2, 0.7)]:
        x = torch.linspace(h, 12, 200001, dtype=torch.float64)
        phi_x = torch.exp(-x * x / 2) / math.sqrt(2 * math.pi)
        cond = 0.5 * torch.erfc((k - r * x) / math.sqrt(1 - r * r) / math.sqrt(2))
        direct = float(torch.trapezoid(phi_x * cond, x))
        got = float(bvn_upper(torch.tensor(h), torch.tensor(k), torch.tensor(r)))
        assert got == pytest.approx(direct, abs=1e-8)


def test_measures_against_brute_force(small, sv_entries):
    _, rows, cols, vals, n = sv_entries
    feats = select_features(small, how="list", ids=[0, 1, 5, 30, 31, 700, 1900])
    res = _cooc(feats, rows, cols, vals, n)
    x = torch.zeros(n, small.num_features, dtype=torch.float64)
    x[rows, cols] = 1.0
    x = x[:, feats]
    joint = (x.T @ x) / n
    pi = x.mean(0)
    assert torch.equal(res.counts, (x.T @ x).round().long())
    assert torch.allclose(res.rates, pi)
    outer = pi[:, None] * pi[None, :]
    lift = joint / outer
    assert torch.allclose(res.lift, lift, equal_nan=True)
    cov = joint - outer
    sd = torch.sqrt(pi * (1 - pi))
    assert torch.allclose(res.phi, cov / (sd[:, None] * sd[None, :]), atol=1e-9, equal_nan=True)
    ok = joint > 0
    npmi = torch.where(ok, torch.log(lift) / -torch.log(joint), torch.full_like(joint, -1.0))
    assert torch.allclose(res.npmi[ok], npmi[ok])
    assert bool((res.npmi[~ok] == -1).all())
    # rare pairs are flagged, well-measured ones are not
    exp = outer * n
    assert torch.equal(res.noise, (exp < 10) & (res.counts < 10))
    assert not bool(res.noise[0, 1]) and bool(res.noise.any())


def test_select_features(small):
    top = select_features(small, how="top", k=20)
    r = expected_rates(small)
    assert torch.equal(top, torch.sort(r, descending=True, stable=True).indices[:20])
    root = small.forest.roots[3]
    sub = select_features(small, how="subtree", root=root)
    f = small.forest
    assert int(sub[0]) == root
    assert all(int(f.parent[int(c)]) in set(sub.tolist()) for c in sub[1:])
    assert len(select_features(small, how="subtree", root=root, k=3)) == 3
    for kwargs, msg in [({"how": "list", "ids": [1, 1]}, "duplicates"),
                        ({"how": "list", "ids": [5000]}, "out of range"),
                        ({"how": "subtree", "root": 2047}, "not in any"),
                        ({"how": "nope"}, "how must be")]:
        with pytest.raises(ConfigError, match=msg):
            select_features(small, **kwargs)
    with pytest.raises(ConfigError):
        CooccurrenceAccumulator([])
