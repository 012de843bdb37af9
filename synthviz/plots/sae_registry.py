"""The registry of the SAE tab's plots (`SAE_PLOTS`, the same `PlotRegistry` as `PLOTS`): each
entry's `make(sae_results, options)` reads a `synthviz.sae.results.SAEResults` snapshot and the
view settings `metric` ("f1", "recall" or "precision") and `tree_root` (a root feature, or None
for the tree holding the largest absorption gap), and returns a HoloViews element. Before any
evaluation (`sae_results` None) each entry returns its "no SAE evaluation yet" placeholder.

The app's SAE tab draws these entries in registration order and notebook 05 iterates them, so a
new SAE plot is one `create_*_plot` module and one `SAE_PLOTS.register(...)` line below.
Nothing here imports Panel."""

from __future__ import annotations

from synthviz.plots._style import empty
from synthviz.plots.registry import PlotRegistry
from synthviz.plots.sae_cosine import create_cosine_plot
from synthviz.plots.sae_recovery import create_recovery_plot
from synthviz.plots.sae_tree import create_sae_tree_plot
from synthviz.sae.view_stats import most_absorbed_root, sae_tree_table

TAB = "SAE"
NOT_YET = "no SAE evaluation yet"
NO_TREE = "no tree: this model has no hierarchy, or the root chosen is not a tree root"


def _recovery(r, o):
    if r is None:
        return empty(NOT_YET)
    return create_recovery_plot(r.current.features, o.get("metric", "f1"),
                                base=None if r.base is None else r.base.features)


def tree_root_shown(r, tree_root: int | None) -> int | None:
    """The root of the tree the SAE tree plot shows: `tree_root`, or the most absorbed tree."""
    if tree_root is not None:
        return int(tree_root)
    return most_absorbed_root(r.forest, r.current.edges)


def _tree(r, o):
    if r is None:
        return empty(NOT_YET)
    forest, metric = r.forest, o.get("metric", "f1")
    root = tree_root_shown(r, o.get("tree_root"))
    if forest is None or root is None or root not in forest.children:
        return empty(NO_TREE)
    return create_sae_tree_plot(sae_tree_table(forest, root, r.current.features,
                                               r.current.edges, metric), metric=metric)


def _cosine(r, o):
    return empty(NOT_YET) if r is None else create_cosine_plot(r.cosine)


SAE_PLOTS = PlotRegistry()
SAE_PLOTS.register("sae_recovery", TAB, _recovery, options=("metric",),
                   doc="each feature's best-latent recovery against its firing rate (the base "
                       "as binned means, when compared)")
SAE_PLOTS.register("sae_tree", TAB, _tree, options=("metric", "tree_root"),
                   doc="one tree coloured by recovery, with the absorption gap on its edges")
SAE_PLOTS.register("sae_cosine", TAB, _cosine,
                   doc="|cos| of the best-matched latents against their features, by match")
