"""Issue 3: the exact sparse sampler draws from the same law as the dense reference and sae_lens.

Three small models (a few thousand features) cover the process: hierarchy with random branching,
ME, correlation and child rescaling; a model without correlation (fixed branching, no rescaling);
and one whose magnitude std is large enough that the relu zeroes many firings. For each, the
sparse path, the dense path and sae_lens's own `sample_with_features` are compared on per-feature
firing rates, co-firing rates of the most correlated pairs, the L0 distribution and the magnitude
distribution, and must show zero ME violations and orphan children.

Every tolerance comes from the sample size with a fixed seed: two-sample binomial z-scores with a
Bonferroni bound (at least 5 sigma), a chi-square test on L0 histograms and two-sample KS tests at
a 1e-6 level. Deliberately broken samplers (no ME, an independent copula, no child rescaling)
show that each checker fails when the law is wrong.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch

from synthviz import sampling
from synthviz.config import ModelConfig
from synthviz.hierarchy import Forest
from synthviz.model import build_model
from synthviz.stats.validity import validity_counts
from tests.stat_tools import bonferroni_z, two_sample_rate_z

sl_synth = pytest.importorskip("sae_lens.synthetic")
scipy_stats = pytest.importorskip("scipy.stats")

N_SAMPLES = 32_000
BATCH = 4000  # keeps a dense batch under the model's memory guard
ALPHA = 1e-6  # per checker; with fixed seeds a pass is deterministic, the bound only sets the power

_BASE = {
    "num_features": 2500,
    "hidden_dim": 16,
    "firing_probability": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.4,
                           "min_prob": 0.002},
    "hierarchy": {"total_root_nodes": 30, "branching_factor": [2, 5], "max_depth": 3,
                  "mutually_exclusive_portion": 0.6, "mutually_exclusive_min_depth": 0,
                  "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                  "scale_children_by_parent": True},
    "orthogonalization": None,  # the dictionary plays no part in which features fire
    "correlation": {"rank": 8, "correlation_scale": 0.25, "seed": None},
    "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.5, "std": 0.5,
                              "min_value": None, "max_value": None},
    "mean_firing_magnitudes": {"generator_name": "linear", "start": 5.0, "end": 4.0},
    "bias": 0.5,
    "dtype": "float32",
    "seed": 3,
}


def _config(name: str) -> dict:
    d = copy.deepcopy(_BASE)
    if name == "nocorr":
        d["correlation"] = None
        d["hierarchy"].update(branching_factor=3, mutually_exclusive_portion=1.0,
                              scale_children_by_parent=False)
        d["seed"] = 5
    elif name == "relu":
        d["correlation"] = {"rank": 4, "correlation_scale": 0.35, "seed": None}
        d["hierarchy"].update(branching_factor=[2, 4])
        d["std_firing_magnitudes"] = 2.0
        d["mean_firing_magnitudes"] = {"generator_name": "linear", "start": 2.0, "end": 1.0}
        d["seed"] = 9
    return d


MODELS = ("full", "nocorr", "relu")




pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


# ------------------------------------------------------------------------------ collecting

@dataclass
class Tally:
    """What one sampler produced over N_SAMPLES samples."""
    n: int
    counts: torch.Tensor  # [N] firings per feature
    l0: torch.Tensor  # [n] active features per sample
    mags: torch.Tensor  # active magnitudes, pooled
    totals: torch.Tensor  # [n] sum of magnitudes per sample (iid across samples)
    joint: torch.Tensor  # [K, K] co-firing counts of the tracked features
    me_violations: int
    orphans: int


def _tally(draw, n_features: int, forest: Forest | None, tracked: torch.Tensor, seed: int) -> Tally:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # sae_lens draws from the global generator
    slot = torch.full((n_features,), -1, dtype=torch.long)
    slot[tracked] = torch.arange(tracked.numel())
    counts = torch.zeros(n_features, dtype=torch.long)
    joint = torch.zeros(tracked.numel(), tracked.numel(), dtype=torch.float64)
    l0s, mags, totals = [], [], []
    me_v = orph = done = 0
    while done < N_SAMPLES:
        b = min(BATCH, N_SAMPLES - done)
        rows, cols, vals = draw(b, gen)
        assert bool((vals > 0).all()), "an entry reported active has a non-positive value"
        assert torch.unique(rows * n_features + cols).numel() == rows.numel(), "duplicate entries"
        counts += torch.bincount(cols, minlength=n_features)
        l0s.append(torch.bincount(rows, minlength=b))
        mags.append(vals.double())
        totals.append(torch.zeros(b, dtype=torch.float64).index_add_(0, rows, vals.double()))
        s = slot[cols]
        keep = s >= 0
        x = torch.zeros(b, tracked.numel(), dtype=torch.float64)
        x[rows[keep], s[keep]] = 1.0
        joint += x.T @ x
        a, o = validity_counts(forest, rows, cols, n_features)
        me_v, orph = me_v + a, orph + o
        done += b
    return Tally(N_SAMPLES, counts, torch.cat(l0s), torch.cat(mags), torch.cat(totals), joint,
                 me_v, orph)


def _tracked_pairs(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(tracked features, pairs [P, 2] as slots): the most correlated pairs by |F F^T|.

    Only features whose effective rate is high (the base p before compensation, which the
    compensation preserves, >= 0.02) are eligible, so joint counts are large enough to test;
    without correlation, all pairs of the 20 features with the highest base p.
    """
    cfg = model.cfg
    base_p = cfg.firing_probability.generate(cfg.num_features, seed=cfg.sub_seed(0))
    if model.correlation_factor is None:
        feats = torch.argsort(base_p, descending=True)[:20]
        iu = torch.triu_indices(20, 20, 1).T
        return feats, iu
    feats = (base_p >= 0.02).nonzero().squeeze(1)
    f = model.correlation_factor[feats].double()
    c = (f @ f.T).abs()
    iu = torch.triu_indices(feats.numel(), feats.numel(), 1)
    top = torch.argsort(c[iu[0], iu[1]], descending=True)[:150]
    pairs = iu[:, top].T
    used = torch.unique(pairs)
    remap = torch.full((feats.numel(),), -1, dtype=torch.long)
    remap[used] = torch.arange(used.numel())
    return feats[used], remap[pairs]


