"""Issue 5, firing frequencies: per-feature rates agree with sae_lens's samples and with the
analytic expected rates, within binomial tolerances for the sample size."""

from __future__ import annotations

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import FiringAccumulator, collect, expected_rates
from tests.stat_tools import bonferroni_z, two_sample_rate_z


def _firing(model, rows, cols, vals, n):
    acc = FiringAccumulator(model)
    acc.update(rows, cols, vals, n)
    return acc.result()


def test_rates_agree_with_sae_lens_samples(small, sl_entries, sv_entries):
    r1, c1, v1, n1 = sl_entries
    _, r2, c2, v2, n2 = sv_entries
    a = _firing(small, r1, c1, v1, n1)
    b = _firing(small, r2, c2, v2, n2)
    z = two_sample_rate_z(a.counts, n1, b.counts, n2)
    assert float(z.abs().max()) < bonferroni_z(small.num_features)
    # and both agree with the analytic rates
    zmax = bonferroni_z(small.num_features)
    assert a.max_abs_z < zmax and b.max_abs_z < zmax, (a.max_abs_z, b.max_abs_z)


@pytest.mark.parametrize("correlated", [False, True])
def test_expected_rates_per_feature(small, correlated):
    model = small if correlated else small.replace(correlation_factor=None, correlation_diag=None)
    res = collect(model, 32768, FiringAccumulator(model.num_features), seed=21)
    assert res.max_abs_z < bonferroni_z(model.num_features), res.max_abs_z
    # the test has power: halving the expected rates of the tree's children is caught
    f = model.forest
    wrong = res.expected_rate.clone()
    kids = (f.parent >= 0).nonzero().squeeze(1)
    wrong[kids] *= 0.5
    se = torch.sqrt(wrong * (1 - wrong) / res.samples).clamp(min=1e-12)
    assert float(((res.empirical_rate - wrong) / se).abs().max()) > bonferroni_z(model.num_features)


def test_fields_and_rank_order(small, sv_entries):
    _, rows, cols, vals, n = sv_entries
    res = _firing(small, rows, cols, vals, n)
    counts = torch.bincount(cols, minlength=small.num_features)
    assert torch.equal(res.counts, counts) and res.samples == n
    assert torch.allclose(res.empirical_rate, counts.double() / n)
    assert torch.equal(res.stored_p, small.firing_probabilities.double())
    assert torch.allclose(res.expected_rate, expected_rates(small))
    assert torch.allclose(res.error, res.empirical_rate - res.expected_rate)
    assert torch.equal(res.rank, torch.arange(1, small.num_features + 1))
    assert bool((res.ranked_expected[:-1] >= res.ranked_expected[1:]).all())
    assert torch.equal(res.ranked_empirical, res.empirical_rate[res.order])
    assert bool((res.ranked_by_empirical[:-1] >= res.ranked_by_empirical[1:]).all())
    # effective rates stay close to stored p for roots, far below it for compensated children
    roots = torch.tensor(small.forest.roots)
    assert torch.allclose(res.expected_rate[roots], res.stored_p[roots], rtol=1e-3)


def test_unbound_and_mismatch(small):
    acc = FiringAccumulator(10)
    acc.update(torch.tensor([0, 0, 1]), torch.tensor([3, 4, 3]), torch.ones(3), 2)
    res = acc.result()
    assert res.counts[3] == 2 and res.empirical_rate[3] == 1.0
    assert torch.isnan(res.expected_rate).all()
    with pytest.raises(ConfigError, match="features"):
        FiringAccumulator(10).bind(small)
