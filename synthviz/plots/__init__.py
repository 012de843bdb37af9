"""HoloViews plots (Bokeh backend), one module per plot type; each `create_*` function is a pure
function of a statistic from `synthviz.stats` and returns a HoloViews element. `PLOTS`
(`synthviz.plots.registry`) lists them with the tab they appear on: the app and the notebooks
iterate it, so a new plot is one module and one registration there."""

from synthviz.plots._style import empty
from synthviz.plots.cooccurrence import create_cooccurrence_plot
from synthviz.plots.frequencies import create_frequency_plot
from synthviz.plots.hierarchy import create_forest_summary_plot, create_tree_plot, tidy_layout
from synthviz.plots.l0 import create_l0_plot
from synthviz.plots.magnitudes import create_magnitude_panels, create_magnitude_plot
from synthviz.plots.registry import PLOTS, PlotRegistry, PlotSpec
from synthviz.plots.superposition import (create_cos_histogram, create_interference_plot,
                                          create_max_cos_scatter)

__all__ = ["PLOTS", "PlotRegistry", "PlotSpec", "create_cooccurrence_plot", "create_cos_histogram", "create_forest_summary_plot",
           "create_frequency_plot", "create_interference_plot", "create_l0_plot",
           "create_magnitude_panels", "create_magnitude_plot", "create_max_cos_scatter", "create_tree_plot", "empty",
           "tidy_layout"]
