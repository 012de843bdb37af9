"""The tab views without a browser: figures follow new results in place (the same Bokeh figure,
new title, legend and data), hidden tabs draw when shown, the tree view says why it shows
another tree, and mutually exclusive siblings stay visible in the co-occurrence heatmap."""

from __future__ import annotations

import numpy as np
import pytest

from synthviz.app import Controller, Explorer
from synthviz.app.plot_tabs import TAB_VIEWS
from synthviz.plots.registry import me_sibling_pairs, tree_root_for

WAIT = 240


def _figures(model):
    from bokeh.models import Plot
    return [m for m in model.references() if isinstance(m, Plot)]


def _legends(fig) -> list[str]:
    return [str(getattr(it.label, "value", "")) for lg in fig.legend for it in lg.items]


@pytest.fixture(scope="module")
def explorer(small_source):
    c = Controller(source=small_source, samples=1024)
    assert c.wait(WAIT) and c.error == "", c.error
    ex = Explorer(controller=c)
    root = ex.main.get_root()  # a Bokeh document, as a served page has
    yield c, ex, root
    c.close()


def _figure(ex, root, tab: str, slot: str):
    pane = ex.views[tab].slot[slot].pane
    model = pane._models[root.ref["id"]][0]
    figs = _figures(model)
    assert figs, f"the {tab} tab shows no figure"
    return figs[0]


def _l0_figure(ex, root):
    return _figure(ex, root, "L0", "l0")


def test_l0_figure_is_updated_in_place(explorer):
    c, ex, root = explorer
    fig = _l0_figure(ex, root)
    before = c.results.stats.l0.mean
    assert f"mean L0 {before:.2f}" in _legends(fig)
    c.rel_p = 0.5
    assert c.wait(WAIT) and c.error == ""
    ex._apply(c.results, {}, 0)  # what the session's event loop runs
    after = c.results.stats.l0.mean
    assert abs(after - before) > 0.1
    assert _l0_figure(ex, root) is fig  # the same figure, not a swapped one
    assert f"mean L0 {after:.2f}" in _legends(fig) and f"mean L0 {before:.2f}" not in _legends(fig)
    c.rel_p = 1.0
    assert c.wait(WAIT)


def test_hidden_tabs_draw_when_shown(explorer):
    c, ex, root = explorer
    ex.tabs.active = 0
    res = c.results
    ex._apply(res, {}, 0)
    mags = ex.views["Magnitudes"]
    assert mags._drawn is None or mags._drawn[0] is not res  # hidden: not drawn yet
    ex.tabs.active = [t for t, _ in TAB_VIEWS].index("Magnitudes")
    assert mags._drawn[0] is res
    title = _figure(ex, root, "Magnitudes", "magnitudes").title.text
    assert f"{int(res.stats.magnitudes.active):,} values" in title
    ex.tabs.active = 0


def test_tree_view_says_why_for_features_outside_trees_or_beyond_n(explorer):
    c, ex, root = explorer
    forest = c.results.model.forest
    outside = int(np.flatnonzero(forest.depth.numpy() < 0)[0])
    first = forest.roots[0]
    assert tree_root_for(forest, forest.roots[1]) == (forest.roots[1], "")
    r, why = tree_root_for(forest, outside)
    assert r == first and f"feature {outside} is outside every tree" in why
    r, why = tree_root_for(forest, 99999)
    assert r == first and "does not exist" in why and "2,048 features" in why
    ex.tabs.active = [t for t, _ in TAB_VIEWS].index("Hierarchy")
    c.tree_root = 99999
    ex._sync_view_params()
    assert "does not exist" in ex.views["Hierarchy"].note.object
    assert ex.views["Hierarchy"].note.visible
    c.tree_root = 0
    ex._sync_view_params()
    assert not ex.views["Hierarchy"].note.visible
    ex.tabs.active = 0


def test_me_siblings_are_coloured_even_when_rare(explorer):
    from synthviz import plots
    c, ex, root = explorer
    res = c.results
    cooc = res.stats.cooccurrence
    me = me_sibling_pairs(res.model.forest, cooc.features)
    assert me.any(), "the default feature set should hold ME siblings"
    hm = plots.create_cooccurrence_plot(cooc, "lift", me_pairs=me)
    k = len(cooc.features)
    value = hm.dimension_values("value").reshape(k, k)
    counts = np.asarray(cooc.counts)
    zero_me = me & (counts == 0)
    assert zero_me.any()
    assert np.isfinite(value[zero_me]).all()  # drawn at the scale's bottom, not grey
    plain = plots.create_cooccurrence_plot(cooc, "lift").dimension_values("value").reshape(k, k)
    assert np.isnan(plain[zero_me]).any()  # without the fix most of them were grey
    ex.tabs.active = [t for t, _ in TAB_VIEWS].index("Co-occurrence")
    note = ex.views["Co-occurrence"].note.object
    assert "diagonal" in note and "fewer than 10 expected" in note and "ME" in note
    ex.tabs.active = 0


