"""Issue 12.2: synthviz loads and samples what sae_lens loads and samples, alike.

- Configs sae_lens builds (negative or null bias, more roots than features, zero or negative
  orthogonalization steps, ...) build the same tensors as sae_lens with the same seed.
- Hand-written hierarchy.json files with organizational nodes (no feature_index), fields
  sae_lens ignores and extra tensors load, and sample like sae_lens: per-feature rates, L0 and
  co-firing of parent/child and sibling pairs, within Bonferroni z bounds from the sample size.
- The statistics, the tree table and the L0 solver handle organizational nodes.
- What sae_lens cannot sample either is refused with one line.
"""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

import synthviz
from synthviz.config import ModelConfig
from synthviz.errors import SynthvizError
from synthviz.model import build_model
from tests.fidelity.parity import (active_sae_lens, active_synthviz, compare, pairs_of,
                                   sae_lens_folder)

logging.getLogger("sae_lens").setLevel(logging.ERROR)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

BASE = {
    "num_features": 60, "hidden_dim": 8,
    "firing_probability": {"generator_name": "zipfian", "exponent": 0.7, "max_prob": 0.4,
                           "min_prob": 0.01},
    "hierarchy": {"total_root_nodes": 5, "branching_factor": [2, 3], "max_depth": 2,
                  "mutually_exclusive_portion": 0.5, "mutually_exclusive_min_depth": 0,
                  "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                  "scale_children_by_parent": False},
    "orthogonalization": {"num_steps": 0, "lr": 0.01, "chunk_size": 16},
    "correlation": None, "std_firing_magnitudes": 0.3, "mean_firing_magnitudes": 1.0,
    "bias": -0.7, "dtype": "float32", "seed": 3,
}
H = BASE["hierarchy"]

CONFIG_CASES = {
    "negative-bias-zero-steps": {},
    "negative-steps": {"orthogonalization": {"num_steps": -3, "lr": 0.01, "chunk_size": 16}},
    "zero-lr": {"orthogonalization": {"num_steps": 2, "lr": 0.0, "chunk_size": 16}},
    "negative-chunk": {"orthogonalization": {"num_steps": 2, "lr": 0.1, "chunk_size": -1}},
    "roots-beyond-features": {"hierarchy": dict(H, total_root_nodes=100)},
    "null-bias": {"bias": None},
    "zero-bias": {"bias": 0.0},
    "int-bias": {"bias": 2},
    "constant-p-clamped": {"firing_probability": {"generator_name": "constant",
                                                  "probability": 1.5}},
    "flags-as-0-1": {"hierarchy": dict(H, compensate_probabilities=1, scale_children_by_parent=1)},
    "correlated-own-seed": {"correlation": {"rank": 3, "correlation_scale": 0.3, "seed": 99}},
    "me-depth-range": {"hierarchy": dict(H, max_depth=4, branching_factor=3,
                                         mutually_exclusive_min_depth=1,
                                         mutually_exclusive_max_depth=2)},
    "all-magnitude-fields": {
        "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.2, "std": 0.5,
                                  "min_value": 0.1, "max_value": 0.6},
        "mean_firing_magnitudes": {"generator_name": "exponential", "start": 1.0, "end": 3.0}},
    "default-generator-fields": {"firing_probability": {"generator_name": "zipfian"}},
    "null-sections": {"hierarchy": None, "orthogonalization": None, "correlation": None},
}


def sae_lens_model(d):
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig
    return SyntheticModel(SyntheticModelConfig.from_dict(copy.deepcopy(d)))


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_configs_sae_lens_builds_build_the_same_tensors(case):
    d = copy.deepcopy(BASE)
    d.update(CONFIG_CASES[case])
    ours = build_model(ModelConfig.from_dict(copy.deepcopy(d)), device="cpu")
    theirs = sae_lens_model(d)
    ag = theirs.activation_generator
    pairs = {"feature_vectors": (ours.feature_vectors, theirs.feature_dict.feature_vectors.data),
             "bias": (ours.bias, theirs.feature_dict.bias.data),
             "firing_probabilities": (ours.firing_probabilities, ag.firing_probabilities),
             "mean": (ours.mean_magnitudes, ag.mean_firing_magnitudes),
             "std": (ours.std_magnitudes, ag.std_firing_magnitudes)}
    if theirs.correlation_matrix is not None:
        pairs["factor"] = (ours.correlation_factor, theirs.correlation_matrix.correlation_factor)
    for name, (a, b) in pairs.items():
        assert torch.equal(a, b), name
    theirs_h = theirs.hierarchy.to_dict() if theirs.hierarchy is not None else None
    assert (ours.forest.to_dict() if ours.forest is not None else None) == theirs_h


