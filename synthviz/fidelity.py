"""The export check: does sae_lens sample an exported model as synthviz shows it?

sae_lens (6.54.12) regenerates the per-feature magnitudes and the firing probabilities from the
config, the latter compensated for the stored hierarchy: on `load_from_disk` it computes the
copula thresholds from them (then overwrites the stored probabilities but not the thresholds),
and `.to()` rebuilds the whole activation generator from the config. So an export samples alike
in sae_lens exactly when the written config regenerates the stored values. `export_check` says
whether it does (trying an equivalent config form first) and, when not, why and what sae_lens
would sample instead; `written_config` is the config an export writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from synthviz.config import HierarchyConfig, ModelConfig, magnitude_values
from synthviz.errors import SynthvizError
from synthviz.hierarchy import Forest
from synthviz.model import SynthModel, regenerated_probabilities


def forest_hierarchy_config(forest: Forest, compensate: bool) -> HierarchyConfig:
    """A hierarchy config describing a stored forest (for models whose config has none)."""
    counts = [len(k) for p, k in forest.children.items() if k]
    lo, hi = (min(counts), max(counts)) if counts else (2, 2)
    lo = max(lo, 2)
    hi = max(hi, lo)
    parents = [p for lvl in forest.levels[:-1] for p in lvl] if forest.max_depth > 0 else []
    eligible = [p for p in parents if len(forest.children.get(p, [])) >= 2]
    me = len([p for p in eligible if p in forest.me])
    return HierarchyConfig(
        total_root_nodes=len(forest.roots), branching_factor=lo if lo == hi else (lo, hi),
        max_depth=max(forest.max_depth, 1),
        mutually_exclusive_portion=me / len(eligible) if eligible else 0.0,
        compensate_probabilities=compensate, scale_children_by_parent=bool(forest.rescale))


def structural_config(model: SynthModel) -> ModelConfig:
    """The model's config with a hierarchy entry that matches the stored forest."""
    cfg = model.cfg
    forest = model.forest if model.forest is not None and model.forest.roots else None
    if forest is None:
        # without hierarchy.json sae_lens would generate a forest from a non-null config
        cfg = cfg.replace(hierarchy=None)
    elif cfg.hierarchy is None:
        cfg = cfg.replace(hierarchy=forest_hierarchy_config(forest, compensate=False))
    return cfg


def magnitude_mismatch(model: SynthModel, cfg: ModelConfig) -> str | None:
    """Why the config's magnitudes differ from the model's (sae_lens regenerates them), or None."""
    n = model.num_features
    for label, spec, values, offset in (
            ("mean", cfg.mean_firing_magnitudes, model.mean_magnitudes, 2),
            ("std", cfg.std_firing_magnitudes, model.std_magnitudes, 1)):
        regen = magnitude_values(spec, n, cfg.sub_seed(offset)).to(cfg.torch_dtype)
        mine = values.detach().cpu()
        if regen.shape != mine.shape or not torch.equal(regen.to(mine.dtype), mine):
            diff = float((regen.to(mine.dtype) - mine).abs().max())
            return (f"the config's {label} firing magnitudes regenerate values up to {diff:.3g} "
                    "away from the model's, and sae_lens regenerates them from the config")
    return None


def checked_structural_config(model: SynthModel) -> ModelConfig:
    """`structural_config`, after checking the config's size is the model's (not overridable)."""
    cfg = model.cfg
    n, d = model.num_features, model.hidden_dim
    if (cfg.num_features, cfg.hidden_dim) != (n, d):
        raise SynthvizError(f"cannot export: config says {cfg.num_features} x {cfg.hidden_dim} "
                            f"but the dictionary is {n} x {d}")
    return structural_config(model)


# ---------------------------------------------------------------------------- the export check

@dataclass(frozen=True)
class ExportCheck:
    """Whether sae_lens, on load and after `.to()`, samples the model synthviz shows.

    `exact`: the written config regenerates the stored firing probabilities and the magnitudes
    bit for bit. `message`: one line saying so, or why not and what sae_lens samples instead.
    """
    exact: bool
    message: str


def _probabilities_match(cfg: ModelConfig, model: SynthModel) -> bool:
    stored = model.firing_probabilities.detach().cpu()
    regen = regenerated_probabilities(cfg, model.forest)
    return regen.shape == stored.shape and torch.equal(regen.to(stored.dtype), stored)


def exact_config(model: SynthModel, cfg: ModelConfig) -> ModelConfig | None:
    """`cfg`, or another config form that regenerates the stored probabilities, or None."""
    if _probabilities_match(cfg, model):
        return cfg
    h = cfg.hierarchy
    if h is not None and model.forest is not None:  # compensation off or on may express it
        alt = cfg.replace(hierarchy=dataclasses.replace(
            h, compensate_probabilities=not h.compensate_probabilities))
        if _probabilities_match(alt, model):
            return alt
    return None


def _sae_lens_view(model: SynthModel, cfg: ModelConfig) -> str:
    """What sae_lens samples instead: the L0 of the config's regenerated probabilities."""
    from synthviz.l0_target import estimate_l0

    regen = regenerated_probabilities(cfg, model.forest).to(model.firing_probabilities.dtype)
    stored = model.firing_probabilities.detach().cpu()
    diff = (regen - stored).abs()
    changed = int((diff > 0).sum())
    theirs = model.replace(cfg=cfg, firing_probabilities=regen)
    ours = model.replace(firing_probabilities=stored)
    for m in (ours, theirs):
        m.device = torch.device("cpu")
    l0_ours, _ = estimate_l0(ours)
    l0_theirs, _ = estimate_l0(theirs)
    return (f"{changed} of {model.num_features} firing probabilities differ (by up to "
            f"{float(diff.max()):.3g}), so sae_lens would sample the config's probabilities: "
            f"expected L0 about {l0_theirs:.2f} instead of synthviz's {l0_ours:.2f}")


def _inexact_reason(model: SynthModel) -> str:
    if model.provenance.config_firing_probability_approximate:
        k = model.provenance.rel_p
        return (f"relative p {k:g} pushes base probabilities above 1 (k x max_prob > 1), no "
                "firing_probability generator says 'scaled, then clamped', and the config keeps "
                "the unscaled one")
    return "the config does not regenerate the stored firing probabilities"


def export_check(model: SynthModel) -> ExportCheck:
    """Whether `model` exports exactly: sae_lens, after `load_from_disk` and after `.to()`,
    regenerates the stored firing probabilities and the magnitudes from the written config."""
    cfg = checked_structural_config(model)
    reason = magnitude_mismatch(model, cfg)
    if reason is not None:
        return ExportCheck(False, f"not exact: {reason}; sae_lens would sample with those "
                                  "regenerated magnitudes")
    if exact_config(model, cfg) is not None:
        return ExportCheck(True, "exact: sae_lens regenerates these firing probabilities and "
                                 "magnitudes from the written config, on load and after .to()")
    return ExportCheck(False, f"not exact: {_inexact_reason(model)}; "
                              f"{_sae_lens_view(model, cfg)}")


def written_config(model: SynthModel) -> ModelConfig:
    """The config an export writes: an exact one where it exists, else the model's own."""
    cfg = checked_structural_config(model)
    if magnitude_mismatch(model, cfg) is not None:
        return cfg
    return exact_config(model, cfg) or cfg
