"""A truncation's expected rates are taken from its source's where the cut left a tree whole, and
integrated again for the trees it changed: the result must equal a direct integration."""

from __future__ import annotations

import pytest
import torch

from synthviz.stats.analytic import (DEFAULT_POINTS, _compute_expected_rates, expected_rates,
                                     rates_are_cheap)
from synthviz.variations.truncation import apply_truncation


@pytest.mark.parametrize("n", [1920, 1000, 300, 256])
def test_truncation_rates_equal_a_direct_integration(small, n):
    # the small model's trees hold features 0..1631: 1920 cuts no tree, the others cut some
    # (300 splits ME groups; at 256 the kept features' rates differ from the source's)
    source_rates = expected_rates(small)
    cut = apply_truncation(small, n)
    assert cut.prefix_of is small and rates_are_cheap(cut)
    got = expected_rates(cut)
    want = _compute_expected_rates(cut, DEFAULT_POINTS)
    # float32 inside the integration: agreement to its rounding
    assert torch.allclose(got, want, rtol=2e-6, atol=1e-9), float((got - want).abs().max())
    if n == 256:  # copying the source's rates for changed trees would be wrong here
        assert float((want - source_rates[:n]).abs().max()) > 1e-3


def test_rates_are_cheap_only_when_no_integration_is_needed(small):
    fresh = apply_truncation(small.replace(), 1000)  # a copy of the source: no rates known yet
    assert not rates_are_cheap(fresh)
    expected_rates(fresh.prefix_of)
    assert rates_are_cheap(fresh)
    assert not rates_are_cheap(small.replace(std_magnitudes=small.std_magnitudes * 2))