def test_disabled_controls_say_why(explorer):
    c, ex, root = explorer
    w = ex.w
    c.param.update(std_mode="base", use_target_l0=False, hierarchy_mode="custom",
                   branching_random=False)
    ex._sync_modes()
    assert w["std"].disabled and "off:" in w["std"].name and "constant" in w["std"].name
    assert w["branching_max"].disabled and "random branching" in w["branching_max"].name
    assert not w["rel_p"].disabled and "off:" not in w["rel_p"].name
    c.param.update(use_target_l0=True, branching_random=True)
    ex._sync_modes()
    assert w["rel_p"].disabled and "target L0" in w["rel_p"].name
    assert not w["branching_max"].disabled and "off:" not in w["branching_max"].name
    c.param.update(use_target_l0=False, hierarchy_mode="base", branching_random=True)
    assert c.wait(WAIT)


def test_page_says_what_the_model_is_and_its_warnings(explorer):
    c, ex, root = explorer
    assert c.wait(WAIT)
    ex._on_results(None)
    line = ex.model_line.object
    assert "Model: source" in line and "unchanged" in line, line
    # the small model's hierarchy compensation clamps some probabilities: said on the page
    assert ex.warnings.visible and "clamped" in ex.warnings.object
    c.rel_p = 0.5
    assert c.wait(WAIT)
    ex._on_results(None)
    assert "rel p 0.5" in ex.model_line.object, ex.model_line.object
    c.rel_p = 0.9500000000000002  # as a slider step leaves it
    assert c.wait(WAIT)
    ex._on_results(None)
    assert "rel p 0.95**" in ex.model_line.object, ex.model_line.object
    c.rel_p = 1.0
    assert c.wait(WAIT)


def test_a_preset_typed_as_source_is_the_preset():
    c = Controller(start=False)
    c.source = "d-512"
    # the seed's variations build on base-v1, as published
    assert (c.preset, c.source, c.hidden_dim) == ("d-512", "base-v1", 512)


def test_branching_min_above_max_is_rejected(small_source):
    c = Controller(source=small_source, samples=1024, hierarchy_mode="custom",
                   branching_random=True, branching_min=8, branching_max=4)
    assert c.wait(WAIT)
    assert "branching min 8 is above max 4" in c.error
    c.close()


def test_status_says_what_took_the_time():
    from synthviz.app.model_text import ready_status

    class M:
        num_features, hidden_dim = 16384, 768
    slow = ready_status(M, 8192, 35.2, {"loading the source": 34.1, "sampling": 0.63})
    assert "took 35.2 s" in slow and "loading the source 34.1 s" in slow
    assert slow.index("loading") < slow.index("sampling")
    assert ready_status(M, 8192, 0.8, {"sampling": 0.63}).endswith("in 0.63 s")
    # statistics from the cache: no "8,192 samples in 0.00 s"
    cached = ready_status(M, 8192, 0.05, {"sampling": 0.0})
    assert cached.endswith("samples (statistics from the cache) in 0.05 s"), cached


def test_export_message_sits_by_the_button_and_status_returns(explorer, tmp_path, monkeypatch):
    c, ex, root = explorer
    monkeypatch.setenv("SYNTHVIZ_EXPORT_ROOT", str(tmp_path))
    assert c.wait(WAIT)
    before = c.status
    objs = list(ex.export.export_panel.objects)
    assert objs.index(ex.export.export_alert) == objs.index(ex.export.export_button) + 1
    ex.export.export_name.value = "once"
    ex.export.export_samples.value = 500
    ex.export._on_export().join(120)
    assert "exported to" in ex.export.export_alert.object
    assert c.status == before and not c.busy
    (tmp_path / "twice").mkdir()
    (tmp_path / "twice" / "x").write_text("keep")
    ex.export.export_name.value = "twice"
    ex.export._on_export().join(120)
    msg = ex.export.export_alert.object
    assert "replace an existing folder" in msg and "--force" not in msg, msg


