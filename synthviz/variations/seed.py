"""The seed family: the source config rebuilt with another seed (every seeded component)."""

from __future__ import annotations

from typing import Any

from synthviz.builds import build_cached
from synthviz.errors import Progress
from synthviz.variations.family import Family, Setting, check_integer


class SeedFamily(Family):
    name = "seed"
    settings = (Setting("seed", "int | None", "model seed (new dictionary and hierarchy)",
                        parse=int),)

    def check(self, v, set_) -> None:
        check_integer(v, set_, "seed", 0)

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        """Disk-cached; the new model keeps only its source's preset and base."""
        if model.cfg.seed == v.seed:
            return model
        new = build_cached(model.cfg.replace(seed=v.seed), device=model.device, progress=progress)
        kept = {k: getattr(model.provenance, k) for k in ("preset", "base")}
        new.provenance = new.provenance.replace(
            **{k: value for k, value in kept.items() if value is not None})
        return new

    def describe(self, v) -> str:
        return f"seed {v.seed} (every seeded component rebuilt)"


SEED = SeedFamily()
