"""The hierarchy family (``roots``, ``branching``, ``depth``, ``me_*``, ``compensate``,
``rescale``): a new forest generated over the current features, with the probabilities
re-compensated for it. ``roots=0`` removes the hierarchy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from synthviz.config import HierarchyConfig, ModelConfig
from synthviz.errors import ConfigError, Progress
from synthviz.hierarchy import generate_forest
from synthviz.model import SynthModel, compensated_probabilities, validate_rescale
from synthviz.variations.family import (Family, Setting, base_probabilities, check_integer, finite,
                                        integer, reuse)

HIERARCHY_FIELDS = ("roots", "branching", "depth", "me_portion", "me_min_depth", "me_max_depth",
                    "compensate", "rescale")
# variation field -> HierarchyConfig field
CONFIG_KEYS = {"roots": "total_root_nodes", "branching": "branching_factor",
               "depth": "max_depth", "me_portion": "mutually_exclusive_portion",
               "me_min_depth": "mutually_exclusive_min_depth",
               "me_max_depth": "mutually_exclusive_max_depth",
               "compensate": "compensate_probabilities", "rescale": "scale_children_by_parent"}


def parse_branching(text: Any) -> int | tuple[int, int]:
    """'4' -> 4; '4-32', '4:32', (4, 32) or [4, 32] -> (4, 32)."""
    if isinstance(text, (list, tuple)):
        if len(text) != 2:
            raise ConfigError(f"branching must be an int or a (min, max) pair, got {text!r}")
        return (integer(text[0], "branching min", 2), integer(text[1], "branching max", 2))
    if isinstance(text, str):
        s = text.strip()
        for sep in ("-", ":", ","):
            if sep in s:
                lo, _, hi = s.partition(sep)
                try:
                    return parse_branching((int(lo), int(hi)))
                except ConfigError:  # a ValueError too: keep its specific message
                    raise
                except ValueError:
                    raise ConfigError(f"branching must look like 4 or 4-32, got {text!r}") from None
        try:
            return integer(int(s), "branching", 2)
        except ConfigError:
            raise
        except ValueError:
            raise ConfigError(f"branching must look like 4 or 4-32, got {text!r}") from None
    return integer(text, "branching", 2)


def hierarchy_config_for(cfg: ModelConfig, v: Any) -> HierarchyConfig | None:
    """The model's hierarchy config with the variation's hierarchy fields applied."""
    if v.roots == 0:
        return None
    cur = cfg.hierarchy
    if cur is None:
        if v.roots is None or v.branching is None or v.depth is None:
            raise ConfigError("the model has no hierarchy: give roots, branching and depth to "
                              "add one")
        cur = HierarchyConfig(total_root_nodes=v.roots, branching_factor=v.branching,
                              max_depth=v.depth, compensate_probabilities=True,
                              scale_children_by_parent=True)
    changes = {key: getattr(v, name) for name, key in CONFIG_KEYS.items()
               if getattr(v, name) is not None}
    new = dataclasses.replace(cur, **changes)
    # sae_lens accepts more roots than features (it stops when they run out): refuse only a
    # variation asking for them
    if v.roots is not None and new.total_root_nodes > cfg.num_features:
        raise ConfigError(f"hierarchy roots ({new.total_root_nodes}) exceed the number of "
                          f"features ({cfg.num_features})")
    if (new.mutually_exclusive_max_depth is not None
            and new.mutually_exclusive_max_depth < new.mutually_exclusive_min_depth):
        raise ConfigError("hierarchy ME max depth is below its min depth")
    return new


def apply_hierarchy(model: SynthModel, v: Any) -> SynthModel:
    """A new forest over the current features; probabilities re-compensated for it."""
    cfg = model.cfg
    hcfg = hierarchy_config_for(cfg, v)
    forest = None
    if hcfg is not None:
        forest = generate_forest(cfg.num_features, hcfg, cfg.sub_seed(3))
    new_cfg = cfg.replace(hierarchy=hcfg)
    p, clamped = compensated_probabilities(
        base_probabilities(new_cfg), forest, new_cfg.compensates)
    new = model.replace(cfg=new_cfg, forest=forest,
                        firing_probabilities=reuse(p, model.firing_probabilities))
    if model.forest is not None and forest is not None and forest == model.forest:
        new.forest = model.forest  # same structure: keep the source's object (and its caches)
    new.provenance = new.provenance.derived(probabilities_clamped=clamped)
    validate_rescale(new)
    return new


class HierarchyFamily(Family):
    name = "hierarchy"
    settings = (
        Setting("roots", "int | None", "hierarchy: number of root nodes", parse=int),
        Setting("branching", "int | tuple[int, int] | None",
                "hierarchy: branching, e.g. 4 or 4-32", parse=str),
        Setting("depth", "int | None", "hierarchy: maximum depth", parse=int),
        Setting("me_portion", "float | None", "hierarchy: portion of ME parents", parse=float),
        Setting("me_min_depth", "int | None", "hierarchy: minimum ME depth", parse=int),
        Setting("me_max_depth", "int | None", "hierarchy: maximum ME depth", parse=int),
        Setting("compensate", "bool | None", "hierarchy: no p compensation",
                flag="--no-compensate", switch=True),
        Setting("rescale", "bool | None", "hierarchy: no child rescaling", flag="--no-rescale",
                switch=True))

    def check(self, v, set_) -> None:
        check_integer(v, set_, "roots", 0)
        if v.branching is not None:
            b = parse_branching(v.branching)
            if isinstance(b, tuple) and b[0] > b[1]:
                raise ConfigError(f"variation branching: min {b[0]} > max {b[1]}")
            set_("branching", b)
        check_integer(v, set_, "depth", 1)
        if v.me_portion is not None:
            value = finite(v.me_portion, "me_portion")
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"variation me_portion must be in [0, 1], got {value}")
            set_("me_portion", value)
        for name in ("me_min_depth", "me_max_depth"):
            check_integer(v, set_, name, 0)
        if (v.me_min_depth is not None and v.me_max_depth is not None
                and v.me_max_depth < v.me_min_depth):
            raise ConfigError("variation me_max_depth must be >= me_min_depth")
        for name in ("compensate", "rescale"):
            if getattr(v, name) is not None and not isinstance(getattr(v, name), bool):
                raise ConfigError(f"variation {name} must be true or false")
        if v.roots == 0 and any(getattr(v, f) is not None for f in HIERARCHY_FIELDS[1:]):
            raise ConfigError("roots=0 removes the hierarchy; other hierarchy settings make no sense")

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        return apply_hierarchy(model, v)

    def describe(self, v) -> str:
        if v.roots == 0:
            return "no hierarchy"
        h = []
        if v.roots is not None:
            h.append(f"{v.roots} roots")
        if v.branching is not None:
            b = v.branching
            h.append(f"branching {b[0]}-{b[1]} (random)" if isinstance(b, tuple)
                     else f"branching {b}")
        if v.depth is not None:
            h.append(f"depth {v.depth}")
        if v.me_portion is not None:
            h.append(f"ME portion {v.me_portion:g}")
        if v.me_min_depth is not None or v.me_max_depth is not None:
            h.append(f"ME depths {v.me_min_depth if v.me_min_depth is not None else '-'}"
                     f" to {v.me_max_depth if v.me_max_depth is not None else '-'}")
        if v.compensate is not None:
            h.append("probability compensation " + ("on" if v.compensate else "off"))
        if v.rescale is not None:
            h.append("child rescaling " + ("on" if v.rescale else "off"))
        return "hierarchy: " + ", ".join(h)


HIERARCHY = HierarchyFamily()