def test_page_says_before_exporting_whether_the_export_is_exact(tmp_path):
    """Issue 12: the export panel shows `export_check` for the current model; a model sae_lens
    would sample differently (relative p above saturation) offers "write it anyway"."""
    import copy

    from synthviz.config import ModelConfig
    from synthviz.model import build_model
    from tests.conftest import SMALL_CONFIG

    cfg = copy.deepcopy(SMALL_CONFIG)
    cfg["firing_probability"]["max_prob"] = 0.6  # x 2 > 1: relative p 2 saturates
    build_model(ModelConfig.from_dict(cfg), device="cpu").save(tmp_path / "m")
    c = Controller(source=str(tmp_path / "m"), samples=1024)
    try:
        ex = Explorer(controller=c)
        assert c.wait(WAIT) and c.error == "", c.error
        assert ex.export.export_check.visible and "Exports exactly" in ex.export.export_check.object
        assert not ex.export.export_inexact.visible
        c.rel_p = 2.0  # the config cannot say it
        assert c.wait(WAIT) and c.error == "", c.error
        assert "Does not export exactly" in ex.export.export_check.object
        assert ex.export.export_inexact.visible
    finally:
        c.close()


def test_sae_tab_follows_the_current_model(explorer):
    """The SAE tab is registered like every tab and is handed the model the page shows."""
    c, ex, root = explorer
    assert [t for t, _ in TAB_VIEWS][-1] == "SAE"
    assert ex.views["SAE"].view.model is c.results.model


def test_page_says_what_a_reconstructed_preset_assumed():
    """Issue 12: the misc presets are reconstructions, and the page says what was assumed."""
    from synthviz.app.model_text import preset_note
    from synthviz.presets import PRESETS

    misc = [name for name, p in PRESETS.items() if p.family == "misc"]
    assert misc and all("Reconstruction" in preset_note(name) for name in misc)
    assert preset_note("custom") == ""


def test_worker_updates_wait_until_the_session_is_live():
    """Intermittent stall with two sessions opened together: results from the cache arrived
    while Bokeh was still building the session, and a next-tick callback added from a worker
    then can be lost. Updates from workers are held until the page has loaded, then applied
    in order; from then on they go through next-tick callbacks."""
    import threading

    from synthviz.app.session import SessionLoop

    class Doc:
        session_context = True

        def __init__(self):
            self.callbacks = []

        def add_next_tick_callback(self, cb):
            self.callbacks.append(cb)

    loop = SessionLoop()  # no served session here: set one up by hand, not yet live
    loop.doc, loop._live, loop._held = Doc(), False, []
    seen = []
    workers = [threading.Thread(target=loop.dispatch, args=(lambda i=i: seen.append(i),))
               for i in range(3)]
    for t in workers:
        t.start()
        t.join()
    assert loop.doc.callbacks == [] and seen == []  # nothing reaches Bokeh before it is live
    loop._go_live()  # Panel's onload, on the session's loop
    assert seen == [0, 1, 2]
    t = threading.Thread(target=loop.dispatch, args=(lambda: seen.append(3),))
    t.start()
    t.join()
    assert len(loop.doc.callbacks) == 1 and seen == [0, 1, 2]


def test_progress_bar_only_for_work_that_lasts(explorer):
    """Short work shows no progress bar (showing one costs the browser a relayout and CPU time
    the sampling needs); work still running after PROGRESS_AFTER_S shows it."""
    import time

    from synthviz.app.views import PROGRESS_AFTER_S
    c, ex, root = explorer
    assert c.wait(WAIT)
    try:
        c.param.update(busy=True, status="sampling 8,192")
        assert not ex.bar_shown  # just started
        c.param.update(busy=False, status="ready")
        time.sleep(PROGRESS_AFTER_S + 0.3)
        assert not ex.bar_shown  # finished before the bar was due
        c.param.update(busy=True, status="building")
        deadline = time.monotonic() + PROGRESS_AFTER_S + 5
        while not ex.bar_shown and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ex.bar_shown and 'sv-bar-on' in ex.status.object
    finally:
        c.param.update(busy=False, status="ready")
    assert not ex.bar_shown