def node(f, *kids, me=False, rescale=False, **extra):
    return {"feature_index": f, "mutually_exclusive_children": me,
            "scale_children_by_parent": rescale, "children": list(kids), **extra}


def org(*kids, me=False, rescale=False, **extra):
    return {"mutually_exclusive_children": me, "scale_children_by_parent": rescale,
            "children": list(kids), **extra}


# hand-written hierarchies, each with organizational nodes in a different place
HIERARCHIES = {
    # an organizational root making three feature roots mutually exclusive, an organizational
    # ME node under a feature (its own group, rescaled), a plain subtree with unknown fields
    "me-roots-and-nested": {"roots": [
        org(node(0, node(3), node(4), me=True),
            node(1, node(5), org(node(6), node(7), node(8), me=True, rescale=True, id="o2")),
            node(2), me=True, id="animals"),
        node(9, node(10), org(node(11, node(12)), id="x"), rescale=True, note="ignored"),
    ]},
    # an ME feature node whose children include an organizational node (left out of the group)
    # and an organizational node with one feature child (no group)
    "mixed-children": {"roots": [
        node(0, node(1), node(2), org(node(3, node(4), node(5), me=True)), me=True),
        org(node(6, node(7)), me=False),
        org(org(node(8), node(9), me=True), node(10), me=True),  # nested: only 10 counts
    ]},
    # organizational chain: grandchildren gated by the nearest feature above
    "org-chain": {"roots": [
        node(0, org(org(node(1), node(2), node(3), me=True)), node(4), rescale=True),
        org(node(5), node(6, node(7), node(8), me=True), me=True),
    ]},
}

SMALL = dict(BASE, num_features=14, hidden_dim=4, bias=0.5, orthogonalization=None,
             firing_probability={"generator_name": "linear", "max_prob": 0.5, "min_prob": 0.1},
             hierarchy=dict(H, total_root_nodes=1, branching_factor=2, max_depth=1),
             # a wide std, so scaling a child by its parent changes its mean activation a lot
             std_firing_magnitudes=1.5, mean_firing_magnitudes={"generator_name": "linear",
                                                                 "start": 2.0, "end": 1.0})
CORR = {"rank": 2, "correlation_scale": 0.4, "seed": None}
SAMPLES = 30_000


@pytest.fixture(params=[(h, c) for h in HIERARCHIES for c in (False, True)],
                ids=[f"{h}-{'corr' if c else 'indep'}" for h in HIERARCHIES for c in (False, True)])
def pair(request, tmp_path):
    """(ours, theirs, folder): one hand-written folder loaded by both."""
    from sae_lens.synthetic import SyntheticModel

    name, corr = request.param
    cfg = dict(SMALL, correlation=CORR if corr else None)
    folder = sae_lens_folder(tmp_path / "m", cfg, HIERARCHIES[name],
                             extra={"unused_extra": torch.arange(3.0)})
    return synthviz.load(folder, device="cpu"), SyntheticModel.load_from_disk(folder), folder


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_organizational_nodes_sample_like_sae_lens(pair, method):
    ours, theirs, _ = pair
    problems = compare(active_synthviz(ours, SAMPLES, seed=5, method=method),
                       active_sae_lens(theirs, SAMPLES, seed=6), pairs_of(ours.forest))
    assert not problems, problems[:5]


def test_compensation_with_organizational_nodes_is_sae_lens_bit_for_bit(pair):
    from sae_lens.synthetic.hierarchy import Hierarchy

    ours, _, folder = pair
    h = json.loads((folder / "hierarchy.json").read_text())
    base = torch.linspace(0.5, 0.1, 14)
    assert torch.equal(ours.forest.probability_correction(base),
                       Hierarchy.from_dict(h).compute_probability_correction_factors(base))


