"""`SAEResults`: one SAE evaluation as the SAE views see it (pure data, no Panel), and
`evaluate_for_view`, the work that produces it: the SAE on the current model (and on the base, for
distribution shift), the current model's forest, and the SAE-against-truth |cos| block.

The app's SAE tab runs `evaluate_for_view` on its worker thread, caches the snapshot and hands it to
the entries of the SAE plot registry (`synthviz.plots.sae_registry.SAE_PLOTS`); a notebook can do
the same without the app."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synthviz.sae.compare import compare_models
from synthviz.sae.evaluate import SAEEvalResult
from synthviz.sae.view_stats import cosine_block
from synthviz.sae.weights import SAE


@dataclass(frozen=True)
class SAEResults:
    """An SAE's evaluation on the current model (`current`) and, when compared, on the base
    (`base`, else None); `forest` is the current model's hierarchy (None without one) and
    `cosine` its `cosine_block`. `note` says what was left out (e.g. the base comparison)."""
    current: SAEEvalResult
    base: SAEEvalResult | None = None
    forest: Any = field(default=None, repr=False)
    cosine: dict | None = field(default=None, repr=False)
    sae_name: str = ""
    samples: int = 0
    seed: int | None = 0
    note: str = ""

    def by_model(self) -> dict[str, SAEEvalResult]:
        """{"current": ..., "base": ...} (the base only when compared), in that order."""
        return {"current": self.current, **({} if self.base is None else {"base": self.base})}


def evaluate_for_view(sae: SAE, models: Mapping[str, Any], samples: int, seed: int | None = 0,
                      progress=None, name: str = "") -> SAEResults:
    """`sae` on `models["current"]` and, when given and of the same hidden dim, `models["base"]`,
    streamed over `samples` samples each (`compare_models`; progress(done, total) counts both).
    A base of another hidden dim is left out, and `note` says so."""
    model = models["current"]
    todo = {"current": model}
    note = ""
    base = models.get("base")
    if base is not None and base is not model:
        if base.hidden_dim == model.hidden_dim:
            todo["base"] = base
        else:
            note = "the base has another hidden dim, so no base comparison"
    evaluated = compare_models(sae, todo, samples, seed=seed, progress=progress)
    cur = evaluated["current"]
    block = cosine_block(sae.W_dec, model.feature_vectors, cur.latents["best_feature"],
                         cur.latents["best_cos"])
    return SAEResults(current=cur, base=evaluated.get("base"), forest=model.forest,
                      cosine=block, sae_name=name, samples=samples, seed=seed, note=note)
