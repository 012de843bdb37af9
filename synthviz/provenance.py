"""`Provenance`: where a model came from and what building or varying it changed silently.

Every `SynthModel` carries one frozen record. Builders, loaders and variations write it (always
through `replace`, never in place); the CLI's warnings, the app's model line, the export check and
the model card read it. `to_dict` gives the set fields only, with the key names the model card
metadata and the L0-target cache use.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from synthviz.strict import from_fields


@dataclass(frozen=True)
class Provenance:
    """None means "not recorded". Counts are None when the build had nothing to count."""
    # where the model came from
    source: str | None = None  # a folder, a Hub id or "cache:KEY"; dropped once a model is varied
    preset: str | None = None  # the preset a model is, or was varied from
    preset_variation: dict[str, Any] | None = None  # that preset's own variation (exact_preset)
    base: str | None = None  # what a variation was applied to, in words
    variation: dict[str, Any] | None = None  # the whole change from `base` (Variation.to_dict)
    variation_words: str | None = None  # the same, in words (Variation.describe)
    previous_variation: dict[str, Any] | None = None  # an earlier variation that no longer parses
    # what a build changed silently
    probabilities_clamped: int | None = None  # hierarchy compensation pushed p above 1
    correlation_rows_rescaled: int | None = None  # rows lifted to the c_i >= 0.01 floor
    rel_p: float | None = None
    rel_p_clamped: int | None = None  # probabilities clamped to 1 after x rel_p (supersedes the above)
    config_firing_probability_approximate: str | None = None  # why the config is not exact
    truncation_probability_max_diff: float | None = None  # regenerated vs the source's prefix
    truncation_std_max_diff: float | None = None  # regenerated vs sliced magnitude std
    truncation_mean_max_diff: float | None = None  # regenerated vs sliced magnitude mean
    l0_target: dict[str, Any] | None = None  # the L0 solver's report (synthviz.l0_target)

    def replace(self, **changes: Any) -> Provenance:
        return dataclasses.replace(self, **changes)

    def derived(self, **changes: Any) -> Provenance:
        """The record of a model derived from this one: its source label no longer applies."""
        return dataclasses.replace(self, source=None, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The recorded fields only (values as stored: JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Provenance:
        return from_fields(cls, d, "provenance")

    # ------------------------------------------------------------------ in words
    @property
    def clamped(self) -> int:
        """Probabilities clamped to 1, by rel_p (which re-clamps after scaling) or the build."""
        if self.rel_p_clamped is not None:
            return self.rel_p_clamped
        return self.probabilities_clamped or 0

    def base_label(self) -> str:
        """What a variation of this model is applied to, in words."""
        if self.base:
            return self.base
        if self.preset:
            return f"preset {self.preset}"
        return str(self.source or "a model")

    def exact_preset(self) -> str | None:
        """The preset a model is; None once anything varied it.

        A variation keeps its source's `preset`, so that field alone names where a model came
        from; `load_preset` records the preset's own variation, and the model is that preset only
        while its variation is still exactly that one.
        """
        if self.preset and self.variation == self.preset_variation:
            return self.preset
        return None

    def model_name(self) -> str:
        """The model in words: a preset, or a source and its variation."""
        preset = self.exact_preset()
        if preset:
            return f"preset {preset}"
        source = self.base or (f"preset {self.preset}" if self.preset
                               else self.source or "a SynthSAEBench-style model")
        if self.variation:
            return f"{source}, varied: {self.variation_words or self.variation}"
        return str(source)
