"""Hierarchy compensation (each child's p divided by its parent's, ME children raised by their
siblings' share) equals sae_lens's `compute_probability_correction_factors` bit for bit, for
generated forests, their truncations and probabilities that include zeros and ones."""

from __future__ import annotations

import pytest
import torch

from synthviz.config import HierarchyConfig
from synthviz.hierarchy import Forest, generate_forest

FORESTS = [  # (features, roots, branching, max depth, ME portion)
    (300, 20, 4, 3, 1.0),
    (1000, 30, (2, 9), 4, 0.6),
    (2048, 1, (3, 17), 3, 1.0),
    (500, 600, 4, 3, 1.0),  # more roots than features: no trees
]


def _probabilities(n: int, seed: int, dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(n, generator=g, dtype=torch.float64) ** 3  # many small ones, as Zipf gives
    p[torch.randperm(n, generator=g)[: n // 20]] = 0.0  # a parent at 0 takes no factor
    p[torch.randperm(n, generator=g)[: n // 50]] = 1.0
    return p.to(dtype)


def _sae_lens(forest: Forest, p: torch.Tensor) -> torch.Tensor:
    from sae_lens.synthetic.hierarchy import Hierarchy
    return Hierarchy.from_dict(forest.to_dict()).compute_probability_correction_factors(p)


@pytest.mark.parametrize("case", FORESTS, ids=lambda c: f"n{c[0]}-roots{c[1]}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compensation_is_sae_lens_bit_for_bit(case, dtype):
    n, roots, branching, depth, me = case
    forest = generate_forest(n, HierarchyConfig(total_root_nodes=roots, branching_factor=branching,
                                                max_depth=depth, mutually_exclusive_portion=me),
                             seed=n)
    for cut in sorted({n, n // 2 + 1, n // 3, 7}):
        f = forest.truncate(cut) if cut < n else forest
        p = _probabilities(cut, cut, dtype)
        ours = f.probability_correction(p)
        assert ours.dtype == dtype
        assert torch.equal(ours, _sae_lens(f, p)), (cut, int((ours != _sae_lens(f, p)).sum()))
