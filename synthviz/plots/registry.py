"""The registry of plots: each entry is (name, tab, statistics -> HoloViews element).

The app's tabs and the notebooks iterate `PLOTS`, so a new plot is one module
(`synthviz/plots/NAME.py` with a pure `create_*_plot`) and one `PLOTS.register(...)` line below.

An entry's `make(results, options)` reads what it needs from a results snapshot (duck-typed;
the app's `synthviz.app.results.Results` is one) and returns an element, or None when the plot
does not apply (e.g. a base-only plot while nothing is compared). The snapshot has: `model`,
`stats` (sampled: `l0`, `firing`, `cooccurrence`, `magnitudes`, `errors`), `firing` (with
expected rates once known), `expected_l0`, `analytic` (`interference`, `errors`, or None),
`superposition`, `settings` (a dict with `first_k`), and the same for the base (`base_model`,
`base_stats`, `base_firing`, `base_analytic`, `base_superposition`, each None when not compared).
`options` holds the view settings an entry lists in `options` (e.g. the co-occurrence measure).

Nothing here imports Panel: the registry is pure data about pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthviz.plots._style import empty
from synthviz.plots.cooccurrence import create_cooccurrence_plot
from synthviz.plots.frequencies import create_frequency_plot
from synthviz.plots.hierarchy import create_forest_summary_plot, create_tree_plot
from synthviz.plots.l0 import create_l0_plot
from synthviz.plots.magnitudes import create_magnitude_panel
from synthviz.plots.superposition import (create_cos_histogram, create_interference_plot,
                                          create_max_cos_scatter)

Make = Callable[[Any, Mapping[str, Any]], Any]


@dataclass(frozen=True)
class PlotSpec:
    """One plot: its `name` (unique), the `tab` it appears on, and `make(results, options)`."""
    name: str
    tab: str
    make: Make
    options: tuple[str, ...] = ()  # view settings `make` reads from `options`
    # the app updates the figure in place (data, title, legend); False: a new figure per
    # update (heatmaps and graphs, whose categorical axes and layouts change with the data)
    in_place: bool = False
    doc: str = ""
    # the objects `make` reads from the results, or None for "everything": a view does not
    # redraw an entry while they are the same objects (e.g. the dictionary's statistics when
    # only the sample count grew)
    reads: Callable[[Any], tuple] | None = None

    def create(self, results, **options):
        """The element for `results` (None: the plot does not apply to them)."""
        return self.make(results, options)


def same_reads(a: tuple | None, b: tuple | None) -> bool:
    """Whether two `PlotSpec.reads` tuples name the same objects (scalars compare equal)."""
    if a is None or b is None or len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, tuple) and isinstance(y, tuple):
            if not same_reads(x, y):
                return False
        elif x is not y and not (isinstance(x, (str, int, float)) and x == y):
            return False
    return True


class PlotRegistry:
    """Plots in registration order; the order of first appearance gives the tabs' order."""

    def __init__(self) -> None:
        self._specs: dict[str, PlotSpec] = {}

    def register(self, name: str, tab: str, make: Make, **kw) -> PlotSpec:
        if name in self._specs:
            raise ValueError(f"plot {name!r} is already registered")
        spec = self._specs[name] = PlotSpec(name, tab, make, **kw)
        return spec

    def copy(self) -> PlotRegistry:
        """A new registry holding the same entries (to add to without changing this one)."""
        out = PlotRegistry()
        out._specs = dict(self._specs)
        return out

    def get(self, name: str) -> PlotSpec:
        return self._specs[name]

    def __iter__(self) -> Iterator[PlotSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> list[str]:
        return list(self._specs)

    def tabs(self) -> list[str]:
        return list(dict.fromkeys(s.tab for s in self))

    def for_tab(self, tab: str) -> list[PlotSpec]:
        return [s for s in self if s.tab == tab]


# ---------------------------------------------------------------------- helpers of the entries

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
    return int(forest.tree_root[f]), ""


def _l0(r, o):
    b = r.base_stats
    return create_l0_plot(r.stats.l0, r.expected_l0, r.settings["first_k"],
                          base=None if b is None else b.l0)


def _cooc(model, stats, measure, title):
    if stats.cooccurrence is None:
        return empty(stats.errors.get("cooccurrence", "no co-occurrence statistics"))
    me = me_sibling_pairs(model.forest, stats.cooccurrence.features)
    return create_cooccurrence_plot(stats.cooccurrence, measure, title=title, me_pairs=me)


def _cooc_base(r, o):
    if r.base_stats is None:
        return None
    return _cooc(r.base_model, r.base_stats, o.get("measure", "lift"),
                 "base model, same feature set")


def _tree(model, stats, root, title):
    from synthviz.hierarchy import groups_above
    from synthviz.stats.hierarchy_stats import tree_table
    if root is None:
        return empty("this model has no hierarchy")
    rates = stats.firing.empirical_rate
    return create_tree_plot(tree_table(model.forest, root, rates), title=title,
                            above=groups_above(model.forest, root, rates))


def _tree_base(r, o):
    if r.base_model is None or r.base_stats is None:
        return None
    root, _ = tree_root_for(r.base_model.forest, o.get("tree_root", 0))
    return _tree(r.base_model, r.base_stats, root, f"base: tree of root {root}")


def _forest(r, o):
    from synthviz.stats.hierarchy_stats import forest_summary
    m, bm = r.model, r.base_model
    summary = None if m.forest is None else forest_summary(m.forest, m.num_features)
    base = None if bm is None or bm.forest is None else forest_summary(bm.forest, bm.num_features)
    return create_forest_summary_plot(summary, base)


def _x_rates(firing, model):
    """Expected rates once known; the stored probabilities until then."""
    import torch
    ex = firing.expected_rate
    return ex if bool(torch.isfinite(ex).all()) else model.firing_probabilities


def _max_cos(r, o):
    return create_max_cos_scatter(
        r.superposition, _x_rates(r.firing, r.model), r.base_superposition,
        None if r.base_model is None else _x_rates(r.base_firing, r.base_model))


def _interference_reads(a) -> tuple:
    return (None, None) if a is None else (a.interference, a.errors.get("interference", ""))


def _interference(r, o):
    a, ba = r.analytic, r.base_analytic
    if a is None:
        return empty("measuring interference…")
    if a.interference is None:
        return empty("interference: " + a.errors.get("interference", "not measured"))
    return create_interference_plot(a.interference, None if ba is None else ba.interference)


def _magnitude_panel(relative: bool) -> Make:
    def make(r, o):
        s, b = r.stats, r.base_stats
        if s.magnitudes is None:
            return None if relative else \
                empty("magnitudes: " + s.errors.get("magnitudes", "not measured"))
        return create_magnitude_panel(s.magnitudes, None if b is None else b.magnitudes,
                                      relative=relative)
    return make


# ---------------------------------------------------------------------- the registry
PLOTS = PlotRegistry()
PLOTS.register("l0", "L0", _l0, in_place=True, doc="L0 per sample, with the expected values")
PLOTS.register("frequencies", "Frequencies",
               lambda r, o: create_frequency_plot(r.firing, base=r.base_firing), in_place=True,
               doc="firing rate by rank: measured, expected and stored p")
PLOTS.register("cooccurrence", "Co-occurrence",
               lambda r, o: _cooc(r.model, r.stats, o.get("measure", "lift"), None),
               options=("measure",), doc="pairwise co-occurrence of a feature set")
PLOTS.register("cooccurrence_base", "Co-occurrence", _cooc_base, options=("measure",),
               doc="the same feature set in the base model (when compared)")
PLOTS.register("tree", "Hierarchy",
               lambda r, o: _tree(r.model, r.stats,
                                  tree_root_for(r.model.forest, o.get("tree_root", 0))[0], None),
               options=("tree_root",), doc="the tree holding a feature, coloured by rate")
PLOTS.register("tree_base", "Hierarchy", _tree_base, options=("tree_root",),
               doc="the same tree in the base model (when compared)")
PLOTS.register("forest", "Hierarchy", _forest, doc="the forest's shape by depth",
               reads=lambda r: (r.model.forest, r.model.num_features,
                                None if r.base_model is None else r.base_model.forest))
PLOTS.register("cos_hist", "Superposition",
               lambda r, o: create_cos_histogram(r.superposition, r.base_superposition),
               in_place=True, doc="histogram of |cos| between feature directions",
               reads=lambda r: (r.superposition, r.base_superposition))
PLOTS.register("max_cos", "Superposition", _max_cos, in_place=True,
               doc="each feature's max |cos| against its rate",
               # the x values are the model's expected rates once known (else its stored p)
               reads=lambda r: (r.superposition, r.model, r.analytic is None,
                                r.base_superposition, r.base_model, r.base_analytic is None))
PLOTS.register("interference", "Superposition", _interference, in_place=True,
               doc="readout error of active and inactive features",
               reads=lambda r: (_interference_reads(r.analytic),
                                _interference_reads(r.base_analytic)))
PLOTS.register("magnitudes", "Magnitudes", _magnitude_panel(False), in_place=True,
               doc="magnitudes of active features, by depth")
PLOTS.register("magnitudes_relative", "Magnitudes", _magnitude_panel(True), in_place=True,
               doc="magnitudes relative to each feature's mean")
