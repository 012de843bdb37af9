"""Comparisons: one SAE on several models (the base and a variation: distribution shift), and
several SAEs on one model (fed the very same samples in one pass)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from synthviz.sae.evaluate import SAEAccumulator, SAEEvalResult
from synthviz.sae.weights import SAE

HEADLINES = ("mcc", "uniqueness", "explained_variance", "shrinkage", "sae_l0", "true_l0",
             "dead_latents")


def compare_models(sae: SAE, models: Mapping[str, object], n_samples: int = 100_000, *,
                   seed: int | None = 0, batch_size: int = 4096, progress=None,
                   **options) -> dict[str, SAEEvalResult]:
    """The same SAE on each model (e.g. {"base": base, "variation": model}). progress(done,
    total) counts samples over all models."""
    from synthviz.stats.stream import collect

    out: dict[str, SAEEvalResult] = {}
    total = n_samples * len(models)
    for i, (name, model) in enumerate(models.items()):
        cb = None if progress is None else (
            lambda done, _t, off=i * n_samples: progress(off + done, total))
        out[name] = collect(model, n_samples, SAEAccumulator(sae, **options), seed=seed,
                            batch_size=batch_size, progress=cb)
    return out


def compare_saes(model, saes: Mapping[str, SAE], n_samples: int = 100_000, *,
                 seed: int | None = 0, batch_size: int = 4096, progress=None,
                 **options) -> dict[str, SAEEvalResult]:
    """Several SAEs on one model, all reading the same sampled batches."""
    from synthviz.stats.stream import collect

    accs = [SAEAccumulator(s, **options) for s in saes.values()]
    results = collect(model, n_samples, accs, seed=seed, batch_size=batch_size,
                      progress=progress)
    return dict(zip(saes, results))


def headline_table(results: Mapping[str, SAEEvalResult]) -> dict[str, list]:
    """Columns name, metric values (classification flattened as classification/...)."""
    cols: dict[str, list] = {"name": list(results)}
    for key in HEADLINES:
        cols[key] = [getattr(r, key) for r in results.values()]
    for key in ("precision", "recall", "f1_score", "accuracy"):
        cols[f"classification/{key}"] = [r.classification[key] for r in results.values()]
    cols["absorption/mean_gap"] = [r.summary["absorption"]["mean_gap"] for r in results.values()]
    return cols


def shift_table(base: SAEEvalResult, other: SAEEvalResult) -> dict[str, np.ndarray]:
    """Per feature of the smaller model: rate and best-latent recall / F1 on both, and the
    change (other - base). Features are matched by index (variations keep feature ids)."""
    n = min(len(base.features["feature"]), len(other.features["feature"]))
    b, o = base.features, other.features
    return {"feature": np.arange(n), "depth": o["depth"][:n],
            "rate_base": b["rate"][:n], "rate": o["rate"][:n],
            "recall_base": b["recall"][:n], "recall": o["recall"][:n],
            "f1_base": b["f1"][:n], "f1": o["f1"][:n],
            "recall_change": o["recall"][:n] - b["recall"][:n],
            "f1_change": o["f1"][:n] - b["f1"][:n]}
