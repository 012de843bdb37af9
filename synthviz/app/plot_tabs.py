"""The explorer's plot tabs, one `TabView` each, and `TAB_VIEWS`, the list the page is built from.

Each view draws pure `synthviz.plots.create_*` elements from the `Results` it is bound to. To
add a tab, append one line to `TAB_VIEWS` (a title and a `pn.viewable.Viewer` class); the page
gives each view the controller (when it has a `controller` param), the results (`results`) and
whether it is shown (`active`), so a view only needs the params it uses.
"""

from __future__ import annotations

import logging

import numpy as np
import panel as pn
import param

from synthviz.app.controller import Results
from synthviz.app.sae_tab import SAEView
from synthviz.app.tab_base import TabView

log = logging.getLogger(__name__)

COOC_NOTE = (
    "**Colours.** Red: the pair fires together more often than if independent (lift > 1); "
    "blue: less often. Darkest blue: never together, which includes mutually exclusive (ME) "
    "siblings: those are drawn dark blue at any sample count, since they can never co-fire. "
    "Light grey: the diagonal (a feature with itself) and pairs with fewer than 10 expected joint "
    "counts, too few to estimate (more samples shrink the grey).")


def _safe(view: TabView, name: str, make) -> None:
    """One plot failing becomes a message in its slot rather than taking the tab down."""
    from synthviz import plots
    try:
        obj = make()
    except Exception as exc:
        log.exception("plot %s failed", name)
        obj = plots.empty(f"{name}: {type(exc).__name__}: {exc}")
    view.slot[name].show(obj)


class L0View(TabView):
    slots = ("l0",)
    in_place = ("l0",)  # bars and lines, no WebGL glyphs: updated in place

    def draw(self, res) -> None:
        from synthviz import plots
        b = res.base_stats
        _safe(self, "l0", lambda: plots.create_l0_plot(
            res.stats.l0, res.expected_l0, res.settings["first_k"],
            base=None if b is None else b.l0))


class FrequenciesView(TabView):
    slots = ("frequencies",)

    def draw(self, res) -> None:
        from synthviz import plots
        _safe(self, "frequencies",
              lambda: plots.create_frequency_plot(res.firing, base=res.base_firing))


def me_sibling_pairs(forest, features) -> np.ndarray:
    """[k, k] bool: features i and j are children of the same ME parent."""
    feats = [int(f) for f in features]
    k = len(feats)
    out = np.zeros((k, k), bool)
    if forest is None or not forest.me:
        return out
    parent = forest.parent
    par = [int(parent[f]) if 0 <= f < forest.num_features else -1 for f in feats]
    for i in range(k):
        if par[i] < 0 or par[i] not in forest.me:
            continue
        for j in range(k):
            if i != j and par[j] == par[i]:
                out[i, j] = True
    return out


class CooccurrenceView(TabView):
    slots = ("cooccurrence", "cooccurrence_base")
    measure = param.Selector(default="lift", objects=["lift", "phi", "npmi"])

    def draw(self, res) -> None:
        self.set_note(COOC_NOTE)
        _safe(self, "cooccurrence", lambda: self._cooc(res.model, res.stats, None))
        if res.base_stats is None:
            self.slot["cooccurrence_base"].show(None)
        else:
            _safe(self, "cooccurrence_base", lambda: self._cooc(
                res.base_model, res.base_stats, "base model, same feature set"))

    def _cooc(self, model, stats, title):
        from synthviz import plots
        if stats.cooccurrence is None:
            return plots.empty(stats.errors.get("cooccurrence", "no co-occurrence statistics"))
        me = me_sibling_pairs(model.forest, stats.cooccurrence.features)
        return plots.create_cooccurrence_plot(stats.cooccurrence, self.measure, title=title,
                                              me_pairs=me)


def tree_root_for(forest, feature: int) -> tuple[int | None, str]:
    """(root of the tree holding `feature`, why another root is shown instead ("" if none)).
    A feature outside every tree, or beyond N, shows the first tree with a message saying so."""
    if forest is None or not forest.roots:
        return None, "this model has no hierarchy"
    f = int(feature)
    first = forest.roots[0]
    if not 0 <= f < forest.num_features:
        return first, (f"feature {f} does not exist (this model has {forest.num_features:,} "
                       f"features, 0 to {forest.num_features - 1:,}): showing the first tree, "
                       f"root {first}")
    if int(forest.depth[f]) < 0:
        return first, (f"feature {f} is outside every tree: showing the first tree, root {first}")
    parent = forest.parent
    while int(parent[f]) >= 0:
        f = int(parent[f])
    return f, ""


