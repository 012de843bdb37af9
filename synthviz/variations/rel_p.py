"""The relative-p family: the base (pre-compensation) probabilities x k, compensated as the base
is and clamped to 1."""

from __future__ import annotations

import logging
from typing import Any

from synthviz.errors import ConfigError, Progress
from synthviz.model import SynthModel, compensated_probabilities
from synthviz.variations.family import Family, Setting, base_probabilities, finite

log = logging.getLogger(__name__)


def scale_probability_generator(gen: Any, k: float) -> tuple[Any, bool]:
    """(generator whose values are k times `gen`'s, exact) when one exists, else (gen, False)."""
    return gen.scaled(k)


def apply_rel_p(model: SynthModel, k: float) -> SynthModel:
    """Base probabilities x k, compensated as the base is (ratios unchanged), clamped to 1."""
    cfg = model.cfg
    if k == 1.0:
        return model
    gen, exact = scale_probability_generator(cfg.firing_probability, k)
    if exact:
        base_p = gen.generate(cfg.num_features, seed=cfg.sub_seed(0))
        over = int((base_probabilities(cfg) * k > 1).sum())
    else:
        raw = base_probabilities(cfg) * k
        over = int((raw > 1).sum())
        base_p = raw.clamp(max=1.0)
    p, clamped = compensated_probabilities(base_p, model.forest, cfg.compensates)
    new = model.replace(cfg=cfg.replace(firing_probability=gen),
                        firing_probabilities=p.to(model.firing_probabilities.dtype))
    changes: dict[str, Any] = {"rel_p": k, "rel_p_clamped": clamped + over}
    if not exact:
        changes["config_firing_probability_approximate"] = (
            f"{over} base probabilities exceeded 1 after x {k:g} and were clamped; no "
            "firing_probability generator expresses that, so the config keeps the unscaled one, "
            "which is what sae_lens samples (the export check refuses it unless asked)")
    new.provenance = new.provenance.derived(**changes)
    if clamped + over:
        log.info("rel_p %g: %d feature probabilities clamped to 1", k, clamped + over)
    return new


class RelPFamily(Family):
    name = "rel_p"
    settings = (Setting("rel_p", "float | None", "multiply base firing probabilities by k",
                        parse=float),)

    def check(self, v, set_) -> None:
        if v.rel_p is not None:
            value = finite(v.rel_p, "rel_p")
            if value <= 0:
                raise ConfigError(f"variation rel_p must be positive, got {value}")
            set_("rel_p", value)
        if v.rel_p is not None and getattr(v, "target_l0", None) is not None:
            raise ConfigError("rel_p and target_l0 both set the firing probabilities; use one")

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        return apply_rel_p(model, v.rel_p)

    def describe(self, v) -> str:
        return f"base firing probabilities x {v.rel_p:g}"


REL_P = RelPFamily()
