"""The sampling driver: draws batches from a model and feeds every accumulator the same batches.

An accumulator has `update(rows, cols, values, batch_size)` (the active entries of one batch, rows
counted from 0 within the batch) and `result()`. Optional hooks:
- `bind(model)`: called once before sampling, for accumulators that need the model's tensors
  (stored probabilities, expected rates, histogram ranges);
- `needs_hidden = True`: `update` is also given `hidden=` [B, D] (the decoded activations).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from synthviz.errors import ConfigError, Progress



def feed(accumulators: Sequence, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor,
         batch_size: int, hidden: torch.Tensor | None = None) -> None:
    """Give one batch to every accumulator."""
    for acc in accumulators:
        if getattr(acc, "needs_hidden", False):
            acc.update(rows, cols, values, batch_size, hidden=hidden)
        else:
            acc.update(rows, cols, values, batch_size)


@torch.no_grad()
def collect(model, n_samples: int, accumulators, seed: int | None = 0, batch_size: int = 4096,
            progress: Progress | None = None, method: str = "sparse"):
    """Sample `n_samples` from `model` in batches and feed `accumulators` (one or a list).

    Returns the accumulators' results (a list in the same order, or one result when a single
    accumulator was given). progress(done, n_samples) is called after every batch.
    """
    single = not isinstance(accumulators, (list, tuple))
    accs = [accumulators] if single else list(accumulators)
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigError(f"sample count must be a positive integer, got {n_samples!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch size must be a positive integer, got {batch_size!r}")
    for acc in accs:
        bind = getattr(acc, "bind", None)
        if bind is not None:
            bind(model)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=model.device).manual_seed(int(seed))
    done = 0
    while done < n_samples:
        b = min(batch_size, n_samples - done)
        hidden, rows, cols, vals = model.sample_entries(b, generator=gen, method=method)
        feed(accs, rows, cols, vals, b, hidden)
        done += b
        if progress is not None:
            progress(done, n_samples)
    results = [acc.result() for acc in accs]
    return results[0] if single else results


def entries_from_dense(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(rows, cols, values, batch_size) of the positive entries of a [B, N] tensor (dense or
    sparse COO, e.g. sae_lens's `sample_with_features` output), so accumulators can read it."""
    if features.is_sparse:
        features = features.coalesce()
        idx, vals = features.indices(), features.values()
        keep = vals > 0
        return idx[0][keep], idx[1][keep], vals[keep], features.shape[0]
    rows, cols = (features > 0).nonzero(as_tuple=True)
    return rows, cols, features[rows, cols], features.shape[0]