# ------------------------------------------------------------------------------ checkers

def _z_bound(m: int) -> float:
    return max(5.0, bonferroni_z(m, alpha=1e-4))


def check_validity(t: Tally) -> None:
    assert t.me_violations == 0, f"{t.me_violations} ME violations"
    assert t.orphans == 0, f"{t.orphans} orphan children"


def check_rates(a: Tally, b: Tally) -> None:
    z = two_sample_rate_z(a.counts, a.n, b.counts, b.n)
    bound = _z_bound(z.numel())
    worst = int(z.abs().argmax())
    assert float(z.abs().max()) < bound, (
        f"firing rates differ: feature {worst} |z| = {float(z[worst].abs()):.2f} >= {bound:.2f}")


def check_cofiring(a: Tally, b: Tally, pairs: torch.Tensor) -> None:
    ka = a.joint[pairs[:, 0], pairs[:, 1]]
    kb = b.joint[pairs[:, 0], pairs[:, 1]]
    z = two_sample_rate_z(ka, a.n, kb, b.n)
    bound = _z_bound(z.numel())
    assert float(z.abs().max()) < bound, (
        f"co-firing rates differ: max |z| = {float(z.abs().max()):.2f} >= {bound:.2f}")


def _chi2_bound(df: int) -> float:
    return float(scipy_stats.chi2.isf(ALPHA, df))


