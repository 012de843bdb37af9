"""Statistics behind every plot: pure functions and streaming accumulators over torch tensors.

No Panel or HoloViews here. Accumulators take batches of sparse samples (rows, cols, values)
so a million samples never need to be held in memory at once.
"""