def test_the_comparison_catches_a_sampler_that_ignores_organizational_groups(pair):
    # the same model with the organizational ME groups dropped must fail the comparison
    ours, theirs, _ = pair
    f = ours.forest
    if not any(p < 0 or p not in f.me for p, _ in f.me_groups()):
        pytest.skip("no organizational group in this hierarchy")
    from synthviz.hierarchy import Forest
    plain = Forest(f.num_features, list(f.roots), {k: list(v) for k, v in f.children.items()},
                   me=set(), rescale=set(f.rescale))
    broken = ours.replace(forest=plain)
    problems = compare(active_synthviz(broken, SAMPLES, seed=5),
                       active_sae_lens(theirs, SAMPLES, seed=6), pairs_of(f))
    assert problems


def test_the_comparison_catches_a_sampler_that_ignores_scaling(pair):
    # the same model with every scale_children_by_parent cleared: only magnitudes change
    from synthviz.hierarchy import Forest

    ours, theirs, folder = pair
    text = (folder / "hierarchy.json").read_text()
    if '"scale_children_by_parent": true' not in text:
        pytest.skip("nothing scaled in this hierarchy")
    h = json.loads(text.replace('"scale_children_by_parent": true',
                                '"scale_children_by_parent": false'))
    broken = ours.replace(forest=Forest.from_dict(h, ours.num_features))
    problems = compare(active_synthviz(broken, SAMPLES, seed=5),
                       active_sae_lens(theirs, SAMPLES, seed=6), pairs_of(ours.forest))
    assert problems and all(p.startswith("mean activation") for p in problems), problems


def test_organizational_forest_round_trips_and_truncates(pair, tmp_path):
    ours, _, folder = pair
    assert ours.forest.org is not None
    written = json.loads((folder / "hierarchy.json").read_text())
    again = synthviz.load(ours.save(tmp_path / "again"), device="cpu")
    assert again.forest == ours.forest
    # what synthviz writes, sae_lens reads back to the same nodes (ids kept as feature_id)
    from sae_lens.synthetic.hierarchy import Hierarchy
    assert Hierarchy.from_dict(again.forest.to_dict()) == Hierarchy.from_dict(
        ours.forest.to_dict())
    assert len(again.forest.to_dict()["roots"]) == len(written["roots"])
    cut = ours.forest.truncate(7)
    assert all(f < 7 for _, kids in cut.me_groups() for f in kids)
    assert all(len(kids) >= 2 for _, kids in cut.me_groups())
    Hierarchy.from_dict(cut.to_dict())  # still valid for sae_lens (ME needs 2 children)