class HierarchyView(TabView):
    slots = ("tree", "tree_base", "forest")
    tree_root = param.Integer(default=0, doc="a feature whose tree is drawn")

    def draw(self, res) -> None:
        from synthviz import plots
        from synthviz.stats.hierarchy_stats import forest_summary
        root, why = tree_root_for(res.model.forest, self.tree_root)
        self.set_note(f"**Tree:** {why}" if why else "")
        _safe(self, "tree", lambda: self._tree(res.model, res.stats, root, None))
        if res.base_model is None or res.base_stats is None:
            self.slot["tree_base"].show(None)
        else:
            broot, _ = tree_root_for(res.base_model.forest, self.tree_root)
            _safe(self, "tree_base", lambda: self._tree(res.base_model, res.base_stats, broot,
                                                        f"base: tree of root {broot}"))

        def forest():
            m, bm = res.model, res.base_model
            summary = None if m.forest is None else forest_summary(m.forest, m.num_features)
            base = None
            if bm is not None and bm.forest is not None:
                base = forest_summary(bm.forest, bm.num_features)
            return plots.create_forest_summary_plot(summary, base)
        _safe(self, "forest", forest)

    @staticmethod
    def _tree(model, stats, root, title):
        from synthviz import plots
        from synthviz.hierarchy import groups_above
        from synthviz.stats.hierarchy_stats import tree_table
        if root is None:
            return plots.empty("this model has no hierarchy")
        rates = stats.firing.empirical_rate
        return plots.create_tree_plot(tree_table(model.forest, root, rates), title=title,
                                      above=groups_above(model.forest, root, rates))


def _x_rates(firing, model):
    """Expected rates once known; the stored probabilities until then."""
    import torch
    ex = firing.expected_rate
    return ex if bool(torch.isfinite(ex).all()) else model.firing_probabilities


class SuperpositionView(TabView):
    slots = ("cos_hist", "max_cos", "interference")

    def draw(self, res) -> None:
        from synthviz import plots
        a, ba = res.analytic, res.base_analytic
        _safe(self, "cos_hist", lambda: plots.create_cos_histogram(
            res.superposition, res.base_superposition))
        _safe(self, "max_cos", lambda: plots.create_max_cos_scatter(
            res.superposition, _x_rates(res.firing, res.model), res.base_superposition,
            None if res.base_model is None else _x_rates(res.base_firing, res.base_model)))

        def interference():
            if a is None:
                return plots.empty("measuring interference…")
            if a.interference is None:
                return plots.empty("interference: " + a.errors.get("interference",
                                                                   "not measured"))
            return plots.create_interference_plot(
                a.interference, None if ba is None else ba.interference)
        _safe(self, "interference", interference)


class MagnitudesView(TabView):
    slots = ("magnitudes", "magnitudes_relative")

    def draw(self, res) -> None:
        from synthviz import plots
        s, b = res.stats, res.base_stats
        if s.magnitudes is None:
            self.slot["magnitudes"].show(plots.empty(
                "magnitudes: " + s.errors.get("magnitudes", "not measured")))
            self.slot["magnitudes_relative"].show(None)
            return
        try:
            panels = plots.create_magnitude_panels(s.magnitudes,
                                                   None if b is None else b.magnitudes)
        except Exception as exc:
            log.exception("magnitude plots failed")
            panels = [plots.empty(f"magnitudes: {type(exc).__name__}: {exc}")]
        self.slot["magnitudes"].show(panels[0])
        self.slot["magnitudes_relative"].show(panels[1] if len(panels) > 1 else None)


# The page's plot tabs, in order: (title, Viewer class). Another tab is one more line here.
class SAETab(pn.viewable.Viewer):
    """The SAE tab: an `SAEView` that follows the current model (and the base, when compared).
    Evaluation starts only from the tab's own button, so a model change never starts one."""

    results = param.ClassSelector(class_=Results, allow_None=True)
    active = param.Boolean(default=False)

    def __init__(self, **params):
        super().__init__(**params)
        self.view = SAEView()
        self.param.watch(self._follow, ["results"])

    def _follow(self, event) -> None:
        res = event.new
        if res is not None:
            self.view.param.update(model=res.model, base=res.base_model)

    def __panel__(self):
        return self.view


TAB_VIEWS: list[tuple[str, type]] = [
    ("L0", L0View),
    ("Frequencies", FrequenciesView),
    ("Co-occurrence", CooccurrenceView),
    ("Hierarchy", HierarchyView),
    ("Superposition", SuperpositionView),
    ("Magnitudes", MagnitudesView),
    ("SAE", SAETab),
]