def check_l0(a: Tally, b: Tally) -> None:
    top = int(max(a.l0.max(), b.l0.max())) + 1
    ha = torch.bincount(a.l0, minlength=top).double()
    hb = torch.bincount(b.l0, minlength=top).double()
    # pool sparse bins (both tails) until each has at least 20 samples in total
    edges, acc = [], 0.0
    for i, c in enumerate((ha + hb).tolist()):
        acc += c
        if acc >= 20:
            edges.append(i + 1)
            acc = 0.0
    edges[-1] = top
    bins = torch.bucketize(torch.arange(top), torch.tensor(edges), right=True)
    ga = torch.zeros(len(edges), dtype=torch.float64).index_add_(0, bins, ha)
    gb = torch.zeros(len(edges), dtype=torch.float64).index_add_(0, bins, hb)
    # two-sample chi-square for equal sample sizes
    stat = float((((ga - gb) ** 2) / (ga + gb)).sum())
    bound = _chi2_bound(len(edges) - 1)
    assert stat < bound, f"L0 histograms differ: chi2 = {stat:.1f} >= {bound:.1f} ({len(edges) - 1} dof)"
    se = math.sqrt(float(a.l0.double().var()) / a.n + float(b.l0.double().var()) / b.n)
    diff = float(a.l0.double().mean() - b.l0.double().mean())
    assert abs(diff) < 5 * se, f"mean L0 differs by {diff:.4f} (5 se = {5 * se:.4f})"


def _ks_bound(n: int, m: int) -> float:
    c = math.sqrt(-math.log(ALPHA / 2) / 2)
    return c * math.sqrt((n + m) / (n * m))


def _ks(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(scipy_stats.ks_2samp(x.numpy(), y.numpy()).statistic)


def check_magnitudes(a: Tally, b: Tally) -> None:
    # per-sample totals are iid across samples: the plain KS bound applies
    d = _ks(a.totals, b.totals)
    bound = _ks_bound(a.n, b.n)
    assert d < bound, f"per-sample magnitude totals differ: KS D = {d:.4f} >= {bound:.4f}"
    # pooled magnitudes are dependent within a sample (rescaled children); using the number of
    # samples instead of the number of entries as the KS sample size keeps the bound conservative
    d = _ks(a.mags, b.mags)
    assert d < bound, f"pooled magnitudes differ: KS D = {d:.4f} >= {bound:.4f}"


# ------------------------------------------------------------------------------ fixtures

_CACHE: dict = {}


def _model(name: str):
    key = ("model", name)
    if key not in _CACHE:
        _CACHE[key] = build_model(ModelConfig.from_dict(_config(name)), device="cpu")
    return _CACHE[key]


def _entries(model, method: str):
    def draw(b, gen):
        _, rows, cols, vals = model.sample_entries(b, generator=gen, method=method)
        return rows, cols, vals
    return draw


def _tables_draw(tb):
    return lambda b, gen: sampling.sample_sparse(tb, b, gen)


def _sae_lens_draw(name: str):
    sl = sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(_config(name)))

    def draw(b, gen):
        _, feats = sl.sample_with_features(b)
        rows, cols = feats.nonzero(as_tuple=True)
        return rows, cols, feats[rows, cols]
    return sl, draw


def _tally_of(name: str, method: str) -> Tally:
    key = ("tally", name, method)
    if key not in _CACHE:
        model = _model(name)
        tracked, _ = _tracked_pairs(model)
        seed = {"sparse": 11, "dense": 22, "sae_lens": 33}[method]
        if method == "sae_lens":
            sl, draw = _sae_lens_draw(name)
            # same model: the process parameters must be identical before comparing samples
            gen = sl.activation_generator
            assert torch.equal(gen.firing_probabilities, model.firing_probabilities)
            assert torch.equal(gen.std_firing_magnitudes, model.std_magnitudes)
            assert torch.equal(gen.mean_firing_magnitudes, model.mean_magnitudes)
        else:
            draw = _entries(model, method)
        _CACHE[key] = _tally(draw, model.num_features, model.forest, tracked, seed)
    return _CACHE[key]


