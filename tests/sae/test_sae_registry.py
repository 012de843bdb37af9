"""Issue 14, the SAE tab's layout: the statistics the SAE views draw (`synthviz.sae.view_stats`),
the SAE plot registry (`SAE_PLOTS`) drawing a small hand-made `SAEResults`, the app's `SAEView`
drawing through that registry (a new entry is a new slot), and `evaluate_for_view`."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import holoviews as hv
import numpy as np
import pytest
import torch

from synthviz.hierarchy import Forest
from synthviz.plots.sae_registry import NO_TREE, NOT_YET, SAE_PLOTS
from synthviz.sae.evaluate import SAEEvalResult
from synthviz.sae.metrics import abs_cosines
from synthviz.sae.results import SAEResults
from synthviz.sae.view_stats import cosine_block, most_absorbed_root, sae_tree_table

N = 8  # features 0..7: trees 0 -> (1 -> 3), 2 and 4 -> 5, 6; feature 7 outside every tree


def _node(f, kids=()):
    return {"feature_index": f, "mutually_exclusive_children": False,
            "scale_children_by_parent": False, "children": list(kids)}


@pytest.fixture(scope="module")
def forest():
    return Forest.from_dict({"roots": [_node(0, [_node(1, [_node(3)]), _node(2)]),
                                       _node(4, [_node(5), _node(6)])]}, N)


EDGES = {"parent": np.array([0, 0, 1, 4, 4]), "child": np.array([1, 2, 3, 5, 6]),
         "gap": np.array([0.1, np.nan, 0.2, 0.5, -0.1])}


def _features(scale: float = 1.0) -> dict:
    rng = np.random.default_rng(0)
    return {"feature": np.arange(N), "depth": np.array([0, 1, 1, 2, 0, 1, 1, -1]),
            "rate": np.array([0.3, 0.1, 0.05, 0.01, 0.2, 0.0, 0.02, 0.001]),
            **{k: scale * rng.uniform(0, 1, N) for k in ("f1", "recall", "precision")}}


def _result(features: dict, edges: dict) -> SAEEvalResult:
    return SAEEvalResult(
        true_l0=2.0, sae_l0=3.0, dead_latents=1, shrinkage=0.9, explained_variance=0.8,
        mcc=0.7, uniqueness=0.95, n_samples=100, features=features, edges=edges,
        classification={"precision": 0.6, "recall": 0.5, "f1_score": 0.55, "accuracy": 0.9},
        summary={"absorption": {"mean_gap": 0.14, "edges": 4},
                 "splitting": {"split_features": 2}})


def _block() -> dict:
    g = torch.Generator().manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(N, 16, generator=g), dim=1)
    # latents 0..5 copy features 5, 3, 3, 0, 6, 1 with more and more noise; latent 2 is a worse
    # copy of feature 3 than latent 1
    match = [5, 3, 3, 0, 6, 1]
    W = torch.stack([feats[f] + 0.1 * (i + 1) * torch.randn(16, generator=g)
                     for i, f in enumerate(match)])
    cos = abs_cosines(W, feats)
    return W, feats, cos.argmax(1).numpy(), cos.max(1).values.numpy()


@pytest.fixture(scope="module")
def snapshot(forest):
    W, feats, best_f, best_c = _block()
    return SAEResults(current=_result(_features(), EDGES), forest=forest,
                      cosine=cosine_block(W, feats, best_f, best_c), sae_name="toy",
                      samples=100, seed=0)


# ---------------------------------------------------------------- the statistics


def test_sae_tree_table_is_the_tree_depth_first_with_edge_gaps(forest):
    feats = _features()
    t = sae_tree_table(forest, 0, feats, EDGES, "recall")
    assert t["feature"].tolist() == [0, 1, 3, 2] and t["parent"].tolist() == [-1, 0, 1, 0]
    assert np.array_equal(t["score"], feats["recall"][[0, 1, 3, 2]])
    assert t["depth"].tolist() == [0, 1, 2, 1]
    assert np.array_equal(t["rate"], feats["rate"][[0, 1, 3, 2]])
    gap = t["gap"]
    assert math.isnan(gap[0]) and gap[1] == 0.1 and gap[2] == 0.2 and math.isnan(gap[3])
    # tensors read alike; no edges: every gap unmeasured
    as_t = {k: torch.as_tensor(v) for k, v in EDGES.items()}
    assert np.array_equal(sae_tree_table(forest, 4, feats, as_t)["feature"], [4, 5, 6])
    assert np.isnan(sae_tree_table(forest, 4, feats, {})["gap"]).all()


def test_most_absorbed_root_is_the_tree_of_the_largest_gap(forest):
    assert most_absorbed_root(forest, EDGES) == 4  # 0.5 on 4 -> 5
    deep = dict(EDGES, gap=np.array([0.1, np.nan, 0.9, 0.5, -0.1]))  # 0.9 on 1 -> 3, below 0
    assert most_absorbed_root(forest, {k: torch.as_tensor(v) for k, v in deep.items()}) == 0
    assert most_absorbed_root(forest, {}) == 0  # no edge measured: the first root
    assert most_absorbed_root(None, EDGES) is None


def test_cosine_block_orders_latents_by_match_one_per_feature():
    W, feats, best_f, best_c = _block()
    b = cosine_block(W, feats, best_f, best_c)
    order = [int(i) for i in np.argsort(-best_c, kind="stable")]
    kept, seen = [], set()
    for lat in order:  # the best latent of each feature, in order of match
        if int(best_f[lat]) not in seen:
            seen.add(int(best_f[lat]))
            kept.append(lat)
    assert b["latents"].tolist() == kept and len(set(b["features"].tolist())) == len(kept)
    assert b["features"].tolist() == [int(best_f[lat]) for lat in kept]
    assert b["cos"].shape == (len(kept), len(kept))
    assert np.allclose(np.diag(b["cos"]), best_c[kept], atol=1e-6)  # the matches on the diagonal
    assert np.all(np.diff(np.diag(b["cos"])) <= 1e-6)
    assert np.allclose(b["cos"], abs_cosines(W[kept], feats[b["features"]]).numpy())
    assert cosine_block(W, feats, best_f, best_c, side=2)["latents"].tolist() == kept[:2]


# ---------------------------------------------------------------- the registry


def _opts(spec, **given):
    return {k: v for k, v in {"metric": "f1", "tree_root": None, **given}.items()
            if k in spec.options}


def test_sae_registry_lists_the_three_views():
    assert SAE_PLOTS.names() == ["sae_recovery", "sae_tree", "sae_cosine"]
    assert SAE_PLOTS.tabs() == ["SAE"]
    assert SAE_PLOTS.get("sae_tree").options == ("metric", "tree_root")


def test_every_entry_draws_its_placeholder_before_an_evaluation():
    for spec in SAE_PLOTS:
        el = spec.create(None, **_opts(spec))
        assert isinstance(el, hv.Text) and el.text == NOT_YET, spec.name


def test_recovery_entry_draws_each_seen_feature_at_its_metric(snapshot):
    feats = snapshot.current.features
    seen = feats["rate"] > 0
    for metric in ("f1", "recall"):
        el = SAE_PLOTS.get("sae_recovery").create(snapshot, metric=metric)
        pts = el.get(0)
        assert isinstance(pts, hv.Points) and pts.label == "this model"
        assert np.array_equal(pts.dimension_values(metric), feats[metric][seen])
        assert np.allclose(pts.dimension_values("log10_rate"), np.log10(feats["rate"][seen]))
        assert el.opts.get().kwargs["title"].endswith(f"({int(seen.sum())} features seen)")
        assert len(el) == 1  # nothing compared: no base layer
    cmp = SAEResults(current=snapshot.current, base=_result(_features(0.5), EDGES),
                     forest=snapshot.forest, cosine=snapshot.cosine)
    el = SAE_PLOTS.get("sae_recovery").create(cmp, metric="f1")
    assert [layer.label for layer in el] == ["this model", "base (binned mean)"]
    assert el.get(1).dimension_values("f1").max() <= 0.5


def test_tree_entry_draws_the_chosen_or_most_absorbed_tree(snapshot):
    spec = SAE_PLOTS.get("sae_tree")
    el = spec.create(snapshot, metric="f1", tree_root=None)  # the most absorbed: root 4
    edges, nodes = el.get(0), el.get(1)
    assert el.opts.get().kwargs["title"].startswith("Tree of root 4: node colour = best-latent F1")
    assert sorted(nodes.dimension_values("feature").tolist()) == [4, 5, 6]
    assert np.array_equal(nodes.dimension_values("score")[np.argsort(
        nodes.dimension_values("feature"))], snapshot.current.features["f1"][[4, 5, 6]])
    gaps = dict(zip(edges.dimension_values("child").tolist(), edges.dimension_values("gap")))
    assert gaps == pytest.approx({5: 0.5, 6: -0.1})
    el = spec.create(snapshot, metric="recall", tree_root=0)
    assert sorted(el.get(1).dimension_values("feature").tolist()) == [0, 1, 2, 3]
    assert "best-latent recall" in el.opts.get().kwargs["title"]
    for bad in (7, 3):  # outside every tree; a leaf
        el = spec.create(snapshot, metric="f1", tree_root=bad)
        assert isinstance(el, hv.Text) and el.text == NO_TREE
    no_forest = SAEResults(current=snapshot.current, forest=None, cosine=snapshot.cosine)
    assert spec.create(no_forest, metric="f1", tree_root=None).text == NO_TREE


def test_cosine_entry_draws_the_block(snapshot):
    el = SAE_PLOTS.get("sae_cosine").create(snapshot)
    assert isinstance(el, hv.Image)
    n = len(snapshot.cosine["latents"])
    assert el.dimension_values("|cos|", flat=False).shape == (n, n)
    assert np.allclose(np.sort(el.dimension_values("|cos|")), np.sort(snapshot.cosine["cos"].ravel()))
    assert f"|cos| of the {n} best-matched latents" in el.opts.get().kwargs["title"]


def test_sae_layers_import_no_panel():
    """The snapshot, its statistics and the SAE registry are pure data and functions."""
    import synthviz.sae
    paths = [*Path(synthviz.sae.__file__).parent.glob("*.py")]
    import synthviz.plots.sae_registry as reg
    paths.append(Path(reg.__file__))
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "panel" or n.startswith("panel.") for n in names), path.name
            assert not any(n.startswith("synthviz.app") for n in names), path.name


# ---------------------------------------------------------------- the app's view


def test_sae_view_draws_through_the_registry(snapshot, tmp_path, monkeypatch):
    from synthviz.app import sae_tab
    reg = SAE_PLOTS.copy()
    reg.register("sae_extra", "SAE",
                 lambda r, o: None if r is None else hv.Curve(
                     [(0, 0), (1, r.current.mcc)], label=f"extra {o['metric']}"),
                 options=("metric",))
    monkeypatch.setattr(sae_tab, "SAE_PLOTS", reg)
    view = sae_tab.SAEView(root=tmp_path)
    assert SAE_PLOTS.names() == ["sae_recovery", "sae_tree", "sae_cosine"]  # the global kept
    slots = view.plots.slot
    assert list(slots) == reg.names()
    assert slots["sae_extra"].pane.css_classes == ["sv-plot-sae_extra"]
    assert not slots["sae_extra"].box.visible  # None: the entry does not apply yet
    assert slots["sae_recovery"].pane.object.text == NOT_YET
    layout = view.__panel__()
    boxes = [o for o in layout.objects if o in [s.box for s in slots.values()]]
    assert boxes == [s.box for s in slots.values()]
    view.results = snapshot
    assert slots["sae_extra"].box.visible
    assert slots["sae_extra"].pane.object.label == "extra f1"
    assert slots["sae_extra"].pane.object.dimension_values(1)[-1] == snapshot.current.mcc
    assert slots["sae_tree"].pane.object.get(1).dimension_values("feature").tolist()[0] == 4
    assert "MCC" in view.cards.objects[0].object and "| mcc |" in view.table.object
    view.metric = "recall"  # a view setting redraws every entry that reads it
    assert slots["sae_extra"].pane.object.label == "extra recall"
    assert slots["sae_recovery"].pane.object.get(0).kdims[1].name == "recall"
    view.tree_root = 0
    assert sorted(slots["sae_tree"].pane.object.get(1).dimension_values("feature")) == [0, 1, 2, 3]
    view.tree_root = 7
    assert slots["sae_tree"].pane.object.text == NO_TREE
    # an entry that raises becomes a message in its slot; the others still draw
    reg.register("sae_broken", "SAE", lambda r, o: 1 / 0)
    broken = sae_tab.SAEView(root=tmp_path, registry=reg, results=snapshot)
    assert "ZeroDivisionError" in broken.plots.slot["sae_broken"].pane.object.text
    assert isinstance(broken.plots.slot["sae_cosine"].pane.object, hv.Image)
    assert "MCC" in broken.cards.objects[0].object  # given at construction: drawn at once


# ---------------------------------------------------------------- the evaluation


@pytest.mark.usefixtures("one_torch_thread")
def test_evaluate_for_view_is_compare_models_plus_the_view_statistics(sae_world):
    from synthviz.sae import compare_models, load_sae
    from synthviz.sae.results import evaluate_for_view
    from synthviz.variations import Variation
    _, model, sae_dir = sae_world
    sae = load_sae(sae_dir)
    other_dim = Variation(hidden_dim=32).apply(model)
    calls = []
    res = evaluate_for_view(sae, {"current": model, "base": other_dim}, 1500, seed=4,
                            progress=lambda d, t: calls.append((d, t)), name="toy")
    assert res.base is None and "another hidden dim" in res.note
    assert res.forest is model.forest and (res.sae_name, res.samples, res.seed) == ("toy", 1500, 4)
    assert calls and calls[-1] == (1500, 1500)
    ref = compare_models(sae, {"current": model}, 1500, seed=4)["current"]
    assert res.current.to_dict() == ref.to_dict()
    lat = ref.latents
    want = cosine_block(sae.W_dec, model.feature_vectors, lat["best_feature"], lat["best_cos"])
    assert all(np.array_equal(res.cosine[k], want[k]) for k in ("latents", "features", "cos"))
    both = evaluate_for_view(sae, {"current": model, "base": model}, 1500, seed=4)
    assert both.base is None and both.note == ""  # the same model is not compared with itself
