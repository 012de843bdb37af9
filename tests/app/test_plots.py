"""Plot functions: each is a pure function of a statistic and shows that statistic's data.

Statistics come from a small model (2048 x 64, hierarchy with ME, copula); every element is also
rendered to Bokeh models so option errors surface here rather than in the browser.
"""

from __future__ import annotations

import math

import holoviews as hv
import numpy as np
import pytest
import torch

from synthviz import plots
from synthviz.app.stats_files import load_stats, save_stats
from synthviz.app.store import (SampleSettings, Store, compute_analytic_stats,
                                compute_sample_stats)


@pytest.fixture(scope="module")
def small():
    import synthviz
    from tests.app.conftest import SMALL_CONFIG  # noqa: F401  (same config as the fixture)
    from synthviz.config import ModelConfig
    import copy
    model = synthviz.build_model(ModelConfig.from_dict(copy.deepcopy(SMALL_CONFIG)), device="cpu")
    settings = SampleSettings(samples=4096, cooc_how="subtree", cooc_root=0, cooc_k=24)
    stats = compute_sample_stats(model, settings)
    analytic = compute_analytic_stats(model, settings, stats)
    sup = Store().superposition(model)
    return model, Both(stats, analytic), sup


class Both:
    """The fast and the slow statistics of one model under the names the plots take."""

    def __init__(self, stats, analytic):
        self.__dict__.update(vars(stats))
        self.firing = analytic.firing
        self.expected_l0 = analytic.expected_l0
        self.interference = analytic.interference


def render(el):
    return hv.render(el, backend="bokeh")


def layers(overlay):
    return {el.label: el for el in overlay}


def test_l0_plot_shows_the_histograms_and_markers(small):
    _, s, _ = small
    el = plots.create_l0_plot(s.l0, s.expected_l0, 4096, base=s.l0)
    ls = layers(el)
    full = next(v for k, v in ls.items() if k.startswith("all features"))
    frac = full.dimension_values(1)
    assert frac.sum() == pytest.approx(1.0, abs=1e-9)  # fractions of samples
    # the histogram's mean is the statistic's mean
    centres = full.dimension_values(0)
    assert float((centres * frac).sum()) == pytest.approx(s.l0.mean, rel=1e-6)
    assert any(k.startswith("expected L0") for k in ls) and any(k.startswith("base") for k in ls)
    render(el)


def test_frequency_plot_ranks_by_expected_rate(small):
    _, s, _ = small
    el = plots.create_frequency_plot(s.firing)
    pts = next(e for e in el if isinstance(e, hv.Points))
    seen = int((s.firing.counts > 0).sum())
    assert len(pts) == seen
    exp = next(e for e in el if isinstance(e, hv.Curve) and e.label == "expected"
               ).dimension_values(1)
    assert np.all(np.diff(exp) <= 0)  # descending expected rate
    f = pts.dimension_values("feature").astype(int)
    assert np.allclose(pts.dimension_values(1), s.firing.empirical_rate.numpy()[f])
    render(el)


@pytest.mark.parametrize("measure", ["lift", "phi", "npmi"])
def test_cooccurrence_heatmap_has_every_pair_with_counts(small, measure):
    _, s, _ = small
    c = s.cooccurrence
    k = len(c.features)
    el = plots.create_cooccurrence_plot(c, measure)
    assert len(el) == k * k
    counts = el.dimension_values("count").reshape(k, k)
    assert np.array_equal(counts, c.counts.numpy())
    vals = el.dimension_values("value").reshape(k, k)
    assert np.isnan(np.diag(vals)).all()
    render(el)


def test_cooccurrence_shows_me_siblings_at_the_bottom_of_the_scale(small):
    model, s, _ = small
    c = s.cooccurrence
    feats = c.features.tolist()
    el = plots.create_cooccurrence_plot(c, "lift")
    k = len(feats)
    vals = el.dimension_values("value").reshape(k, k)
    noise = c.noise.numpy()
    pos = {f: i for i, f in enumerate(feats)}
    checked = 0
    for parent, kids in model.forest.me_groups():
        ks = [pos[x] for x in kids if x in pos]
        for a in ks:
            for b in ks:
                if a != b and not noise[a, b]:
                    assert vals[a, b] == -plots.cooccurrence.LIFT_CLIP  # never co-fire
                    checked += 1
    assert checked > 0


def test_tidy_layout_centres_parents_over_children():
    nodes = [0, 1, 2, 3, 4, 5]
    parents = [-1, 0, 0, 1, 1, 2]
    pos = plots.tidy_layout(nodes, parents)
    assert pos[0][1] == 0 and pos[1][1] == -1 and pos[3][1] == -2
    assert pos[1][0] == (pos[3][0] + pos[4][0]) / 2
    assert pos[0][0] == (pos[1][0] + pos[2][0]) / 2
    xs = [pos[n][0] for n in (3, 4, 5)]
    assert len(set(xs)) == 3  # leaves never overlap


