"""Translation between the controller's sliders and `synthviz.variations.Variation`.

A slider at the source's own value means "unchanged" (None in the Variation), so the untouched
model is recognised as the source itself and cheap variations stay cheap.
"""

from __future__ import annotations

from typing import Any

from synthviz.variations import Variation

NO_ME_CAP = 12  # the ME max-depth slider at its top means "no cap"


def source_facts(model) -> dict[str, Any]:
    """The source model's own values, which the sliders treat as "unchanged"."""
    return config_facts(model.cfg, model.num_features, model.hidden_dim)


def config_facts(cfg, num_features: int | None = None, hidden_dim: int | None = None
                 ) -> dict[str, Any]:
    h = cfg.hierarchy
    facts: dict[str, Any] = {"num_features": num_features or cfg.num_features,
                             "hidden_dim": hidden_dim or cfg.hidden_dim, "seed": cfg.seed,
                             "hierarchy": None}
    if h is not None:
        b = h.branching_factor
        facts["hierarchy"] = {
            "roots": h.total_root_nodes,
            "branching": tuple(b) if isinstance(b, (list, tuple)) else int(b),
            "depth": h.max_depth, "me_portion": float(h.mutually_exclusive_portion),
            "me_min_depth": h.mutually_exclusive_min_depth,
            "me_max_depth": h.mutually_exclusive_max_depth,
            "compensate": bool(h.compensate_probabilities),
            "rescale": bool(h.scale_children_by_parent)}
    return facts


def base_facts() -> dict[str, Any]:
    """Facts of the base model, from its config (no loading): the sliders' defaults."""
    from synthviz.config import base_config
    return config_facts(base_config())


def hierarchy_fields(s: dict[str, Any]) -> dict[str, Any]:
    branching = ((s["branching_min"], s["branching_max"]) if s["branching_random"]
                 else s["branching_min"])
    me_max = None if s["me_max_depth"] >= NO_ME_CAP else s["me_max_depth"]
    return {"roots": s["roots"], "branching": branching, "depth": s["depth"],
            "me_portion": float(s["me_portion"]), "me_min_depth": s["me_min_depth"],
            "me_max_depth": me_max, "compensate": bool(s["compensate"]),
            "rescale": bool(s["rescale"])}


def make_variation(s: dict[str, Any], facts: dict[str, Any]) -> Variation:
    """The Variation the settings `s` ask for, relative to the source described by `facts`."""
    kw: dict[str, Any] = {}
    if s["seed"] != facts["seed"]:
        kw["seed"] = s["seed"]
    if s["hidden_dim"] != facts["hidden_dim"]:
        kw["hidden_dim"] = s["hidden_dim"]
    if s["num_features"] < facts["num_features"]:
        kw["num_features"] = s["num_features"]
    if s["hierarchy_mode"] == "custom":
        src = facts["hierarchy"] or {}
        for k, v in hierarchy_fields(s).items():
            if src.get(k, object()) != v:
                kw[k] = v
        if kw.get("roots") is None and facts["hierarchy"] is None:
            kw["roots"] = s["roots"]  # adding a hierarchy to a flat model needs all three
            kw["branching"] = hierarchy_fields(s)["branching"]
            kw["depth"] = s["depth"]
    if s["std_mode"] == "constant":
        kw["std"] = float(s["std"])
    if s["use_target_l0"]:
        kw["target_l0"] = float(s["target_l0"])
        if s["target_l0_first_k"] is not None:
            kw["target_l0_first_k"] = float(s["target_l0_first_k"])
        kw["first_k"] = int(s["first_k"])
    elif abs(float(s["rel_p"]) - 1.0) > 1e-12:
        kw["rel_p"] = float(s["rel_p"])
    return normalize(Variation(**kw), facts)


def normalize(v: Variation, facts: dict[str, Any]) -> Variation:
    """`v` without the fields that restate the source's own values (same model, same key)."""
    drop: dict[str, Any] = {}
    if v.seed == facts["seed"]:
        drop["seed"] = None
    if v.hidden_dim == facts["hidden_dim"]:
        drop["hidden_dim"] = None
    if v.num_features is not None and v.num_features >= facts["num_features"]:
        drop["num_features"] = None
    src = facts["hierarchy"] or {}
    if v.roots != 0:
        for k, val in src.items():
            if getattr(v, k) is not None and getattr(v, k) == val:
                drop[k] = None
    if v.rel_p == 1.0:
        drop["rel_p"] = None
    return v.replace(**drop) if drop else v


def settings_for(variation: Variation, facts: dict[str, Any]) -> dict[str, Any]:
    """Slider values that express `variation` on the source described by `facts`."""
    v = variation
    h = facts["hierarchy"] or {"roots": 128, "branching": 4, "depth": 3, "me_portion": 1.0,
                               "me_min_depth": 0, "me_max_depth": None, "compensate": True,
                               "rescale": True}
    hier = {k: (getattr(v, k) if getattr(v, k) is not None else h[k]) for k in h}
    b = hier["branching"]
    custom = v.changes_hierarchy
    out = {
        "seed": v.seed if v.seed is not None else facts["seed"],
        "hidden_dim": v.hidden_dim or facts["hidden_dim"],
        "num_features": v.num_features or facts["num_features"],
        "hierarchy_mode": "custom" if custom else "base",
        "roots": hier["roots"],
        "branching_min": b[0] if isinstance(b, tuple) else b,
        "branching_max": b[1] if isinstance(b, tuple) else b,
        "branching_random": isinstance(b, tuple),
        "depth": hier["depth"], "me_portion": hier["me_portion"],
        "me_min_depth": hier["me_min_depth"],
        "me_max_depth": NO_ME_CAP if hier["me_max_depth"] is None else hier["me_max_depth"],
        "compensate": hier["compensate"], "rescale": hier["rescale"],
        "std_mode": "base" if v.std is None else "constant",
        "use_target_l0": v.target_l0 is not None,
        "rel_p": 1.0 if v.rel_p is None else v.rel_p,
    }
    if v.std is not None:
        out["std"] = v.std
    if v.target_l0 is not None:
        out["target_l0"] = v.target_l0
        out["target_l0_first_k"] = v.target_l0_first_k
        out["first_k"] = v.first_k
    return out


def preset_variation(name: str) -> tuple[str, Variation]:
    """(source, Variation) for a preset: the preset is that variation of that source."""
    from synthviz.presets import PRESETS
    p = PRESETS[name]
    return p.base, p.variation or Variation()


def preset_settings(name: str, facts: dict[str, Any]) -> dict[str, Any]:
    source, variation = preset_variation(name)
    return {"source": source, **settings_for(variation, facts)}


def matching_preset(s: dict[str, Any], facts: dict[str, Any], prefer: str | None = None
                    ) -> str | None:
    """The preset whose variation the settings express, if any (`prefer` first)."""
    from synthviz.presets import PRESETS
    try:
        current = make_variation(s, facts)
    except Exception:
        return None
    for name in sorted(PRESETS, key=lambda n: n != prefer):
        try:
            source, v = preset_variation(name)
        except Exception:
            continue
        if source == s["source"] and normalize(v, facts) == current:
            return name
    return None
