"""Issue 5, superposition: exact pairwise |cos| statistics equal sae_lens's, and readout noise."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from synthviz.errors import ConfigError
from synthviz.stats import InterferenceAccumulator, collect, superposition_stats
from synthviz.stats.superposition import _hist_add, prefix_length_ok, prefix_stats


@pytest.fixture(scope="module")
def sl_superposition(sae_lens_small):
    from sae_lens.synthetic.stats import compute_superposition_stats
    sl, _ = sae_lens_small
    return compute_superposition_stats(sl.feature_dict)


@pytest.mark.parametrize("method, tile", [("tiled", 256), ("dense", 512), ("auto", 512)])
def test_equals_sae_lens(small, sl_superposition, method, tile):
    ref = sl_superposition
    ours = superposition_stats(small.feature_vectors, method=method, tile=tile)
    assert ours.method == ("tiled" if method == "auto" else method)
    assert torch.allclose(ours.max_abs_cos, ref.max_abs_cos_sims, atol=1e-4, rtol=0)
    for p in (95, 99):
        assert torch.allclose(ours.percentile[p], ref.percentile_abs_cos_sims[p], atol=1e-4, rtol=0)
        assert ours.mean_percentile[p] == pytest.approx(ref.mean_percentile_abs_cos_sim[p], abs=1e-4)
    assert ours.rho_mm == pytest.approx(ref.mean_max_abs_cos_sim, abs=1e-4)
    assert ours.mean_abs_cos == pytest.approx(ref.mean_abs_cos_sim, abs=1e-4)


def _brute(v: torch.Tensor, bins: int):
    v = v / v.norm(dim=1, keepdim=True)
    g = (v @ v.T).abs()
    n = g.shape[0]
    upper = g[torch.triu(torch.ones(n, n, dtype=torch.bool), 1)]
    hist = torch.zeros(bins, dtype=torch.long)
    _hist_add(hist, upper, bins)
    g.fill_diagonal_(-1.0)
    return g, hist


def test_partner_histogram_and_other_percentiles_are_exact():
    torch.manual_seed(0)
    v = torch.randn(1500, 24)
    g, hist = _brute(v, 50)
    res = superposition_stats(v, percentiles=(50, 90, 99.5), bins=50, method="tiled", tile=128)
    mx, arg = g.max(dim=1)
    assert torch.equal(res.partner, arg)
    assert torch.allclose(res.max_abs_cos, mx, atol=1e-6, rtol=0)
    others = g[~torch.eye(1500, dtype=torch.bool)].view(1500, 1499)
    for p in (50, 90, 99.5):
        assert torch.allclose(res.percentile[p], torch.quantile(others, p / 100, dim=1),
                              atol=1e-6, rtol=0)
    # each unordered pair once; a value on a bin edge may land one bin over after rounding
    assert int(res.hist_counts.sum()) == 1500 * 1499 // 2 == res.num_pairs
    assert int((res.hist_counts - hist).abs().sum()) <= 2
    assert res.hist_edges.numel() == 51


def test_threshold_misses_are_recomputed_exactly():
    # every diagonal tile is one tight cluster, so each row's threshold from its own tile is far
    # too high and nearly every row must be recomputed in full
    torch.manual_seed(1)
    centres = torch.randn(8, 32)
    v = centres.repeat_interleave(128, 0) + 0.05 * torch.randn(1024, 32)
    res = superposition_stats(v, method="tiled", tile=128)
    ref = superposition_stats(v, method="dense")
    assert res.rows_recomputed > 500
    for p in (95, 99):
        assert torch.allclose(res.percentile[p], ref.percentile[p], atol=1e-6, rtol=0)
    assert torch.equal(res.partner, ref.partner)


@pytest.mark.parametrize("n", [512, 1024, 1280, 2048])
def test_prefix_statistics_equal_a_direct_computation(n):
    # a truncated model's dictionary is a prefix of its source's: its statistics come from the
    # source's prefix tables without a new Gram product, and must equal computing them directly
    torch.manual_seed(2)
    v = torch.randn(2048, 24)
    full = superposition_stats(v, bins=60, method="tiled", tile=256)
    assert full.tile == 256 and full.tile_max.shape == (2048, 8)
    got = prefix_stats(full, v[:n])
    ref = superposition_stats(v[:n], bins=60, method="dense")
    g, hist = _brute(v[:n], 60)
    assert got.method == "prefix" and got.num_features == n and got.num_pairs == ref.num_pairs
    assert torch.equal(got.partner, ref.partner) and torch.equal(got.partner, g.argmax(dim=1))
    assert torch.allclose(got.max_abs_cos, ref.max_abs_cos, atol=1e-6, rtol=0)
    assert got.rho_mm == pytest.approx(ref.rho_mm, abs=1e-7)
    assert got.mean_abs_cos == pytest.approx(ref.mean_abs_cos, rel=1e-6)
    assert int(got.hist_counts.sum()) == n * (n - 1) // 2
    assert int((got.hist_counts - hist).abs().sum()) <= 2  # bin-edge rounding, as above
    assert got.percentile == {}  # per-row order statistics cannot come from the tables


def test_partners_are_the_smallest_index_on_ties_in_full_and_prefix_statistics():
    # the partner comes from the per-tile maxima and their positions: exact ties (a copy and a
    # negated copy of feature 10, |cos| 1 in two different tiles) must give the smallest index
    torch.manual_seed(4)
    v = torch.randn(1024, 16)
    v[300], v[900] = v[10], -v[10]
    full = superposition_stats(v, method="tiled", tile=256)
    dense = superposition_stats(v, method="dense")
    assert full.tile_arg is not None and full.tile_arg.shape == (1024, 4)
    assert full.partner[10] == 300 and full.partner[300] == 10 and full.partner[900] == 10
    assert torch.equal(full.partner, dense.partner)
    for n in (512, 768, 1024):
        got, ref = prefix_stats(full, v[:n]), superposition_stats(v[:n], method="dense")
        assert torch.equal(got.partner, ref.partner)
        assert got.partner[10] == 300
    assert prefix_stats(full, v[:256]).partner[10] != 300  # the copies lie beyond the prefix
    # tables without the positions (e.g. written by older code) answer no prefix
    assert not prefix_length_ok(dataclasses.replace(full, tile_arg=None), 512)


def test_prefix_statistics_refuse_what_they_cannot_answer():
    v = torch.randn(1024, 16)
    full = superposition_stats(v, method="tiled", tile=256)
    for n in (300, 1, 2048):  # not whole tiles, too few, longer than the source
        assert not prefix_length_ok(full, n)
        with pytest.raises(ConfigError, match="no prefix statistics"):
            prefix_stats(full, torch.randn(n, 16))
    dense = superposition_stats(v, method="dense")
    assert dense.tile_max is None and not prefix_length_ok(dense, 512)


def test_progress_and_errors():
    calls = []
    superposition_stats(torch.randn(600, 8), method="tiled", tile=64,
                        progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    with pytest.raises(ConfigError, match="at least 2"):
        superposition_stats(torch.randn(1, 8))
    with pytest.raises(ConfigError, match="2-D"):
        superposition_stats(torch.randn(8))
    with pytest.raises(ConfigError, match="percentiles"):
        superposition_stats(torch.randn(10, 4), percentiles=(101,))


@pytest.mark.slow
def test_base_rows_exact_at_16k():
    import synthviz
    model = synthviz.load("base", device="cpu")
    res = superposition_stats(model.feature_vectors)
    v = model.feature_vectors.float()
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)
    rows = torch.randperm(v.shape[0], generator=torch.Generator().manual_seed(0))[:48]
    g = (v[rows] @ v.T).abs()
    for k, r in enumerate(rows.tolist()):
        others = torch.cat([g[k, :r], g[k, r + 1:]])
        assert float(res.max_abs_cos[r]) == pytest.approx(float(others.max()), abs=1e-6)
        for p in (95, 99):
            assert float(res.percentile[p][r]) == pytest.approx(
                float(torch.quantile(others, p / 100)), abs=1e-6)
    assert 0.13 < res.rho_mm < 0.16  # the paper's ~0.15
    assert res.rows_recomputed < 0.05 * model.num_features  # threshold misses, redone exactly


def test_interference_matches_brute_force(small):
    n = 768
    acc = InterferenceAccumulator(small, bins=40, max_samples=n, chunk=200)
    collect(small, 1024, [acc], seed=5, batch_size=512)  # the second batch is only counted
    res = acc.result()
    # reproduce the same n samples: the driver's generator draws batch after batch
    gen = torch.Generator().manual_seed(5)
    h1, r1, c1, v1 = small.sample_entries(512, generator=gen)
    h2, r2, c2, v2 = small.sample_entries(512, generator=gen)
    hidden = torch.cat([h1, h2])[:n]
    dense = torch.zeros(1024, small.num_features)
    dense[r1, c1] = v1
    dense[r2 + 512, c2] = v2
    dense = dense[:n]
    err = (hidden - small.bias) @ small.feature_vectors.T - dense
    act = dense > 0
    ea, ei = err[act].double(), err[~act].double()
    assert res.samples == n and res.samples_seen == 1024
    assert res.active_n == ea.numel() and res.inactive_n == ei.numel()
    assert res.active_mean == pytest.approx(float(ea.mean()), abs=1e-5)
    assert res.active_std == pytest.approx(float(ea.std()), rel=1e-5)
    assert res.inactive_std == pytest.approx(float(ei.std()), rel=1e-5)
    sig = float((dense[act].double() ** 2).mean())
    assert res.sir == pytest.approx(sig / float((ea ** 2).mean()), rel=1e-5)
    assert res.sir_db == pytest.approx(10 * math.log10(res.sir))
    r = res.edges[-1].item()
    ha = torch.histc(ea.float(), 40, -r, r)
    assert int(res.active_counts.sum()) + res.outside_active == ea.numel()
    assert int((res.active_counts - ha.long()).abs().sum()) <= 2
    assert int(res.inactive_counts.sum()) + res.outside_inactive == ei.numel()
    # the readout error of inactive features is the interference alone, centred near 0
    assert abs(res.inactive_mean) < 5 * res.inactive_std / math.sqrt(res.inactive_n) + 0.05
    assert 0.3 < res.inactive_std / res.predicted_std < 3


def test_same_result_single_threaded():
    torch.manual_seed(3)
    v = torch.randn(1200, 16)
    many = superposition_stats(v, method="tiled", tile=128)
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = superposition_stats(v, method="tiled", tile=128)
    finally:
        torch.set_num_threads(saved)
    assert torch.get_num_threads() == saved
    assert torch.equal(many.partner, one.partner) and torch.equal(many.hist_counts, one.hist_counts)
    for p in (95, 99):
        assert torch.equal(many.percentile[p], one.percentile[p])
    assert many.mean_abs_cos == pytest.approx(one.mean_abs_cos, rel=1e-12)
