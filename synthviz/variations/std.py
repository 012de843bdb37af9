"""The std family: one constant firing-magnitude std for every feature."""

from __future__ import annotations

from typing import Any

import torch

from synthviz.errors import ConfigError, Progress
from synthviz.variations.family import Family, Setting, finite, reuse


class StdFamily(Family):
    name = "std"
    settings = (Setting("std", "float | None", "constant firing-magnitude std for every feature",
                        parse=float),)

    def check(self, v, set_) -> None:
        if v.std is not None:
            value = finite(v.std, "std")
            if value < 0:
                raise ConfigError(f"variation std must be non-negative, got {value}")
            set_("std", value)

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        std = float(v.std)
        values = torch.full((model.num_features,), std, dtype=model.std_magnitudes.dtype)
        new = model.replace(cfg=model.cfg.replace(std_firing_magnitudes=std),
                            std_magnitudes=reuse(values, model.std_magnitudes))
        new.provenance = new.provenance.derived()
        return new

    def describe(self, v) -> str:
        return f"constant firing-magnitude std {v.std:g}"


STD = StdFamily()
