"""Issue 12.2, hierarchy.json edge cases, each decided by what sae_lens does with the same file:

- A feature_index listed twice. In two top-level trees sae_lens refuses it at load. Within one
  tree it loads, but how it samples depends on which of its samplers runs (dense `sample()` or
  `use_sparse_tensors`), so synthviz refuses it, saying why, in one line naming the feature.
- Flags written as strings, lists or objects. sae_lens reads `mutually_exclusive_children` by
  truth value: a string meaning true (or "", [] and {}) samples as sae_lens does; "false", "0",
  [false], ... would silently sample ME children, so they are refused. A string `scale_children_by_parent` on a node with feature
  children, or null mixed with a rescaling node, does not load in sae_lens: refused too.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

import synthviz
from synthviz.errors import SynthvizError
from tests.fidelity.parity import (active_sae_lens, active_synthviz, compare, pairs_of,
                                   sae_lens_folder)
from tests.fidelity.test_load_like_sae_lens import SMALL, node, org

logging.getLogger("sae_lens").setLevel(logging.ERROR)
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Sparse invariant checks")]

# a narrow magnitude (mean 2..1, std 0.1): no firing feature is cut to 0 by the ReLU, where
# sae_lens's sparse sampler (which treats a stored 0 as active) differs from its dense one
NARROW = dict(SMALL, std_firing_magnitudes=0.1)
N = 20_000


def folder_with(tmp_path, hierarchy, cfg=None):
    """A folder sae_lens writes, then `hierarchy` written in as given (no normalization)."""
    folder = sae_lens_folder(tmp_path / "m", dict(cfg or NARROW), {"roots": []})
    (folder / "hierarchy.json").write_text(json.dumps(hierarchy))
    return folder


def refusal(folder) -> str:
    with pytest.raises(SynthvizError) as err:
        synthviz.load(folder, device="cpu")
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- a feature listed twice

REPEATS = {
    # (hierarchy, the repeated feature, words of the reason)
    "two-top-level-trees": ({"roots": [node(0, node(1)), node(2, node(1))]}, 1,
                            "refuses this too"),
    "under-one-organizational-root": ({"roots": [org(node(0, node(3)), node(2, node(3)))]}, 3,
                                      "ill-defined"),
    "two-depths-of-one-tree": ({"roots": [node(0, node(1, node(5)), node(5))]}, 5, "ill-defined"),
    "unrelated-parents": ({"roots": [org(node(0, node(1, node(5))), node(2, node(5)))]}, 5,
                          "ill-defined"),
    "twice-in-one-me-group": ({"roots": [node(0, node(1), node(1), me=True)]}, 1, "ill-defined"),
    "in-two-me-groups": ({"roots": [org(node(0, node(3), node(4), me=True),
                                        node(2, node(3), node(5), me=True))]}, 3, "ill-defined"),
    "below-itself": ({"roots": [node(0, node(1, node(0)))]}, 0, "below itself"),
}


@pytest.mark.parametrize("case", REPEATS)
def test_a_repeated_feature_index_is_refused_naming_it_and_why(case, tmp_path):
    h, f, why = REPEATS[case]
    msg = refusal(folder_with(tmp_path, h))
    assert f"feature_index {f} appears more than once" in msg and why in msg, msg
    assert "sae_lens" in msg


def test_sae_lens_refuses_an_index_in_two_top_level_trees(tmp_path):
    from sae_lens.synthetic import SyntheticModel

    with pytest.raises(ValueError, match="multiple hierarchy trees"):
        SyntheticModel.load_from_disk(folder_with(tmp_path, REPEATS["two-top-level-trees"][0]))


@pytest.mark.parametrize("case", ["unrelated-parents", "twice-in-one-me-group",
                                  "in-two-me-groups"])
def test_sae_lens_samplers_disagree_on_an_index_repeated_in_one_tree(case, tmp_path):
    # why synthviz refuses rather than copies: sae_lens loads these, but its dense and sparse
    # samplers give different laws; the same file without the repeat is sampled alike by both
    from sae_lens.synthetic import SyntheticModel

    h, _, _ = REPEATS[case]
    model = SyntheticModel.load_from_disk(folder_with(tmp_path, h))
    dense = active_sae_lens(model, N, seed=1)
    model.use_sparse_tensors = True
    sparse = active_sae_lens(model, N, seed=2)
    assert compare(dense, sparse, []), case
    # control: a tree with no repeat, sampled alike by both of sae_lens's samplers
    ok = {"roots": [org(node(0, node(3), node(4), me=True), node(2, node(5), node(6), me=True))]}
    model = SyntheticModel.load_from_disk(folder_with(tmp_path / "ok", ok))
    dense = active_sae_lens(model, N, seed=1)
    model.use_sparse_tensors = True
    assert not compare(dense, active_sae_lens(model, N, seed=2), [])


# ---------------------------------------------------------------- flags written as strings

def me_pair(flag):
    # feature 0 with ME children 1, 2 (and an organizational ME node above feature 3 and 4)
    return {"roots": [node(0, node(1), node(2), me=flag),
                      org(node(3), node(4), me=flag, id="grp")]}


@pytest.mark.parametrize("flag", ["true", "True", "1", "yes", "", [], {}])
def test_string_me_flags_meaning_their_truth_value_sample_like_sae_lens(flag, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = sae_lens_folder(tmp_path / "m", dict(NARROW), me_pair(flag))  # as sae_lens stores
    ours = synthviz.load(folder, device="cpu")
    theirs = SyntheticModel.load_from_disk(folder)
    assert ours.forest.to_dict()["roots"][0]["mutually_exclusive_children"] is bool(flag)
    problems = compare(active_synthviz(ours, N, seed=3), active_sae_lens(theirs, N, seed=4),
                       pairs_of(ours.forest) + [(1, 2), (3, 4)])
    assert not problems, problems[:5]
    # both see the flag alike: ME pairs never fire together, others do
    acts = active_sae_lens(theirs, 2000, seed=5) > 0
    assert bool((acts[:, [1, 3]] & acts[:, [2, 4]]).any()) is not bool(flag)


@pytest.mark.parametrize("flag", ["false", "False", "0", "no"])
def test_string_me_flags_meaning_false_are_refused_as_sae_lens_samples_them_true(flag, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = folder_with(tmp_path, me_pair(flag))
    msg = refusal(folder)
    assert "mutually_exclusive_children of feature 0" in msg and repr(flag) in msg, msg
    assert "non-empty string as true" in msg, msg
    # what sae_lens does with it: ME children, although the file says false
    acts = active_sae_lens(SyntheticModel.load_from_disk(folder), 5000, seed=1) > 0
    assert acts[:, 1].any() and acts[:, 2].any() and not (acts[:, 1] & acts[:, 2]).any()


@pytest.mark.parametrize("flag", [[False], [True], {"value": False}])
def test_non_empty_list_or_object_me_flags_are_refused_as_sae_lens_samples_them_true(flag,
                                                                                      tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = folder_with(tmp_path, me_pair(flag))
    msg = refusal(folder)
    kind = "list" if isinstance(flag, list) else "object"
    assert "mutually_exclusive_children of feature 0" in msg, msg
    assert f"non-empty {kind} as true" in msg, msg
    acts = active_sae_lens(SyntheticModel.load_from_disk(folder), 5000, seed=1) > 0
    assert acts[:, 1].any() and acts[:, 2].any() and not (acts[:, 1] & acts[:, 2]).any()


@pytest.mark.parametrize("flag", ["false", "true", "0"])
def test_a_string_scale_flag_is_refused_as_sae_lens_cannot_load_it(flag, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = folder_with(tmp_path, {"roots": [node(0, node(1), node(2), rescale=flag)]})
    msg = refusal(folder)
    assert "scale_children_by_parent of feature 0" in msg and "sae_lens" in msg, msg
    with pytest.raises(Exception):
        SyntheticModel.load_from_disk(folder)


@pytest.mark.parametrize("empty", [None, ""])
def test_a_null_scale_flag_beside_a_rescaling_node_is_refused_as_sae_lens_fails(empty, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    h = {"roots": [node(0, node(1), rescale=empty), node(2, node(3), rescale=True)]}
    folder = folder_with(tmp_path, h)
    msg = refusal(folder)
    assert "scale_children_by_parent of feature 0" in msg and "feature 2" in msg, msg
    with pytest.raises(Exception):
        SyntheticModel.load_from_disk(folder)


@pytest.mark.parametrize(("h", "scaled"), [
    # null or "" with no rescaling node, strings on leaves (flags sae_lens never reads)
    ({"roots": [node(0, node(1), rescale=None), node(2, node(3), rescale=""),
                node(4, node(5, rescale="true"), node(6, rescale="no"))]}, set()),
    ({"roots": [node(0, node(1, rescale="yes"), node(2), rescale=True)]}, {1, 2}),
], ids=["no-rescaling", "leaf-strings"])
def test_scale_flags_sae_lens_ignores_load_and_sample_like_it(h, scaled, tmp_path):
    from sae_lens.synthetic import SyntheticModel

    folder = folder_with(tmp_path, h, dict(SMALL))
    ours = synthviz.load(folder, device="cpu")
    theirs = SyntheticModel.load_from_disk(folder)
    problems = compare(active_synthviz(ours, N, seed=3), active_sae_lens(theirs, N, seed=4),
                       pairs_of(ours.forest))
    assert not problems, problems[:5]
    assert set(ours.forest.child_rescale_mask.nonzero().flatten().tolist()) == scaled


# ---------------------------------------------------------------- the tree view's groups

def test_the_tree_plot_draws_organizational_nodes_above_and_below_the_root():
    import holoviews as hv

    from synthviz.hierarchy import Forest, groups_above
    from synthviz.plots.hierarchy import create_tree_plot
    from synthviz.stats.hierarchy_stats import tree_table
    from tests.fidelity.test_load_like_sae_lens import HIERARCHIES

    # root 1 sits in the ME group "animals" with roots 0 and 2; below it, ME group "o2"
    forest = Forest.from_dict(HIERARCHIES["me-roots-and-nested"], 14)
    rates = torch.linspace(0.5, 0.1, 14, dtype=torch.float64)
    above = groups_above(forest, 1, rates)
    assert [(g["label"], g["me"], g["features"]) for g in above] == [("animals", True, [0, 1, 2])]
    table = tree_table(forest, 1, rates)
    el = create_tree_plot(table, above=above)
    graph = next(e for e in el if isinstance(e, hv.Graph))
    nodes = graph.nodes.dframe().set_index("feature")
    group = nodes[nodes["node"] == "ME group"]
    top = group[group["label"] == "animals"]
    assert len(top) == 1 and set(group["label"]) == {"animals", "o2"}
    g = top.index[0]
    # drawn one level above the root, centred over its three roots, linked to each of them
    assert top["y"].iloc[0] == nodes.loc[1, "y"] + 1
    assert nodes.loc[[0, 1, 2], "y"].tolist() == [nodes.loc[1, "y"]] * 3
    assert nodes.loc[0, "x"] < nodes.loc[1, "x"] < nodes.loc[2, "x"]
    edges = set(map(tuple, graph.dframe()[["start", "end"]].to_numpy().tolist()))
    assert {(g, 0), (g, 1), (g, 2)} <= edges
    assert len(edges) == len(nodes) - 1  # still a tree
    # its roots are coloured by their rates; the group ringed as an ME parent and labelled
    assert nodes.loc[[0, 2], "rate"].tolist() == rates[[0, 2]].tolist()
    assert group["log10_rate"].isna().all()  # a group has no rate: not painted as a rare one
    rings = next(e for e in el if isinstance(e, hv.Points))
    assert (top["x"].iloc[0], top["y"].iloc[0]) in set(zip(rings["x"], rings["y"]))
    labels = next(e for e in el if isinstance(e, hv.Labels)).dframe()
    assert set(labels["text"]) == {"ME group: animals", "ME group: o2"}
    # a root with no organizational node above draws no group above it
    assert groups_above(forest, 9) == []
    plain = create_tree_plot(tree_table(forest, 9), above=groups_above(forest, 9))
    kinds = next(e for e in plain if isinstance(e, hv.Graph)).nodes.dimension_values("node")
    assert list(kinds).count("group") == 1  # the organizational node "x" below feature 9
    hv.render(el, backend="bokeh")


def test_the_hierarchy_tab_draws_the_group_above_a_root(tmp_path):
    # the wiring: the registry's tree plot (the Hierarchy tab's) for a root in an organizational ME group shows that group
    import holoviews as hv

    from synthviz.plots.registry import _tree
    from synthviz.stats.frequencies import firing_stats
    from tests.fidelity.test_load_like_sae_lens import HIERARCHIES

    folder = sae_lens_folder(tmp_path / "m", dict(NARROW), HIERARCHIES["me-roots-and-nested"])
    model = synthviz.load(folder, device="cpu")
    _, _, cols, _ = model.sample_entries(2000, seed=0)
    counts = torch.bincount(cols, minlength=model.num_features)
    stats = type("S", (), {"firing": firing_stats(counts, 2000)})()
    el = _tree(model, stats, 2, None)  # what the Hierarchy tab's tree plot draws
    nodes = next(e for e in el if isinstance(e, hv.Graph)).nodes
    assert "animals" in list(nodes.dimension_values("label"))
    assert {0, 1, 2} <= set(nodes.dimension_values("feature").tolist())


@pytest.mark.parametrize("text", ["true", "True", "yes", "1"])
def test_config_flags_written_as_strings_meaning_true_build_like_sae_lens(text):
    # sae_lens reads the config's hierarchy flags by truth value: the string builds the model
    # that `true` builds, in sae_lens and in synthviz
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    from synthviz.config import ModelConfig
    from synthviz.model import build_model
    from tests.conftest import SMALL_CONFIG

    as_bool, as_text = (json.loads(json.dumps(SMALL_CONFIG)) for _ in range(2))
    for d, v in ((as_bool, True), (as_text, text)):
        d["hierarchy"]["compensate_probabilities"] = v
        d["hierarchy"]["scale_children_by_parent"] = v
    theirs = [SyntheticModel(SyntheticModelConfig.from_dict(d)).activation_generator
              .firing_probabilities for d in (as_bool, as_text)]
    assert torch.equal(theirs[0], theirs[1])
    cfg = ModelConfig.from_dict(as_text)
    assert cfg.hierarchy.compensate_probabilities is True
    assert cfg.hierarchy.scale_children_by_parent is True
    assert cfg.to_dict()["hierarchy"]["compensate_probabilities"] is True  # written as a bool
    ours = build_model(cfg, device="cpu").firing_probabilities
    assert torch.equal(ours, build_model(ModelConfig.from_dict(as_bool), device="cpu")
                       .firing_probabilities)
    torch.testing.assert_close(ours.to(theirs[0].dtype), theirs[0])


@pytest.mark.parametrize("field", ["compensate_probabilities", "scale_children_by_parent"])
def test_config_flags_written_as_strings_meaning_false_are_refused(field):
    from sae_lens.synthetic import SyntheticModelConfig

    from synthviz.config import ModelConfig
    from tests.conftest import SMALL_CONFIG

    d = json.loads(json.dumps(SMALL_CONFIG))
    d["hierarchy"][field] = "false"
    assert getattr(SyntheticModelConfig.from_dict(d).hierarchy, field)  # sae_lens: true
    with pytest.raises(SynthvizError, match=f"hierarchy.{field} is the string 'false'.*"
                                            "reads any non-empty string as true"):
        ModelConfig.from_dict(d)


@pytest.mark.parametrize("value", [[], {}, [False], {"value": False}])
def test_config_flags_written_as_lists_or_objects_follow_their_truth_value_or_are_refused(value):
    from sae_lens.synthetic import SyntheticModelConfig

    from synthviz.config import ModelConfig
    from tests.conftest import SMALL_CONFIG

    d = json.loads(json.dumps(SMALL_CONFIG))
    d["hierarchy"]["compensate_probabilities"] = value
    theirs = bool(SyntheticModelConfig.from_dict(d).hierarchy.compensate_probabilities)
    assert theirs is bool(value)
    if not value:  # empty: false to both
        assert ModelConfig.from_dict(d).hierarchy.compensate_probabilities is False
        return
    kind = "list" if isinstance(value, list) else "object"
    with pytest.raises(SynthvizError, match=f"compensate_probabilities is the {kind} .*"
                                            f"reads any non-empty {kind} as true"):
        ModelConfig.from_dict(d)
