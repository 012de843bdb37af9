"""Statistics behind every plot: pure functions and streaming accumulators over torch tensors.

No Panel or HoloViews here. Accumulators take batches of sparse samples (rows, cols, values) so a
million samples never need to be held in memory at once; `collect(model, n_samples, accumulators)`
samples and feeds them. Modules:

- `l0`: L0Accumulator / L0Stats, expected_l0
- `frequencies`: FiringAccumulator / FiringStats, expected_rates
- `cooccurrence`: select_features, CooccurrenceAccumulator / CooccurrenceStats, implied_phi
- `hierarchy_stats`: forest_summary, tree_table; `validity`: validity_counts, ValidityAccumulator
- `superposition`: superposition_stats / SuperpositionStats
- `interference`: InterferenceAccumulator / InterferenceStats (readout noise on samples)
- `magnitudes`: MagnitudeAccumulator / MagnitudeStats
- `analytic`: the no-sampling expectations (rates, bivariate normal orthants, ME win probability)
- `summary`: summarize (the headline numbers of `synthviz stats --json`)
"""

from synthviz.stats.analytic import expected_l0, expected_rates, implied_phi
from synthviz.stats.cooccurrence import (CooccurrenceAccumulator, CooccurrenceStats,
                                         select_features)
from synthviz.stats.frequencies import FiringAccumulator, FiringStats
from synthviz.stats.hierarchy_stats import ForestSummary, forest_summary, tree_table
from synthviz.stats.l0 import L0Accumulator, L0Stats
from synthviz.stats.magnitudes import MagnitudeAccumulator, MagnitudeStats
from synthviz.stats.stream import collect, entries_from_dense, feed
from synthviz.stats.interference import InterferenceAccumulator, InterferenceStats
from synthviz.stats.superposition import SuperpositionStats, superposition_stats
from synthviz.stats.validity import ValidityAccumulator, ValidityStats, validity_counts

__all__ = [
    "CooccurrenceAccumulator", "CooccurrenceStats", "FiringAccumulator", "FiringStats",
    "ForestSummary", "InterferenceAccumulator", "InterferenceStats", "L0Accumulator", "L0Stats",
    "MagnitudeAccumulator", "MagnitudeStats", "SuperpositionStats", "ValidityAccumulator",
    "ValidityStats", "collect", "entries_from_dense", "expected_l0", "expected_rates", "feed",
    "forest_summary", "implied_phi", "select_features", "superposition_stats", "tree_table",
    "validity_counts",
]