def _broken_tally(name: str, **changes) -> Tally:
    """Sparse samples from tables built with some part of the process removed."""
    model = _model(name)
    kw = dict(p=model.firing_probabilities, mean=model.mean_magnitudes, std=model.std_magnitudes,
              factor=model.correlation_factor, diag=model.correlation_diag, forest=model.forest,
              device=torch.device("cpu"))
    kw.update(changes)
    tb = sampling.build_tables(**kw)
    tracked, _ = _tracked_pairs(model)
    return _tally(_tables_draw(tb), model.num_features, model.forest, tracked, seed=44)


# ------------------------------------------------------------------------------ tests

def test_models_exercise_every_part_of_the_process():
    full, nocorr, relu = (_model(n) for n in MODELS)
    for m in (full, nocorr, relu):
        f = m.forest
        assert f.me and f.num_nodes < m.num_features  # ME groups and features outside trees
        assert int((f.depth == 3).sum()) > 0
    assert full.forest.rescale and relu.forest.rescale and not nocorr.forest.rescale
    assert full.correlation_factor is not None and nocorr.correlation_factor is None
    kids = [len(k) for k in full.forest.children.values() if k]
    assert min(kids) < max(kids)  # random branching
    # the relu model's magnitude std is large enough to zero a good share of firings
    zero_share = torch.distributions.Normal(0.0, 1.0).cdf(-relu.mean_magnitudes / relu.std_magnitudes)
    assert float(zero_share.mean()) > 0.15
    # both the dense block and the thinned (rare) part of the top level are used
    p = full.firing_probabilities
    assert float(p.max()) > 0.2 and float(p.min()) < 0.005


@pytest.mark.parametrize("name", MODELS)
def test_sparse_matches_dense(name):
    sparse, dense = _tally_of(name, "sparse"), _tally_of(name, "dense")
    check_validity(sparse)
    check_validity(dense)
    check_rates(sparse, dense)
    _, pairs = _tracked_pairs(_model(name))
    check_cofiring(sparse, dense, pairs)
    check_l0(sparse, dense)
    check_magnitudes(sparse, dense)


@pytest.mark.parametrize("name", MODELS)
def test_both_paths_match_sae_lens(name):
    theirs = _tally_of(name, "sae_lens")
    check_validity(theirs)
    for method in ("sparse", "dense"):
        ours = _tally_of(name, method)
        check_rates(ours, theirs)
        check_l0(ours, theirs)


@pytest.mark.parametrize("name", ["full", "relu"])
def test_correlated_pairs_really_co_fire_differently(name):
    # the co-firing check compares something non-trivial: many tracked pairs depart from
    # independence by more than 5 standard errors
    t = _tally_of(name, "dense")
    _, pairs = _tracked_pairs(_model(name))
    joint = t.joint[pairs[:, 0], pairs[:, 1]] / t.n
    rate = torch.diagonal(t.joint) / t.n
    indep = rate[pairs[:, 0]] * rate[pairs[:, 1]]
    se = torch.sqrt(indep * (1 - indep) / t.n)
    assert int(((joint - indep).abs() > 5 * se).sum()) >= len(pairs) // 10


def test_checkers_flag_a_sampler_without_me():
    model = _model("full")
    f = model.forest
    no_me = Forest(f.num_features, list(f.roots), {k: list(v) for k, v in f.children.items()},
                   me=set(), rescale=set(f.rescale))
    broken = _broken_tally("full", forest=no_me)
    with pytest.raises(AssertionError, match="ME violations"):
        check_validity(broken)
    with pytest.raises(AssertionError, match="firing rates differ"):
        check_rates(broken, _tally_of("full", "dense"))


