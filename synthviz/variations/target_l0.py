"""The L0-target family: firing probabilities solved for an L0 (and a first-K L0); the solver
is `synthviz.l0_target.solve_l0`."""

from __future__ import annotations

from typing import Any

from synthviz.errors import ConfigError, Progress
from synthviz.l0_target import solve_l0
from synthviz.variations.family import Family, Setting, finite, integer

TARGET_FIELDS = ("target_l0", "target_l0_first_k")


class TargetL0Family(Family):
    name = "target_l0"
    settings = (
        Setting("target_l0", "float | None", "solve p for this L0", parse=float),
        Setting("target_l0_first_k", "float | None", "and this L0 over the first K features",
                parse=float),
        Setting("first_k", "int", "K for the first-K L0 (default 4096)", default=4096, parse=int,
                option=True))

    def check(self, v, set_) -> None:
        for name in TARGET_FIELDS:
            if getattr(v, name) is not None:
                value = finite(getattr(v, name), name)
                if value <= 0:
                    raise ConfigError(f"variation {name} must be positive, got {value}")
                set_(name, value)
        set_("first_k", integer(v.first_k, "first_k", 1))
        if v.target_l0_first_k is not None and v.target_l0 is None:
            raise ConfigError("target_l0_first_k needs target_l0 as well")
        if (v.target_l0 is not None and v.target_l0_first_k is not None
                and v.target_l0_first_k > v.target_l0):
            raise ConfigError(f"target first-{v.first_k} L0 ({v.target_l0_first_k}) cannot "
                              f"exceed the target L0 ({v.target_l0})")

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        return solve_l0(model, v.target_l0, v.target_l0_first_k, first_k=v.first_k,
                        progress=progress)

    def describe(self, v) -> str:
        t = f"firing probabilities solved for L0 {v.target_l0:g}"
        if v.target_l0_first_k is not None:
            t += f" and first-{v.first_k} L0 {v.target_l0_first_k:g}"
        return t


TARGET_L0 = TargetL0Family()