def test_statistics_see_organizational_groups(pair):
    from synthviz.stats.analytic import expected_rates
    from synthviz.stats.hierarchy_stats import forest_summary, tree_table
    from synthviz.stats.validity import validity_counts

    ours, theirs, _ = pair
    _, rows, cols, vals = ours.sample_entries(SAMPLES, seed=1)
    assert validity_counts(ours.forest, rows, cols, ours.num_features) == (0, 0)
    # a violation is counted: the same entries with every group member of sample 0 switched on
    f = ours.forest
    members = torch.tensor([k for _, kids in f.me_groups() for k in kids])
    fr = torch.cat([rows, torch.zeros_like(members)])
    fc = torch.cat([cols, members])
    key = torch.unique(fr * 100 + fc)
    assert validity_counts(f, key // 100, key % 100, ours.num_features)[0] > 0
    s = forest_summary(f)
    assert s.me_parents == len(f.me_groups())
    assert s.top_me_groups == sum(1 for p, _ in f.me_groups() if p < 0)
    from synthviz.plots.hierarchy import create_tree_plot
    org_rows = 0
    for r in f.roots:
        t = tree_table(f, r)
        feats = [x for x in t["feature"] if x >= 0]
        assert sorted(feats) == sorted(_subtree(f, r))
        assert all(p in t["feature"] for p in t["parent"][1:])
        org_rows += sum(x < -1 for x in t["feature"])  # organizational nodes: ids -2, -3, ...
        plot = create_tree_plot(t)
        assert len(plot.Graph.I.nodes) == len(t["feature"])
    assert org_rows > 0  # every hierarchy here has an organizational node below a feature
    # expected rates are exact without the copula: they match sae_lens's measured rates
    if ours.correlation_factor is None:
        measured = (active_sae_lens(theirs, SAMPLES, seed=3) > 0).double().mean(0)
        exp = expected_rates(ours)
        se = (exp * (1 - exp) / SAMPLES).sqrt().clamp(min=1e-4)
        assert ((measured - exp).abs() / se).max() < 4.5, (measured, exp)


def _subtree(f, r):
    out, frontier = [], [r]
    while frontier:
        out += frontier
        frontier = [c for x in frontier for c in f.children.get(x, [])]
    return out


def test_l0_solver_handles_organizational_nodes(pair):
    from synthviz.l0_target import estimate_l0, measure_l0

    ours, _, _ = pair
    base = torch.linspace(0.5, 0.1, 14, dtype=torch.float64)
    exact = base * ours.forest.probability_correction(base)
    assert torch.allclose(ours.forest.index.compensate(base), exact, rtol=1e-12)
    if ours.correlation_factor is None:  # the estimate is exact under independence
        est, _ = estimate_l0(ours)
        got = measure_l0(ours, SAMPLES, seed=2)
        assert abs(got["l0"] - est) < 4.5 * got["l0_se"], (got, est)


def test_saved_organizational_models_sample_alike_in_sae_lens(pair, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    ours, _, _ = pair
    theirs = SyntheticModel.load_from_disk(ours.save(tmp_path / "saved"))
    problems = compare(active_synthviz(ours, SAMPLES, seed=8),
                       active_sae_lens(theirs, SAMPLES, seed=9), pairs_of(ours.forest))
    assert not problems, problems[:5]


def test_l0_targets_are_solved_on_organizational_forests(tmp_path):
    from sae_lens.synthetic import SyntheticModel
    from synthviz.l0_target import solve_l0

    folder = sae_lens_folder(tmp_path / "m", dict(SMALL), HIERARCHIES["me-roots-and-nested"])
    model = synthviz.load(folder, device="cpu")
    solved = solve_l0(model, 2.0, None, first_k=4, use_cache=False, samples=20_000)
    got = solved.provenance.l0_target
    assert abs(got["achieved_l0"] - 2.0) < 0.01 * 2.0 + 4.5 * got["achieved_l0_se"], got
    # and sae_lens samples the solved model the same: its config regenerates the probabilities
    theirs = SyntheticModel.load_from_disk(solved.save(tmp_path / "solved"))
    problems = compare(active_synthviz(solved, SAMPLES, seed=1),
                       active_sae_lens(theirs, SAMPLES, seed=2), pairs_of(solved.forest))
    assert not problems, problems[:5]


def test_missing_hierarchy_json_is_generated_from_the_config(tmp_path):
    from sae_lens.synthetic import SyntheticModel

    cfg = copy.deepcopy(BASE)
    folder = sae_lens_folder(tmp_path / "m", cfg, None)
    cfg_p = sae_lens_model(cfg).activation_generator.firing_probabilities
    from safetensors.torch import load_file, save_file
    t = load_file(str(folder / "synthetic_model.safetensors"))
    t["firing_probabilities"] = cfg_p  # what sae_lens stores: the compensated probabilities
    save_file(t, str(folder / "synthetic_model.safetensors"))
    ours = synthviz.load(folder, device="cpu")
    theirs = SyntheticModel.load_from_disk(folder)
    assert ours.forest is not None and ours.forest.to_dict() == theirs.hierarchy.to_dict()
    problems = compare(active_synthviz(ours, SAMPLES, seed=1), active_sae_lens(theirs, SAMPLES, 2),
                       pairs_of(ours.forest))
    assert not problems, problems[:5]


# what sae_lens cannot sample either: one line naming the problem
REFUSED = {
    "constant-p-above-1": ({"firing_probability": {"generator_name": "constant",
                                                   "probability": 1.5}, "hierarchy": None},
                           "outside [0, 1]"),
    "negative-lr": ({"orthogonalization": {"num_steps": 1, "lr": -0.1, "chunk_size": 8}}, "lr"),
    "zero-chunk": ({"orthogonalization": {"num_steps": 1, "lr": 0.1, "chunk_size": 0}},
                   "chunk_size"),
    "no-roots": ({"hierarchy": dict(H, total_root_nodes=0)}, "total_root_nodes"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_what_sae_lens_cannot_sample_is_refused_in_one_line(case):
    change, words = REFUSED[case]
    d = copy.deepcopy(BASE)
    d.update(change)
    with pytest.raises(SynthvizError) as err:
        build_model(ModelConfig.from_dict(d), device="cpu")
    assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Exception):  # sae_lens fails too, at build or at sampling
        sae_lens_model(d).activation_generator.sample(10)


BAD_HIERARCHIES = {
    "me-one-child": ({"roots": [org(node(0), me=True)]}, "at least 2"),
    "index-in-two-trees": ({"roots": [node(0, node(1)), node(2, node(1))]}, "more than once"),
    "index-out-of-range": ({"roots": [node(0, node(99))]}, "out of range"),
}


@pytest.mark.parametrize("case", BAD_HIERARCHIES)
def test_hierarchies_sae_lens_cannot_use_are_refused(case, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    h, words = BAD_HIERARCHIES[case]
    folder = sae_lens_folder(tmp_path / "m", dict(SMALL), {"roots": []})
    (folder / "hierarchy.json").write_text(json.dumps(h))
    with pytest.raises(SynthvizError) as err:
        synthviz.load(folder, device="cpu")
    assert words in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(Exception):
        SyntheticModel.load_from_disk(folder).activation_generator.sample(10)


@pytest.mark.parametrize("method", ["sparse", "dense"])
def test_features_that_never_fire_sample_nothing(method):
    # a constant probability of 0: sae_lens samples all-zero activations; so must synthviz
    d = dict(copy.deepcopy(BASE), hierarchy=None,
             firing_probability={"generator_name": "constant", "probability": 0.0})
    model = build_model(ModelConfig.from_dict(d), device="cpu")
    _, rows, _, _ = model.sample_entries(100, seed=0, method=method)
    assert rows.numel() == 0


def test_a_negative_std_is_sampled_and_expected_like_its_absolute_value():
    # sae_lens adds std * N(0, 1): a negative std gives the same law as |std|
    from synthviz.l0_target import estimate_l0
    from synthviz.stats.analytic import expected_rates

    d = dict(copy.deepcopy(BASE), hierarchy=None, mean_firing_magnitudes=0.3)
    neg = build_model(ModelConfig.from_dict(dict(d, std_firing_magnitudes=-1.0)), device="cpu")
    pos = build_model(ModelConfig.from_dict(dict(d, std_firing_magnitudes=1.0)), device="cpu")
    assert torch.equal(expected_rates(neg), expected_rates(pos))
    assert estimate_l0(neg) == estimate_l0(pos)
    problems = compare(active_synthviz(neg, SAMPLES, seed=1),
                       active_sae_lens(sae_lens_model(dict(d, std_firing_magnitudes=-1.0)),
                                       SAMPLES, seed=2), [])
    assert not problems, problems[:5]


def test_variations_of_a_model_with_more_roots_than_features():
    # sae_lens builds such a config (roots stop when features run out); a variation that does
    # not ask for more roots keeps working on it
    from synthviz.variations import Variation

    d = dict(copy.deepcopy(BASE), hierarchy=dict(H, total_root_nodes=100))
    model = build_model(ModelConfig.from_dict(d), device="cpu")
    varied = Variation(me_portion=1.0).apply(model)
    theirs = sae_lens_model(dict(d, hierarchy=dict(H, total_root_nodes=100,
                                                   mutually_exclusive_portion=1.0)))
    assert varied.forest.to_dict() == theirs.hierarchy.to_dict()


def test_a_lone_correlation_diag_is_ignored_as_sae_lens_does(tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = sae_lens_folder(tmp_path / "m", dict(SMALL), HIERARCHIES["org-chain"],
                             extra={"correlation_diag": torch.full((14,), 0.5)})
    ours = synthviz.load(folder, device="cpu")
    theirs = SyntheticModel.load_from_disk(folder)
    assert ours.correlation_factor is None and theirs.correlation_matrix is None
    problems = compare(active_synthviz(ours, SAMPLES, seed=1),
                       active_sae_lens(theirs, SAMPLES, seed=2), pairs_of(ours.forest))
    assert not problems, problems[:5]
