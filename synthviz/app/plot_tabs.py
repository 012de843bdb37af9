"""The explorer's tabs, one `pn.viewable.Viewer` each, and `TAB_VIEWS`, the list the page is
built from.

The plot tabs come from the plot registry (`synthviz.plots.registry.PLOTS`): each registry tab
is a `PlotTab` that draws its entries from the `Results` it is bound to, so a new plot needs no
change here. Another kind of tab is one more line in `TAB_VIEWS` (a title and a Viewer class);
the page gives each view the controller (when it has a `controller` param), the results
(`results`) and whether it is shown (`active`), so a view only needs the params it uses.
"""

from __future__ import annotations

import panel as pn
import param

from synthviz.app.results import Results
from synthviz.app.sae_tab import SAEView
from synthviz.app.tab_base import TabView
from synthviz.plots.registry import PLOTS, tree_root_for

COOC_NOTE = (
    "**Colours.** Red: the pair fires together more often than if independent (lift > 1); "
    "blue: less often. Darkest blue: never together, which includes mutually exclusive (ME) "
    "siblings: those are drawn dark blue at any sample count, since they can never co-fire. "
    "Light grey: the diagonal (a feature with itself) and pairs with fewer than 10 expected joint "
    "counts, too few to estimate (more samples shrink the grey).")


class PlotTab(TabView):
    """A tab that draws the registry's plots for its `tab` title, in registration order.
    Subclasses add the view settings their plots read (as params named like the options)."""

    tab: str = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.tab:
            specs = PLOTS.for_tab(cls.tab)
            cls.slots = tuple(s.name for s in specs)
            cls.in_place = tuple(s.name for s in specs if s.in_place)

    def tab_note(self, res) -> str:
        """A line above the plots (e.g. how to read them); "" for none."""
        return ""

    def draw(self, res) -> None:
        self.set_note(self.tab_note(res))
        for spec in PLOTS.for_tab(self.tab):
            self.show_spec(spec, res, {k: getattr(self, k) for k in spec.options})


class CooccurrenceView(PlotTab):
    tab = "Co-occurrence"
    measure = param.Selector(default="lift", objects=["lift", "phi", "npmi"])

    def tab_note(self, res) -> str:
        return COOC_NOTE


class HierarchyView(PlotTab):
    tab = "Hierarchy"
    tree_root = param.Integer(default=0, doc="a feature whose tree is drawn")

    def tab_note(self, res) -> str:
        _, why = tree_root_for(res.model.forest, self.tree_root)
        return f"**Tree:** {why}" if why else ""


def tab_view(title: str) -> type:
    """The Viewer class of a registry tab: its own class where it has view settings."""
    own = {cls.tab: cls for cls in (CooccurrenceView, HierarchyView)}
    if title in own:
        return own[title]
    return type(f"{title.replace('-', '')}View", (PlotTab,), {"tab": title})


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


# The page's tabs, in order: (title, Viewer class): the plot registry's tabs, then the SAE tab.
TAB_VIEWS: list[tuple[str, type]] = [
    *((title, tab_view(title)) for title in PLOTS.tabs()),
    ("SAE", SAETab),
]