def test_browser_changes_are_not_held_back(explorer):
    """Panel holds each change from the browser for 50 ms to merge bursts (its default
    `_debounce`); the controls and tabs send one change per key, release or click, so they
    pass it on at once: the wait was added to every update."""
    import panel as pn

    from synthviz.app.views import BROWSER_CHANGE_DELAY_MS
    c, ex, root = explorer
    assert pn.widgets.IntSlider._debounce == 50 and BROWSER_CHANGE_DELAY_MS == 0
    held = [name for name, w in ex.w.items() if w._debounce != BROWSER_CHANGE_DELAY_MS]
    assert held == [] and ex.tabs._debounce == BROWSER_CHANGE_DELAY_MS


def test_quick_work_changes_the_status_line_only_with_results_or_the_bar(explorer):
    """The stages of work shorter than PROGRESS_AFTER_S flash by unread, and each one cost the
    browser a repaint while the server computed: the status line changes with the first look
    (in the same update), an error or the end, and once the bar is due shows every stage."""
    import time

    from synthviz.app.views import PROGRESS_AFTER_S
    c, ex, root = explorer
    assert c.wait(WAIT)
    before = ex.status.object
    try:
        c.param.update(busy=True, status="loading model")
        c.param.update(status="applying variation")
        c.param.update(status="sampling 1,024 for a first look")
        assert ex.status.object == before and not ex.bar_shown
        c.param.update(error="broken")
        assert "broken" in ex.alert.object  # an error shows at once
        c.param.update(error="")  # (the line then shows the stage of that moment)
        c.param.update(status="first look from 1,024 samples; sampling 8,192")
        assert "first look from" not in ex.status.object
        c.param.trigger("results")  # new results: the status of that moment comes with them
        assert "first look from 1,024 samples" in ex.status.object and not ex.bar_shown
        c.param.update(status="sampling: 50%")
        assert "first look from 1,024 samples" in ex.status.object
        deadline = time.monotonic() + PROGRESS_AFTER_S + 5
        while not ex.bar_shown and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "sampling: 50%" in ex.status.object and ex.bar_shown
        c.param.update(status="sampling 8,192")
        assert "sampling 8,192" in ex.status.object  # the bar is up: every stage shows
    finally:
        c.param.update(busy=False, status="ready")
    assert "ready" in ex.status.object and not ex.bar_shown


def test_plots_are_not_redrawn_from_the_same_statistics(explorer):
    """A new snapshot (e.g. the full count after a first look) redraws only the plots whose
    statistics changed: the page would get the same figures again and repaint them."""
    import dataclasses

    c, ex, root = explorer
    view = ex.views["Superposition"]
    res = c.results
    assert res.complete
    view.active = True
    try:
        ex._apply(res, {}, 0)
        sent: list[str] = []
        for name, slot in view.slot.items():
            slot.show = (lambda orig, n: lambda obj: (sent.append(n), orig(obj))[1])(
                slot.show, name)
        # the same model and dictionary statistics, new sample statistics: nothing to redraw
        ex._apply(dataclasses.replace(res, stats=dataclasses.replace(res.stats)), {}, 0)
        assert sent == []
        # the expected rates gone (x values back to stored p) and no interference yet: those two
        ex._apply(dataclasses.replace(res, analytic=None), {}, 0)
        assert sorted(sent) == ["interference", "max_cos"]
        ex._apply(res, {}, 0)
        assert sorted(sent) == ["interference", "interference", "max_cos", "max_cos"]
    finally:
        for slot in view.slot.values():
            slot.__dict__.pop("show", None)
        view.active = False