def test_checkers_flag_an_independent_copula():
    model = _model("full")
    n = model.num_features
    broken = _broken_tally("full", factor=torch.zeros_like(model.correlation_factor),
                           diag=torch.ones(n))
    check_validity(broken)  # the hierarchy is intact, only the copula is wrong
    with pytest.raises(AssertionError, match="co-firing rates differ"):
        check_cofiring(broken, _tally_of("full", "dense"), _tracked_pairs(model)[1])


def test_checkers_flag_missing_child_rescaling():
    model = _model("relu")
    f = model.forest
    no_rescale = Forest(f.num_features, list(f.roots), {k: list(v) for k, v in f.children.items()},
                        me=set(f.me), rescale=set())
    broken = _broken_tally("relu", forest=no_rescale)
    with pytest.raises(AssertionError, match="magnitude"):
        check_magnitudes(broken, _tally_of("relu", "dense"))


@pytest.mark.parametrize("correlated,tiny", [(True, False), (False, False), (True, True)])
def test_top_level_rates_equal_p_including_edge_probabilities(correlated, tiny, monkeypatch):
    # no hierarchy: every feature is top level and fires with marginal probability exactly p.
    # p spans the dense and thinned parts, includes exact 0 and 1, and the thinned count is not a
    # multiple of the block size (padding slots must never fire). `tiny` shrinks the thinning's
    # buffers so that many row chunks and column tiles (a narrower last one) are exercised.
    if tiny:
        monkeypatch.setattr(sampling, "THIN_TILE_COLS", 2 * sampling.THIN_BLOCK)
        monkeypatch.setattr(sampling, "THIN_BLOCK_FLOATS", 16 * 2 * sampling.THIN_BLOCK)
        monkeypatch.setattr(sampling, "THIN_OUTER_FLOATS", 50_000)
    n, r, samples = 1001, 6, 40_000
    gen = torch.Generator().manual_seed(5)
    p = torch.cat([torch.tensor([0.0, 1.0, 0.5, 0.0]), torch.rand(n - 4, generator=gen) ** 3 * 0.2])
    factor = diag = None
    if correlated:
        factor = torch.randn(n, r, generator=gen) * 0.3
        factor *= torch.sqrt(0.9 / (factor**2).sum(1, keepdim=True)).clamp(max=1.0)
        diag = 1 - (factor**2).sum(1)
        assert float(diag.min()) > 0.01
    tb = sampling.build_tables(p, torch.full((n,), 2.0), torch.full((n,), 0.1), factor, diag,
                               None, torch.device("cpu"))
    assert 0 < tb.thin_n < tb.thin_feats.numel() and tb.dense_top.numel() > 0
    if tiny:
        assert (tb.thin_feats.numel() // sampling.THIN_BLOCK) % 2 == 1  # the last tile is narrower
    counts = torch.zeros(n, dtype=torch.long)
    g = torch.Generator().manual_seed(6)
    for _ in range(samples // 4000):
        rows, cols = sampling.sample_top(tb, 4000, g)
        assert torch.unique(rows * n + cols).numel() == rows.numel(), "duplicate entries"
        counts += torch.bincount(cols, minlength=n)
    assert counts[0] == 0 and counts[3] == 0 and counts[1] == samples
    # exact two-sided binomial p-values (many features expect well under one firing)
    k, q = counts.numpy(), p.double().numpy()
    lower = torch.from_numpy(scipy_stats.binom.cdf(k, samples, q))
    upper = torch.from_numpy(scipy_stats.binom.sf(k - 1, samples, q))
    pval = (2 * torch.minimum(lower, upper)).clamp(max=1.0)
    bound = 2 * scipy_stats.norm.sf(_z_bound(n))
    worst = int(pval.argmin())
    assert float(pval[worst]) > bound, (
        f"feature {worst}: {int(counts[worst])} firings, p = {float(p[worst]):.3g}, "
        f"p-value {float(pval[worst]):.2g} <= {bound:.2g}")
