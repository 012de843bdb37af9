"""`Results`: one consistent snapshot of a model and its statistics, which the app's tabs and
the plot registry (`synthviz.plots.registry.PLOTS`) draw; `results_for` computes one outside the
app (notebooks, scripts) through the shared `STORE`.

Nothing here imports Panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synthviz.app.store import STORE, AnalyticStats, SampleSettings, SampleStats
from synthviz.errors import SynthvizError


@dataclass
class Results:
    """What the views draw: one consistent snapshot of a model and its statistics. A new
    dictionary's superposition statistics (seconds to compute) are None until they arrive."""
    settings: dict[str, Any]
    model: Any
    stats: SampleStats
    analytic: AnalyticStats | None = None
    superposition: Any = None
    base_model: Any = None  # set when compare_base is on and the model is not the base itself
    base_stats: SampleStats | None = None
    base_analytic: AnalyticStats | None = None
    base_superposition: Any = None
    seconds: float = 0.0
    # a first look from fewer samples than the settings ask for (`stats` says how many); the
    # full count follows
    preview: bool = False

    @property
    def firing(self):
        return self.analytic.firing if self.analytic is not None else self.stats.firing

    @property
    def base_firing(self):
        if self.base_stats is None:
            return None
        return self.base_analytic.firing if self.base_analytic is not None else \
            self.base_stats.firing

    @property
    def expected_l0(self):
        return None if self.analytic is None else self.analytic.expected_l0

    @property
    def complete(self) -> bool:
        if self.preview:
            return False
        need = [self.analytic, self.superposition]
        if self.base_model is not None:
            need += [self.base_analytic, self.base_superposition]
        return all(x is not None for x in need)

    @property
    def cards(self) -> dict[str, Any]:
        s, m = self.stats, self.model
        return {"N": m.num_features, "D": m.hidden_dim, "L0": s.l0.mean,
                "first-K L0": s.l0.mean_first_k,
                "rho_mm": None if self.superposition is None else float(self.superposition.rho_mm),
                "ME violations": s.me_violations, "samples/s": s.samples_per_s}


def parse_ids(text: str) -> tuple[int, ...]:
    out = []
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        if part.strip():
            try:
                out.append(int(part))
            except ValueError:
                raise SynthvizError(f"co-occurrence ids must be integers, got {part!r}") from None
    return tuple(out)


def sample_settings(snap: dict[str, Any]) -> SampleSettings:
    return SampleSettings(samples=int(snap["samples"]), first_k=int(snap["first_k"]),
                          seed=int(snap["sample_seed"]), cooc_how=snap["cooc_how"],
                          cooc_k=int(snap["cooc_k"]), cooc_root=int(snap["cooc_root"]),
                          cooc_ids=parse_ids(snap["cooc_ids"]) if snap["cooc_how"] == "list"
                          else ())


def results_for(model, settings: SampleSettings | None = None, base=None) -> Results:
    """Every statistic the plots draw for `model` (and `base`, to compare with), computed as
    the app computes them, e.g. `for spec in PLOTS: spec.create(results_for(model))` in a
    notebook. Sample statistics are not cached (no key names a model built outside the app);
    dictionary statistics are, in the shared `STORE` and on disk."""
    from synthviz.app.store import compute_analytic_stats, compute_sample_stats
    settings = settings or SampleSettings()

    def measure(m):
        stats = compute_sample_stats(m, settings)
        return stats, compute_analytic_stats(m, settings, stats), STORE.superposition(m)

    stats, analytic, sup = measure(model)
    res = Results(settings={"first_k": settings.first_k, "samples": settings.samples},
                  model=model, stats=stats, analytic=analytic, superposition=sup)
    if base is not None:
        res.base_model = base
        res.base_stats, res.base_analytic, res.base_superposition = measure(base)
    return res
