"""Issue 4 on the small model: each family equals what sae_lens builds for the same config,
cheap changes share the source's tensors, and a composed variation equals its parts in sequence.
"""

from __future__ import annotations

import functools

import pytest
import torch

from synthviz.config import ModelConfig
from synthviz.errors import ConfigError
from synthviz.cli import variation_from_args
from synthviz.variations import Variation
from tests.variations.conftest import small_cfg_dict

sl_synth = pytest.importorskip("sae_lens.synthetic")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Dictionary, seed and L0 caches go to a fresh folder, so builds really run here."""
    monkeypatch.setenv("SYNTHVIZ_CACHE", str(tmp_path / "cache"))


def _sae_lens(**changes):
    return sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(small_cfg_dict(**changes)))


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _assert_same_model(a, b):
    assert a.cfg.to_dict() == b.cfg.to_dict()
    for name in ("feature_vectors", "bias", "firing_probabilities", "mean_magnitudes",
                 "std_magnitudes", "correlation_factor", "correlation_diag"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name
    assert (a.forest is None) == (b.forest is None)
    if a.forest is not None:
        assert a.forest == b.forest and a.forest.to_dict() == b.forest.to_dict()


# ------------------------------------------------------------------------------ the value

@pytest.mark.parametrize("kwargs, words", [
    (dict(rel_p=0.5, target_l0=30), "rel_p and target_l0"),
    (dict(std=-1.0), "std must be non-negative"),
    (dict(rel_p=0.0), "rel_p must be positive"),
    (dict(hidden_dim=0), "hidden_dim must be at least 1"),
    (dict(branching="4-x"), "branching must look like"),
    (dict(branching=(8, 4)), "min 8 > max 4"),
    (dict(branching=1), "branching must be at least 2"),
    (dict(me_portion=1.5), "me_portion must be in [0, 1]"),
    (dict(target_l0_first_k=20), "needs target_l0"),
    (dict(target_l0=20, target_l0_first_k=30), "cannot exceed the target L0"),
    (dict(roots=0, depth=2), "roots=0 removes the hierarchy"),
    (dict(std=float("nan")), "finite"),
])
def test_invalid_variations_name_the_problem(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        Variation(**kwargs)


def test_variation_is_a_hashable_round_tripping_value():
    v = Variation(hidden_dim=512, branching="4-32", rel_p=0.5, std=0.0, rescale=False)
    assert v.branching == (4, 32)
    again = Variation.from_dict(v.to_dict())
    assert again == v and hash(again) == hash(v) and len({v, again}) == 1
    assert v.to_dict() == {"hidden_dim": 512, "branching": [4, 32], "rescale": False, "std": 0.0,
                           "rel_p": 0.5}
    assert Variation().is_identity() and Variation(first_k=100).is_identity()
    assert not v.is_identity()
    assert [p.to_dict() for p in v.parts()] == [
        {"hidden_dim": 512}, {"branching": [4, 32], "rescale": False}, {"std": 0.0},
        {"rel_p": 0.5}]
    words = v.describe()
    for w in ("hidden dim 512", "branching 4-32", "child rescaling off", "std 0", "x 0.5"):
        assert w in words
    with pytest.raises(ConfigError, match="unknown field"):
        Variation.from_dict({"hidden": 3})


def test_cli_flags_make_the_variation():
    from synthviz.cli import build_parser

    p = build_parser()
    args = p.parse_args(["export", "base", "--out", "x", "--hidden-dim", "512", "--branching",
                         "4-32", "--roots", "16", "--no-rescale", "--std", "0", "--target-l0",
                         "30", "--target-l0-first-k", "24", "--first-k", "2048"])
    v = variation_from_args(args)
    assert v == Variation(hidden_dim=512, roots=16, branching=(4, 32), rescale=False, std=0.0,
                          target_l0=30.0, target_l0_first_k=24.0, first_k=2048)
    assert variation_from_args(p.parse_args(["export", "base", "--out", "x"])) is None
    assert variation_from_args(p.parse_args(["stats", "base", "--no-compensate"])) == \
        Variation(compensate=False)


# ------------------------------------------------------------------------------ the families

def test_hidden_dim_equals_sae_lens_and_is_cached(small_model, monkeypatch):
    ours = Variation(hidden_dim=96).apply(small_model)
    theirs = _sae_lens(hidden_dim=96)
    assert ours.feature_vectors.shape == (2048, 96) and ours.cfg.hidden_dim == 96
    assert torch.equal(ours.bias, theirs.feature_dict.bias.data)
    assert abs(float(ours.bias.norm()) - 0.5) < 1e-6
    torch.testing.assert_close(ours.feature_vectors, theirs.feature_dict.feature_vectors.data,
                               atol=2e-6, rtol=0)
    for name in ("firing_probabilities", "mean_magnitudes", "std_magnitudes", "correlation_factor",
                 "forest"):
        assert getattr(ours, name) is getattr(small_model, name), name
    # a second application reads the disk cache: orthogonalization must not run again
    import synthviz.orthogonalize

    def boom(*a, **k):
        raise AssertionError("orthogonalized again instead of using the cache")
    monkeypatch.setattr(synthviz.orthogonalize, "orthogonalize", boom)
    again = Variation(hidden_dim=96).apply(small_model)
    assert torch.equal(again.feature_vectors, ours.feature_vectors)


def test_seed_equals_sae_lens(small_model):
    ours = Variation(seed=11).apply(small_model)
    theirs = _sae_lens(seed=11)
    gen = theirs.activation_generator
    assert ours.cfg.seed == 11
    assert ours.forest.to_dict() == theirs.hierarchy.to_dict()
    assert torch.equal(ours.firing_probabilities, gen.firing_probabilities)
    assert torch.equal(ours.std_magnitudes, gen.std_firing_magnitudes)
    assert torch.equal(ours.correlation_factor, theirs.correlation_matrix.correlation_factor)
    torch.testing.assert_close(ours.feature_vectors, theirs.feature_dict.feature_vectors.data,
                               atol=2e-6, rtol=0)


def test_hierarchy_equals_sae_lens_and_keeps_vectors(small_model):
    v = Variation(roots=10, branching=(2, 6), depth=2, me_portion=0.5, me_min_depth=1,
                  rescale=False)
    ours = v.apply(small_model)
    hier = dict(small_cfg_dict()["hierarchy"], total_root_nodes=10, branching_factor=[2, 6],
                max_depth=2, mutually_exclusive_portion=0.5, mutually_exclusive_min_depth=1,
                scale_children_by_parent=False)
    theirs = _sae_lens(hierarchy=hier, orthogonalization=None)
    assert ours.forest.to_dict() == theirs.hierarchy.to_dict()
    assert ours.cfg.hierarchy.to_dict() == hier
    assert torch.equal(ours.firing_probabilities, theirs.activation_generator.firing_probabilities)
    for name in ("feature_vectors", "bias", "mean_magnitudes", "std_magnitudes",
                 "correlation_factor"):
        assert getattr(ours, name) is getattr(small_model, name), name
    # no hierarchy at all
    flat = Variation(roots=0).apply(small_model)
    assert flat.forest is None and flat.cfg.hierarchy is None
    assert torch.equal(flat.firing_probabilities,
                       small_model.cfg.firing_probability.generate(2048, seed=7))


def test_rel_p_equals_sae_lens_and_reports_clamping(small_model):
    ours = Variation(rel_p=0.5).apply(small_model)
    fp = dict(small_cfg_dict()["firing_probability"], max_prob=0.2, min_prob=0.0005)
    theirs = _sae_lens(firing_probability=fp, orthogonalization=None)
    torch.testing.assert_close(ours.firing_probabilities,
                               theirs.activation_generator.firing_probabilities, atol=0, rtol=1e-6)
    # compensation ratios are unchanged by k, so the same children clamp as in the source
    assert ours.provenance.rel_p_clamped == small_model.provenance.probabilities_clamped > 0
    assert ours.feature_vectors is small_model.feature_vectors
    assert ours.forest is small_model.forest
    # k = 3 pushes max_prob past 1: clamped, counted, and the config note says so
    big = Variation(rel_p=3.0).apply(small_model)
    assert float(big.firing_probabilities.max()) == 1.0
    base_p = small_model.cfg.firing_probability.generate(2048, seed=7)
    scaled = (base_p * 3).clamp(max=1)
    corrected = scaled * small_model.forest.probability_correction(scaled)
    expected = int((base_p * 3 > 1).sum()) + int(((corrected >= 1) & (scaled < 1)).sum())
    assert big.provenance.rel_p_clamped == expected and int((base_p * 3 > 1).sum()) > 0
    assert big.provenance.config_firing_probability_approximate


def test_std_is_constant_and_shares_the_rest(small_model):
    ours = Variation(std=0.3).apply(small_model)
    assert ours.cfg.std_firing_magnitudes == 0.3
    assert torch.equal(ours.std_magnitudes, torch.full((2048,), 0.3))
    for name in ("feature_vectors", "firing_probabilities", "mean_magnitudes", "forest"):
        assert getattr(ours, name) is getattr(small_model, name), name


@pytest.mark.parametrize("n", [1024, 1000])
def test_truncation_keeps_a_prefix_of_everything(small_model, n, tmp_path):
    ours = Variation(num_features=n).apply(small_model)
    assert ours.num_features == n and ours.cfg.num_features == n
    for name in ("feature_vectors", "correlation_factor", "correlation_diag"):
        t, src = getattr(ours, name), getattr(small_model, name)
        assert _same_storage(t, src), f"{name} should be a view"
        assert torch.equal(t, src[:n]), name
    # probabilities: what the truncated config regenerates for the pruned forest (as sae_lens
    # does), which is the full model's prefix to rounding except where the cut splits a group
    from synthviz.model import regenerated_probabilities
    assert torch.equal(ours.firing_probabilities,
                       regenerated_probabilities(ours.cfg, ours.forest))
    if ours.provenance.truncation_probability_max_diff is None:
        assert _same_storage(ours.firing_probabilities, small_model.firing_probabilities)
    f, g = ours.forest, small_model.forest
    assert all(c < n for kids in f.children.values() for c in kids)
    assert f.roots == [r for r in g.roots if r < n]
    for q, kids in g.children.items():
        if q < n:
            kept = [c for c in kids if c < n]
            assert f.children.get(q, []) == kept
            assert (q in f.me) == (q in g.me and len(kept) >= 2)
    assert any(q in g.me and len([c for c in g.children[q] if c < n]) == 1
               for q in g.children if q < n) or n == 1024  # the rule is exercised at n = 1000
    # magnitudes: exactly the slice when the config regenerates it, else what it regenerates
    torch.testing.assert_close(ours.mean_magnitudes, small_model.mean_magnitudes[:n],
                               atol=1e-6, rtol=0)
    if n % 16 == 0:
        assert _same_storage(ours.std_magnitudes, small_model.std_magnitudes)
    else:
        assert torch.equal(ours.std_magnitudes[:n - 16], small_model.std_magnitudes[:n - 16])
        assert ours.provenance.truncation_std_max_diff > 0
    # whatever the case, sae_lens regenerates exactly these magnitudes from the exported config
    from synthviz.export import export_model

    out = export_model(ours, tmp_path / "t", samples=0)
    sl = sl_synth.SyntheticModel.load_from_disk(out)
    assert torch.equal(sl.activation_generator.mean_firing_magnitudes, ours.mean_magnitudes)
    assert torch.equal(sl.activation_generator.std_firing_magnitudes, ours.std_magnitudes)
    assert torch.equal(sl.activation_generator.firing_probabilities, ours.firing_probabilities)
    assert sl.hierarchy.to_dict() == ours.forest.to_dict()
    with pytest.raises(ConfigError, match="more than the model's 2048 features"):
        Variation(num_features=4096).apply(small_model)


def test_identity_parts_leave_the_source_untouched(small_model):
    before = small_model.provenance
    same = Variation(hidden_dim=64, num_features=2048).apply(small_model)
    assert small_model.provenance is before
    assert same is not small_model and same.feature_vectors is small_model.feature_vectors
    assert same.provenance.variation == {"hidden_dim": 64, "num_features": 2048}


# ------------------------------------------------------------------------------ composition

@pytest.mark.parametrize("v", [
    Variation(hidden_dim=96, num_features=1500, roots=12, branching=3, depth=2, me_portion=1.0,
              std=0.2, rel_p=0.7),
    Variation(seed=5, num_features=1000, rescale=False, target_l0=6.0,
              target_l0_first_k=4.0, first_k=256),
], ids=["dim-trunc-hier-std-relp", "seed-trunc-rescale-target"])
def test_composed_variation_equals_its_parts_in_sequence(small_model, v):
    composed = v.apply(small_model)
    parts = v.parts()
    assert len(parts) >= 4
    sequential = functools.reduce(lambda m, part: part.apply(m), parts, small_model)
    _assert_same_model(composed, sequential)
    assert composed.provenance.variation == sequential.provenance.variation == v.to_dict()


def test_std_and_rel_p_commute(small_model):
    a = Variation(std=0.0).apply(Variation(rel_p=0.5).apply(small_model))
    b = Variation(rel_p=0.5).apply(Variation(std=0.0).apply(small_model))
    _assert_same_model(a, b)
    _assert_same_model(a, Variation(rel_p=0.5, std=0.0).apply(small_model))


def test_model_config_still_builds_the_variation_for_generated_families(small_model):
    """hidden_dim, seed, hierarchy, std and rel_p give configs sae_lens rebuilds identically."""
    v = Variation(roots=8, branching=4, depth=2, std=0.25, rel_p=0.8)
    ours = v.apply(small_model)
    d = ours.cfg.to_dict()
    d["orthogonalization"] = None  # only the dictionary would cost time; it is not changed here
    theirs = sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(d))
    gen = theirs.activation_generator
    assert ours.forest.to_dict() == theirs.hierarchy.to_dict()
    assert torch.equal(ours.firing_probabilities, gen.firing_probabilities)
    assert torch.equal(ours.std_magnitudes, gen.std_firing_magnitudes)
    assert ModelConfig.from_dict(ours.cfg.to_dict()).to_dict() == ours.cfg.to_dict()