def test_tree_plot_marks_me_parents_and_colours_by_rate(small):
    from synthviz.stats.hierarchy_stats import tree_table
    model, s, _ = small
    root = model.forest.roots[0]
    table = tree_table(model.forest, root, s.firing.empirical_rate)
    el = plots.create_tree_plot(table)
    graph = next(e for e in el if isinstance(e, hv.Graph))
    nodes = graph.nodes
    assert len(nodes) == len(table["feature"])
    assert len(graph) == len(table["feature"]) - 1  # a tree: one edge per non-root node
    rate = nodes.dimension_values("rate")
    assert np.allclose(rate, np.array(table["rate"]))
    rings = next(e for e in el if isinstance(e, hv.Points))
    assert len(rings) == sum(table["me"])
    render(el)


def test_forest_summary_plot(small):
    from synthviz.stats.hierarchy_stats import forest_summary
    model, _, _ = small
    summary = forest_summary(model.forest, model.num_features)
    el = plots.create_forest_summary_plot(summary, base=summary)
    bars = next(e for e in el if isinstance(e, hv.Bars))
    assert bars.dimension_values(1).tolist() == list(summary.nodes_per_depth)
    assert plots.create_forest_summary_plot(None).data  # a message, not an error
    render(el)


def test_superposition_plots(small):
    _, s, sup = small
    hist = plots.create_cos_histogram(sup, base=sup)
    h = next(e for e in hist if isinstance(e, hv.Histogram))
    # every pair is counted once (empty bins are drawn at 0.5 on the log axis)
    counts = h.dimension_values(1)
    assert counts[counts >= 1].sum() == pytest.approx(float(sup.hist_counts.sum()))
    scatter = plots.create_max_cos_scatter(sup, s.firing.expected_rate, sup, s.firing.expected_rate)
    pts = [e for e in scatter if isinstance(e, hv.Points)]
    assert len(pts[-1]) == sup.max_abs_cos.shape[0]  # all N points
    assert np.allclose(pts[-1].dimension_values(1), sup.max_abs_cos.numpy())
    assert np.array_equal(pts[-1].dimension_values("partner"), sup.partner.numpy())
    inter = plots.create_interference_plot(s.interference, base=s.interference)
    assert "signal-to-interference" in inter.opts.get().kwargs["title"]
    # the title says how many samples the histograms come from
    assert f"on {s.interference.samples:,} samples" in inter.opts.get().kwargs["title"]
    for el in (hist, scatter, inter):
        render(el)


def test_max_cos_scatter_draws_unoutlined_squares(small):
    # N outlined circles took a browser twice as long to paint (0.17 s against 0.08 s at 16k)
    _, s, sup = small
    fig = render(plots.create_max_cos_scatter(sup, s.firing.expected_rate, sup,
                                              s.firing.expected_rate))
    glyphs = [r.glyph for r in fig.renderers if type(r.glyph).__name__ == "Scatter"]
    assert len(glyphs) == 2  # the model and the base
    for g in glyphs:
        assert g.marker == "square" and g.line_color is None


def test_magnitude_plot_by_depth(small):
    _, s, _ = small
    el = plots.create_magnitude_plot(s.magnitudes, base=s.magnitudes)
    absolute = el[0] if isinstance(el, hv.Layout) else el
    curves = [e for e in absolute if isinstance(e, hv.Curve)]
    assert len(curves) == sum(1 for c in s.magnitudes.by_depth.values() if c.sum() > 0)
    render(el)


def test_missing_statistics_give_messages_not_errors():
    for el in (plots.create_l0_plot(None), plots.create_frequency_plot(None),
               plots.create_cos_histogram(None), plots.create_max_cos_scatter(None, None),
               plots.create_interference_plot(None), plots.create_magnitude_plot(None)):
        assert isinstance(el, hv.Text)
        render(el)


def test_superposition_disk_cache_round_trips(small, tmp_path):
    _, _, sup = small
    path = tmp_path / "sup.npz"
    save_stats(path, sup)
    back = load_stats(path)
    assert torch.equal(back.max_abs_cos, sup.max_abs_cos)
    assert torch.equal(back.hist_counts, sup.hist_counts)
    assert back.percentile.keys() == sup.percentile.keys()
    assert all(torch.equal(back.percentile[k], sup.percentile[k]) for k in sup.percentile)
    assert back.rho_mm == sup.rho_mm and back.mean_percentile == sup.mean_percentile
    # the prefix tables come back too, so a restarted server still derives truncations at once
    assert sup.tile_max is not None and back.tile == sup.tile
    for name in ("tile_max", "pair_sums", "pair_hist"):
        assert torch.equal(getattr(back, name), getattr(sup, name)), name
    from synthviz.stats.superposition import prefix_stats
    v = small[0].feature_vectors[:1024]
    assert prefix_stats(back, v).rho_mm == prefix_stats(sup, v).rho_mm
    path.write_bytes(b"not an npz")
    assert load_stats(path) is None  # damaged entries are recomputed, not trusted
    assert math.isfinite(sup.rho_mm)
