"""Issue 5, L0: streamed histograms and percentiles, agreement with sae_lens's samples, and the
analytic expected L0 against sampling on the base and one model of every variation family."""

from __future__ import annotations

import math

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import L0Accumulator, collect, expected_l0
from synthviz.stats.l0 import hist_quantile
from tests.stats.families import families

FIRST_K = 512  # SMALL_CONFIG has 2048 features
# the analytic value must be within this of sampling (issue 5); measured: base 0.01%, families
# <= 1.6% (the other-hierarchy family, which is 2 sampling SE)
L0_BOUND = 0.03


def _l0(rows, cols, values, batch, first_k=FIRST_K):
    acc = L0Accumulator(first_k=first_k)
    acc.update(rows, cols, values, batch)
    return acc.result()


def test_histogram_statistics_are_exact(sv_entries):
    _, rows, cols, vals, b = sv_entries
    res = _l0(rows, cols, vals, b)
    per = torch.bincount(rows, minlength=b).double()
    per_k = torch.bincount(rows[cols < FIRST_K], minlength=b).double()
    assert res.samples == b and int(res.hist.sum()) == b
    assert res.mean == pytest.approx(float(per.mean()))
    assert res.std == pytest.approx(float(per.std()))
    assert res.mean_first_k == pytest.approx(float(per_k.mean()))
    for q, got in ((0.5, res.median), (0.05, res.p5), (0.95, res.p95)):
        assert got == pytest.approx(float(torch.quantile(per, q)))
    for q, got in ((0.5, res.median_first_k), (0.05, res.p5_first_k), (0.95, res.p95_first_k)):
        assert got == pytest.approx(float(torch.quantile(per_k, q)))
    assert res.max == int(per.max())
    assert math.isnan(hist_quantile(torch.zeros(3, dtype=torch.long), 0.5))  # no samples


def test_l0_agrees_with_sae_lens_samples(sl_entries, sv_entries):
    r1, c1, v1, n1 = sl_entries
    _, r2, c2, v2, n2 = sv_entries
    a, b = _l0(r1, c1, v1, n1), _l0(r2, c2, v2, n2)
    for m1, s1, m2, s2 in ((a.mean, a.std, b.mean, b.std),
                           (a.mean_first_k, a.std_first_k, b.mean_first_k, b.std_first_k)):
        z = (m1 - m2) / math.sqrt(s1 ** 2 / n1 + s2 ** 2 / n2)
        assert abs(z) < 5, (m1, m2, z)
        # the sample std's standard error is about std / sqrt(2 n)
        assert abs(s1 - s2) < 5 * math.sqrt(s1 ** 2 / (2 * n1) + s2 ** 2 / (2 * n2))
    # L0 is an integer count: the two samples' percentiles agree within 2
    for q in ("median", "p5", "p95"):
        assert abs(getattr(a, q) - getattr(b, q)) <= 2


def _check_expected(model, samples, seed, bound=L0_BOUND, first_k=FIRST_K):
    exp, exp_k = expected_l0(model, first_k=first_k)
    res = collect(model, samples, L0Accumulator(first_k=first_k), seed=seed)
    assert exp / res.mean - 1 == pytest.approx(0, abs=bound), (exp, res.mean, res.se)
    assert exp_k / res.mean_first_k - 1 == pytest.approx(0, abs=bound), (exp_k, res.mean_first_k)
    return exp, res


def test_expected_l0_small_model(small):
    _check_expected(small, 16384, seed=1)


def test_expected_l0_is_exact_without_correlation(small):
    # without the copula factor every step of the analytic rate is exact: 5 standard errors
    model = small.replace(correlation_factor=None, correlation_diag=None)
    exp, res = _check_expected(model, 16384, seed=2)
    assert abs(exp - res.mean) < 5 * res.se


@pytest.mark.parametrize("family", ["std", "hidden_dim", "truncate", "rel_p", "hierarchy"])
def test_expected_l0_small_families(small, family):
    _check_expected(families(small, small=True)[family], 8192, seed=3)


@pytest.fixture(scope="module")
def base():
    import synthviz
    return synthviz.load("base", device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("family", ["base", "std", "truncate", "rel_p", "hierarchy"])
def test_expected_l0_base_families(base, family):
    model = base if family == "base" else families(base, small=False)[family]
    _check_expected(model, 4096, seed=4, first_k=4096)


@pytest.mark.slow
def test_hidden_dim_family_has_the_base_l0(base):
    # a new dictionary changes neither the rates nor the sampled features (same seed, same draws)
    model = families(base, small=False)["hidden_dim"]
    assert model.hidden_dim == 512
    assert expected_l0(model) == expected_l0(base)
    _, r1, c1, _ = model.sample_entries(256, seed=8)
    _, r2, c2, _ = base.sample_entries(256, seed=8)
    assert torch.equal(r1, r2) and torch.equal(c1, c2)


def test_bad_first_k(small):
    with pytest.raises(ConfigError):
        L0Accumulator(first_k=-1)
    with pytest.raises(ConfigError):
        expected_l0(small, first_k=-1)