def test_a_tabs_plots_share_one_recompute_of_the_pages_models(explorer, small_source):
    """Each plot's update ends by walking every Bokeh model of the page (0.05-0.1 s served):
    the plots a tab redraws share one such walk, which happens only when they changed which
    models the page holds (a new figure, new layers); updates in place and a tab that redraws
    nothing have none. New models are in the document after the draw."""
    import dataclasses

    from bokeh.document import Document
    from panel.io.state import set_curdoc

    c, _, _ = explorer
    ex = Explorer(controller=c)
    doc = Document()
    doc.add_root(ex.main.get_root(doc))  # in a document, as a served page is
    ex.tabs.active = list(ex.views).index("Superposition")  # the one tab that draws
    res = c.results
    walks: list[int] = []
    walk = doc.models.recompute
    doc.models.recompute = lambda: (walks.append(1), walk())[1]
    def figures():
        return [f for r in doc.roots for f in _figures(r)]

    def renderers():
        return {r.id for f in figures() for r in f.renderers}

    try:
        with set_curdoc(doc):
            ex._apply(res, {}, 0)
            walk()  # the tab's figures join the document, as on a served page
            walks.clear()
            # no expected rates and no interference: two plots redrawn, one a new figure (a
            # placeholder), one walk
            ex._apply(dataclasses.replace(res, analytic=None), {}, 0)
            assert len(walks) == 1
            # the same statistics again as a new snapshot: nothing redrawn, no walk
            ex._apply(dataclasses.replace(res, analytic=None, stats=res.stats), {}, 0)
            assert len(walks) == 1
            ex._apply(res, {}, 0)
            assert len(walks) == 2
            # a truncation: every plot of the tab updated in place, no walk (from a controller
            # of its own: this page draws nothing but what is given here)
            c2 = Controller(source=small_source, samples=1024, num_features=1024)
            assert c2.wait(WAIT) and c2.error == "", c2.error
            before = renderers()
            ex._apply(c2.results, {}, 0)
            assert len(walks) == 2
            assert renderers() == before
            assert any("rho_mm" in lg and f"{c2.results.superposition.rho_mm:.4f}" in lg
                       for f in figures() for lg in _legends(f))
            # compare to base: new layers (new renderers) in place, one walk, and the new
            # renderers are the document's
            c2.compare_base = True
            assert c2.wait(WAIT) and c2.error == "", c2.error
            ex._apply(c2.results, {}, 0)
            assert len(walks) == 3
            new = renderers() - before
            assert new and all(doc.get_model_by_id(i) is not None for i in new)
            c2.close()
    finally:
        del doc.models.recompute


def test_an_update_in_place_keeps_the_figures_layout(explorer):
    """A figure's layout properties must not change when its data does: any change to them
    makes the browser lay out the whole page and repaint every plot (the first update used to
    reset the pane's min_height on the figure)."""
    c, ex, root = explorer
    props = ("min_height", "height", "min_width", "width", "sizing_mode", "css_classes",
             "stylesheets", "visible")
    fig = _l0_figure(ex, root)
    before = {p: getattr(fig, p) for p in props}
    c.rel_p = 0.7
    assert c.wait(WAIT) and c.error == ""
    ex._apply(c.results, {}, 0)
    assert _l0_figure(ex, root) is fig
    assert {p: getattr(fig, p) for p in props} == before
    c.rel_p = 1.0
    assert c.wait(WAIT)
    ex._apply(c.results, {}, 0)


def test_a_slot_updated_in_place_follows_the_new_data_ranges():
    """Axes follow each new element (a DynamicMap keeps its first ranges otherwise), also when
    only some layers of an overlay change."""
    import holoviews as hv
    from bokeh.document import Document

    from synthviz.app.tab_base import PlotSlot

    slot = PlotSlot("t")
    doc = Document()
    root = slot.box.get_root(doc)

    def shown(x, y):
        return hv.Overlay([hv.Points((x, y), label="a"), hv.Curve(([0.0, 1.0], [0.0, 1.0]),
                                                                  label="b")])

    slot.show(shown([0.0, 1.0], [0.0, 1.0]))
    fig = _figures(slot.pane._models[root.ref["id"]][0])[0]
    slot.show(shown([5.0, 20.0], [3.0, 40.0]))
    assert _figures(slot.pane._models[root.ref["id"]][0])[0] is fig  # in place
    assert fig.x_range.end >= 20.0 and fig.y_range.end >= 40.0
    slot.show(shown([0.2, 0.5], [0.1, 0.3]))
    assert fig.x_range.end < 2.0 and fig.y_range.end < 2.0


def test_the_plots_go_out_before_the_export_check(explorer, monkeypatch):
    """The export check takes a new model 0.03 s and shows on the export tab only: the page's
    update does not wait for it, and the tab shows the new model's check once it comes."""
    import synthviz.app.views as views

    c, ex, root = explorer
    seen: list[bool] = []
    check = views.export_check_or_none

    def spy(model):
        seen.append(ex.views["L0"].results is not None
                    and ex.views["L0"].results.model is model)
        return check(model)
    monkeypatch.setattr(views, "export_check_or_none", spy)
    c.rel_p = 0.65
    assert c.wait(WAIT) and c.error == ""
    assert seen and all(seen), seen  # the views had the results when the check began
    want = views.export_check_or_none(c.results.model)
    assert ex.export.export_check.visible and want.message in ex.export.export_check.object
    c.rel_p = 1.0
    assert c.wait(WAIT)
