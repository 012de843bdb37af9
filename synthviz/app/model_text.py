"""Words about the current model for the page: what it is (source and variation), what its
build warned about, and what the last update spent its time on."""

from __future__ import annotations

import dataclasses
from typing import Any


def ready_status(model, samples: int, total: float, took: dict[str, float]) -> str:
    """The final status; when the update took long it says what the time went on."""
    line = f"ready: N={model.num_features:,}, D={model.hidden_dim:,}, {samples:,} samples"
    if total < 2.0:
        if took.get("sampling", total) < 0.005:  # nothing sampled: the statistics were cached
            return f"{line} (statistics from the cache) in {total:.2f} s"
        return f"{line} in {took.get('sampling', total):.2f} s"
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(took.items(), key=lambda kv: -kv[1])
                      if v >= 0.05)
    return f"{line}; took {total:.1f} s ({parts})"


def describe_model(settings: dict[str, Any], facts: dict[str, Any] | None) -> str:
    """The current model in words: its source and its variation."""
    from synthviz.app.variation_bridge import make_variation
    src = settings["source"]
    what = "the SynthSAEBench-16k base" if src == "base" else f"source {src}"
    if facts is None:
        return f"Model: {what}"
    try:
        v = make_variation(settings, facts)
    except Exception:
        return f"Model: {what} (with settings that are not valid)"
    # slider steps leave float error (0.95 arrives as 0.9500000000000002): 6 significant digits
    changes = [f"{k.replace('_', ' ')} {f'{val:g}' if isinstance(val, float) else val}"
               for k, val in dataclasses.asdict(v).items() if val is not None and k != "first_k"]
    if not changes:
        return f"Model: {what}, unchanged"
    return f"Model: {what} with " + ", ".join(changes)


def preset_note(name: str) -> str:
    """What a preset assumes (for the misc presets, how they were reconstructed); "" for none."""
    from synthviz.presets import PRESETS
    preset = PRESETS.get(name)
    return preset.assumptions if preset is not None else ""


def model_warnings(model) -> list[str]:
    """What a model's build noted that a user should know (also logged by the build)."""
    prov = model.provenance
    out = []
    if prov.probabilities_clamped:
        out.append(f"hierarchy compensation clamped {int(prov.probabilities_clamped):,} "
                   "feature probabilities to 1 (their rates are lower than compensation asked)")
    if prov.correlation_rows_rescaled:
        out.append(f"correlation: {int(prov.correlation_rows_rescaled):,} rows were rescaled "
                   "so that each feature keeps some independent variance")
    return out
