"""Hierarchy validity counters measured on samples: ME violations and orphan children."""

from __future__ import annotations

import torch

from synthviz.hierarchy import Forest


def validity_counts(forest: Forest | None, rows: torch.Tensor, cols: torch.Tensor, n: int
                    ) -> tuple[int, int]:
    """(me_violations, orphan_children) for one batch of active entries.

    me_violations: (sample, ME parent) pairs with more than one active child.
    orphan_children: (sample, child) pairs active while the parent is inactive.
    """
    if forest is None or rows.numel() == 0:
        return 0, 0
    dev = rows.device
    parent = forest.parent.to(dev)[cols]
    has_parent = parent >= 0
    keys = torch.sort(rows * n + cols).values
    r, par = rows[has_parent], parent[has_parent]
    want = r * n + par
    pos = torch.searchsorted(keys, want).clamp(max=keys.numel() - 1)
    orphans = int((keys[pos] != want).sum())
    me = forest.me_mask.to(dev)[par]
    groups = (r * n + par)[me]
    if groups.numel() == 0:
        return 0, orphans
    _, counts = torch.unique(groups, return_counts=True)
    return int((counts > 1).sum()), orphans
