"""Headline numbers for `synthviz stats --json` and the app's cards, streamed over batches."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from synthviz.stats.validity import validity_counts

BATCH = 4096


def rho_mm(vectors: torch.Tensor, chunk: int = 2048) -> float:
    """Mean over features of the largest |cos| with any other feature (exact, chunked)."""
    v = vectors.float()
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)
    n = v.shape[0]
    best = torch.empty(n)
    for i in range(0, n, chunk):
        c = (v[i:i + chunk] @ v.T).abs_()
        idx = torch.arange(c.shape[0])
        c[idx, idx + i] = -1.0
        best[i:i + chunk] = c.max(dim=1).values
    return float(best.mean())


def summarize(model, n_samples: int = 100_000, first_k: int = 4096, seed: int | None = 0,
              progress: Callable[[int, int], None] | None = None) -> dict:
    gen = torch.Generator(device=model.device).manual_seed(seed) if seed is not None else None
    n = model.num_features
    total = l0 = l0k = me_v = orph = 0
    s1 = s2 = 0.0
    n_act = 0
    while total < n_samples:
        b = min(BATCH, n_samples - total)
        _, rows, cols, vals = model.sample_entries(b, generator=gen)
        l0 += cols.numel()
        l0k += int((cols < first_k).sum())
        v = vals.double()
        s1 += float(v.sum())
        s2 += float((v * v).sum())
        n_act += v.numel()
        a, o = validity_counts(model.forest, rows, cols, n)
        me_v += a
        orph += o
        total += b
        if progress:
            progress(total, n_samples)
    mean = s1 / max(n_act, 1)
    var = max(s2 / max(n_act, 1) - mean * mean, 0.0) * n_act / max(n_act - 1, 1)
    return {
        "num_features": n,
        "hidden_dim": model.hidden_dim,
        "samples": total,
        "l0_mean": l0 / total,
        f"l0_first_{first_k}": l0k / total,
        **({"l0_first_4096": l0k / total} if first_k == 4096 else {}),
        "rho_mm": rho_mm(model.feature_vectors),
        "active_magnitude_std": math.sqrt(var),
        "me_violations": me_v,
        "orphan_children": orph,
    }
