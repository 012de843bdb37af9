"""The plot registry: every entry draws from a results snapshot, the app's tabs are built from
it (a new registration is a new plot on its tab), and the registry needs no Panel."""

from __future__ import annotations

import holoviews as hv
import pytest

from synthviz.plots.registry import PLOTS, PlotRegistry


@pytest.fixture(scope="module")
def small_results(small_source):
    from synthviz.app.results import results_for
    from synthviz.app.store import SampleSettings
    from synthviz.sources import load
    model = load(small_source, device="cpu")
    return results_for(model, SampleSettings(samples=1024), base=model)


def test_every_registered_plot_draws_an_element(small_results):
    assert len(PLOTS) >= 12 and PLOTS.tabs()[:2] == ["L0", "Frequencies"]
    for spec in PLOTS:
        el = spec.create(small_results, **{k: v for k, v in
                                          {"measure": "phi", "tree_root": 0}.items()
                                          if k in spec.options})
        assert isinstance(el, hv.core.Dimensioned), (spec.name, el)
        # a real plot, not the "could not draw" placeholder text
        assert not isinstance(el, hv.Text), (spec.name, el)


def test_base_only_plots_are_none_without_a_base(small_results):
    import dataclasses
    alone = dataclasses.replace(small_results, base_model=None, base_stats=None,
                                base_analytic=None, base_superposition=None)
    for name in ("cooccurrence_base", "tree_base"):
        assert PLOTS.get(name).create(alone) is None
    assert PLOTS.get("l0").create(alone) is not None


def test_duplicate_names_are_refused():
    reg = PlotRegistry()
    reg.register("a", "T", lambda r, o: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", "U", lambda r, o: None)
    reg.register("b", "U", lambda r, o: None)
    reg.register("c", "T", lambda r, o: None)
    assert reg.tabs() == ["T", "U"] and [s.name for s in reg.for_tab("T")] == ["a", "c"]


def test_app_tabs_are_the_registry(monkeypatch):
    from synthviz.app import plot_tabs
    titles = [t for t, _ in plot_tabs.TAB_VIEWS]
    assert titles[:len(PLOTS.tabs())] == PLOTS.tabs()
    for title, cls in plot_tabs.TAB_VIEWS:
        if title in PLOTS.tabs():
            assert cls.slots == tuple(s.name for s in PLOTS.for_tab(title))
    # one registration adds a plot to its tab's view
    reg = PlotRegistry()
    for s in PLOTS:
        reg.register(s.name, s.tab, s.make, options=s.options, in_place=s.in_place)
    reg.register("extra", "L0", lambda r, o: hv.Curve([(0, 0), (1, r.stats.l0.mean)]))
    monkeypatch.setattr(plot_tabs, "PLOTS", reg)
    assert plot_tabs.tab_view("L0").slots == ("l0", "extra")


def test_registry_imports_no_panel():
    """HoloViews itself loads Panel, so the check is on the source: neither the registry nor a
    plot module imports Panel (the plots stay usable, and testable, outside the app)."""
    import ast
    from pathlib import Path

    import synthviz.plots
    for path in Path(synthviz.plots.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "panel" or n.startswith("panel.") for n in names), path.name
