"""Variations of a model: one `Variation` value holds any mix of the five families and applies it.

A variation is applied in a fixed order, the order of the dataclass fields, so a composed
variation equals applying its parts one after another (`Variation.parts()`):

1. ``seed``: rebuild the source config with a new seed (every seeded component; disk-cached).
2. ``hidden_dim``: a new dictionary at dimension D', drawn with the model's seed conventions
   (randn(N, D') then the bias from the same generator, as sae_lens does), orthogonalized with the
   model's settings; the bias is redrawn at D' with the same norm. Disk-cached.
3. ``num_features``: keep features 0..N-1 of everything (views, no copies); the hierarchy is pruned
   and a parent left with fewer than 2 children loses ME.
4. hierarchy (``roots``, ``branching``, ``depth``, ``me_*``, ``compensate``, ``rescale``): a new
   forest generated over the current features; probabilities are re-compensated for it.
5. ``std``: one constant firing-magnitude std for every feature.
6. probabilities: ``target_l0`` (and ``target_l0_first_k``) solves the firing-probability
   generator for those L0s (see `synthviz.l0_target`); or ``rel_p`` multiplies the base
   (pre-compensation) probabilities by k, compensates as the base does and clamps to 1.

Every result keeps a config that regenerates it: sae_lens rebuilds per-feature magnitudes from
the config, so wherever slicing cannot be expressed exactly in a config (a truncated linear ramp is
off by one float ulp; torch's normal generator is not prefix-consistent when N % 16 != 0) the
truncated model uses the values its config regenerates, and `notes` records the difference.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import torch

from synthviz.builds import build_cached, build_dictionary
from synthviz.config import HierarchyConfig, ModelConfig, magnitude_values
from synthviz.generators import magnitude_prefix
from synthviz.errors import ConfigError, Progress
from synthviz.hierarchy import Forest, generate_forest
from synthviz.model import SynthModel, compensated_probabilities, regenerated_probabilities

log = logging.getLogger(__name__)

HIERARCHY_FIELDS = ("roots", "branching", "depth", "me_portion", "me_min_depth", "me_max_depth",
                    "compensate", "rescale")
TARGET_FIELDS = ("target_l0", "target_l0_first_k")


def _finite(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"variation {name} must be a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, name: str, low: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"variation {name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"variation {name} must be at least {low}, got {value}")
    return value


def parse_branching(text: Any) -> int | tuple[int, int]:
    """'4' -> 4; '4-32', '4:32', (4, 32) or [4, 32] -> (4, 32)."""
    if isinstance(text, (list, tuple)):
        if len(text) != 2:
            raise ConfigError(f"branching must be an int or a (min, max) pair, got {text!r}")
        return (_integer(text[0], "branching min", 2), _integer(text[1], "branching max", 2))
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
            return _integer(int(s), "branching", 2)
        except ConfigError:
            raise
        except ValueError:
            raise ConfigError(f"branching must look like 4 or 4-32, got {text!r}") from None
    return _integer(text, "branching", 2)


@dataclass(frozen=True)
class Variation:
    """Any mix of the variation families; None means "keep the source's". Field order is the
    order of application."""
    seed: int | None = None
    hidden_dim: int | None = None
    num_features: int | None = None
    roots: int | None = None  # 0 removes the hierarchy
    branching: int | tuple[int, int] | None = None
    depth: int | None = None
    me_portion: float | None = None
    me_min_depth: int | None = None
    me_max_depth: int | None = None
    compensate: bool | None = None
    rescale: bool | None = None
    std: float | None = None
    target_l0: float | None = None
    target_l0_first_k: float | None = None
    first_k: int = 4096
    rel_p: float | None = None

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        if self.seed is not None:
            set_("seed", _integer(self.seed, "seed", 0))
        for name in ("hidden_dim", "num_features", "depth"):
            if getattr(self, name) is not None:
                set_(name, _integer(getattr(self, name), name, 1))
        if self.roots is not None:
            set_("roots", _integer(self.roots, "roots", 0))
        if self.branching is not None:
            b = parse_branching(self.branching)
            if isinstance(b, tuple) and b[0] > b[1]:
                raise ConfigError(f"variation branching: min {b[0]} > max {b[1]}")
            set_("branching", b)
        if self.me_portion is not None:
            v = _finite(self.me_portion, "me_portion")
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"variation me_portion must be in [0, 1], got {v}")
            set_("me_portion", v)
        for name in ("me_min_depth", "me_max_depth"):
            if getattr(self, name) is not None:
                set_(name, _integer(getattr(self, name), name, 0))
        if (self.me_min_depth is not None and self.me_max_depth is not None
                and self.me_max_depth < self.me_min_depth):
            raise ConfigError("variation me_max_depth must be >= me_min_depth")
        for name in ("compensate", "rescale"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                raise ConfigError(f"variation {name} must be true or false")
        if self.std is not None:
            v = _finite(self.std, "std")
            if v < 0:
                raise ConfigError(f"variation std must be non-negative, got {v}")
            set_("std", v)
        for name in TARGET_FIELDS:
            if getattr(self, name) is not None:
                v = _finite(getattr(self, name), name)
                if v <= 0:
                    raise ConfigError(f"variation {name} must be positive, got {v}")
                set_(name, v)
        set_("first_k", _integer(self.first_k, "first_k", 1))
        if self.target_l0_first_k is not None and self.target_l0 is None:
            raise ConfigError("target_l0_first_k needs target_l0 as well")
        if (self.target_l0 is not None and self.target_l0_first_k is not None
                and self.target_l0_first_k > self.target_l0):
            raise ConfigError(f"target first-{self.first_k} L0 ({self.target_l0_first_k}) cannot "
                              f"exceed the target L0 ({self.target_l0})")
        if self.rel_p is not None:
            v = _finite(self.rel_p, "rel_p")
            if v <= 0:
                raise ConfigError(f"variation rel_p must be positive, got {v}")
            set_("rel_p", v)
        if self.rel_p is not None and self.target_l0 is not None:
            raise ConfigError("rel_p and target_l0 both set the firing probabilities; use one")
        if self.roots == 0 and any(getattr(self, f) is not None for f in HIERARCHY_FIELDS[1:]):
            raise ConfigError("roots=0 removes the hierarchy; other hierarchy settings make no sense")

    # ------------------------------------------------------------------ description
    def is_identity(self) -> bool:
        return all(getattr(self, f.name) is None for f in dataclasses.fields(self)
                   if f.name != "first_k")

    @property
    def changes_hierarchy(self) -> bool:
        return any(getattr(self, f) is not None for f in HIERARCHY_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that are set (first_k only alongside an L0 target)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "first_k":
                if self.target_l0 is not None:
                    out[f.name] = v
            elif v is not None:
                out[f.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Variation:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise ConfigError(f"a variation must be an object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = set(d) - names
        if extra:
            raise ConfigError(f"variation: unknown field(s) {sorted(extra)}")
        return cls(**d)

    def replace(self, **changes) -> Variation:
        return dataclasses.replace(self, **changes)

    def merged(self, other: Variation) -> Variation:
        """This variation with every field `other` sets overriding it."""
        return self.replace(**{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in other.to_dict().items()})

    def parts(self) -> list[Variation]:
        """Single-family pieces in application order; applying them in turn equals `apply`."""
        groups = [("seed",), ("hidden_dim",), ("num_features",), HIERARCHY_FIELDS, ("std",),
                  TARGET_FIELDS + ("first_k",), ("rel_p",)]
        out = []
        for names in groups:
            kw = {n: getattr(self, n) for n in names}
            if any(v is not None for n, v in kw.items() if n != "first_k"):
                out.append(Variation(**kw))
        return out

    def describe(self) -> str:
        """The variation in words, e.g. 'hidden dim 512; constant magnitude std 0'."""
        if self.is_identity():
            return "no variation"
        words = []
        if self.seed is not None:
            words.append(f"seed {self.seed} (every seeded component rebuilt)")
        if self.hidden_dim is not None:
            words.append(f"hidden dim {self.hidden_dim} (new orthogonalized dictionary, "
                         "bias redrawn with the same norm)")
        if self.num_features is not None:
            words.append(f"truncated to the first {self.num_features} features")
        if self.roots == 0:
            words.append("no hierarchy")
        elif self.changes_hierarchy:
            h = []
            if self.roots is not None:
                h.append(f"{self.roots} roots")
            if self.branching is not None:
                b = self.branching
                h.append(f"branching {b[0]}-{b[1]} (random)" if isinstance(b, tuple)
                         else f"branching {b}")
            if self.depth is not None:
                h.append(f"depth {self.depth}")
            if self.me_portion is not None:
                h.append(f"ME portion {self.me_portion:g}")
            if self.me_min_depth is not None or self.me_max_depth is not None:
                h.append(f"ME depths {self.me_min_depth if self.me_min_depth is not None else '-'}"
                         f" to {self.me_max_depth if self.me_max_depth is not None else '-'}")
            if self.compensate is not None:
                h.append("probability compensation " + ("on" if self.compensate else "off"))
            if self.rescale is not None:
                h.append("child rescaling " + ("on" if self.rescale else "off"))
            words.append("hierarchy: " + ", ".join(h))
        if self.std is not None:
            words.append(f"constant firing-magnitude std {self.std:g}")
        if self.target_l0 is not None:
            t = f"firing probabilities solved for L0 {self.target_l0:g}"
            if self.target_l0_first_k is not None:
                t += f" and first-{self.first_k} L0 {self.target_l0_first_k:g}"
            words.append(t)
        if self.rel_p is not None:
            words.append(f"base firing probabilities x {self.rel_p:g}")
        return "; ".join(words)

    # ------------------------------------------------------------------ applying
    def apply(self, base_model: SynthModel, progress: Progress | None = None) -> SynthModel:
        """A new model: `base_model` with this variation; untouched tensors are shared."""
        model = base_model
        if self.is_identity():
            return model
        if self.seed is not None:
            model = apply_seed(model, self.seed, progress)
        if self.hidden_dim is not None:
            model = apply_hidden_dim(model, self.hidden_dim, progress)
        if self.num_features is not None:
            model = apply_truncation(model, self.num_features)
        if self.changes_hierarchy:
            model = apply_hierarchy(model, self)
        if self.std is not None:
            model = apply_std(model, self.std)
        if self.target_l0 is not None:
            from synthviz.l0_target import solve_l0
            model = solve_l0(model, self.target_l0, self.target_l0_first_k, first_k=self.first_k,
                             progress=progress)
        if self.rel_p is not None:
            model = apply_rel_p(model, self.rel_p)
        if model is base_model:  # every step was a no-op: never touch the source's notes
            model = base_model.replace()
        model.notes["base"] = _base_label(base_model)
        total = self
        previous = base_model.notes.get("variation")
        if previous:
            try:  # the note describes the whole change from the base
                total = Variation.from_dict(previous).merged(self)
            except ConfigError:
                model.notes["previous_variation"] = previous
        model.notes["variation"] = total.to_dict()
        model.notes["variation_words"] = total.describe()
        return model


def _base_label(model: SynthModel) -> str:
    if model.notes.get("base"):
        return model.notes["base"]
    if model.notes.get("preset"):
        return f"preset {model.notes['preset']}"
    return str(model.notes.get("source", "a model"))


# ---------------------------------------------------------------------------- the families

def apply_seed(model: SynthModel, seed: int, progress: Progress | None = None) -> SynthModel:
    """The source config rebuilt with another seed (every seeded component), disk-cached."""
    if model.cfg.seed == seed:
        return model
    new = build_cached(model.cfg.replace(seed=seed), device=model.device, progress=progress)
    new.notes.update({k: v for k, v in model.notes.items() if k in ("preset", "base")})
    return new


def apply_hidden_dim(model: SynthModel, hidden_dim: int, progress: Progress | None = None
                     ) -> SynthModel:
    if hidden_dim == model.hidden_dim:
        return model
    vectors, bias = build_dictionary(model.cfg, model.num_features, hidden_dim,
                                     device=model.device, progress=progress)
    new = model.replace(cfg=model.cfg.replace(hidden_dim=hidden_dim), feature_vectors=vectors,
                        bias=bias)
    new.notes.pop("source", None)
    return new


def truncate_probability_generator(gen: Any, base_p: torch.Tensor, n: int) -> Any:
    """A generator over n features whose values are the first n of `gen` over N (to rounding).

    Zipfian and linear are affine in their rank term, so keeping max_prob and setting min_prob
    to the value at feature n-1 reproduces the prefix. torch.rand is prefix-consistent, so a random
    generator is unchanged.
    """
    return gen.prefix(base_p, n)


def truncate_magnitude(spec: Any, values: torch.Tensor, n: int, seed: int | None
                       ) -> tuple[Any, torch.Tensor, float]:
    """(spec over n, values over n, max |difference| from values[:n]).

    Uses the slice itself (a view) when the spec regenerates it exactly, else the regenerated
    values, so an exported config reproduces what synthviz shows.
    """
    spec = magnitude_prefix(spec, values, n)
    regenerated = magnitude_values(spec, n, seed).to(values.dtype)
    sliced = values[:n]
    if torch.equal(regenerated, sliced):
        return spec, sliced, 0.0
    return spec, regenerated, float((regenerated - sliced).abs().max())


def truncate_probabilities(model: SynthModel, new_cfg: ModelConfig, forest: Forest | None
                           ) -> tuple[torch.Tensor, float]:
    """(probabilities over n, max |difference| from the source's first n).

    sae_lens regenerates probabilities from the config and compensates them for the stored,
    pruned forest; where a cut leaves an ME group or a parent's children incomplete, that differs
    from the source's compensated prefix. When the source itself is what its config regenerates,
    the truncated model is what the truncated config regenerates (so app, CLI and export agree
    with sae_lens); otherwise the prefix is kept and the export check reports the difference.
    """
    n = new_cfg.num_features
    sliced = model.firing_probabilities[:n]
    full = regenerated_probabilities(model.cfg, model.forest).to(sliced.dtype)
    if not torch.equal(full.to(model.firing_probabilities.device), model.firing_probabilities):
        return sliced, 0.0
    regenerated = regenerated_probabilities(new_cfg, forest).to(sliced.dtype)
    if torch.equal(regenerated, sliced.cpu()):
        return sliced, 0.0
    return regenerated, float((regenerated - sliced.cpu()).abs().max())


def apply_truncation(model: SynthModel, n: int) -> SynthModel:
    """Keep features 0..n-1 of every tensor (views) and prune the hierarchy."""
    cfg = model.cfg
    big = model.num_features
    if n > big:
        raise ConfigError(f"num_features {n} is more than the model's {big} features; "
                          "truncation can only keep a prefix")
    if n == big:
        return model
    base_p = cfg.firing_probability.generate(big, seed=cfg.sub_seed(0))
    fp = truncate_probability_generator(cfg.firing_probability, base_p, n)
    std_spec, std, std_diff = truncate_magnitude(cfg.std_firing_magnitudes, model.std_magnitudes,
                                                 n, cfg.sub_seed(1))
    mean_spec, mean, mean_diff = truncate_magnitude(cfg.mean_firing_magnitudes,
                                                    model.mean_magnitudes, n, cfg.sub_seed(2))
    forest = model.forest.truncate(n) if model.forest is not None else None
    if forest is not None and not forest.roots:
        forest = None
    hier = cfg.hierarchy
    if forest is None:
        hier = None
    elif hier is not None and hier.total_root_nodes > n:
        hier = dataclasses.replace(hier, total_root_nodes=n)
    new_cfg = cfg.replace(num_features=n, firing_probability=fp, hierarchy=hier,
                          std_firing_magnitudes=std_spec, mean_firing_magnitudes=mean_spec)
    p, p_diff = truncate_probabilities(model, new_cfg, forest)
    new = model.replace(
        cfg=new_cfg, feature_vectors=model.feature_vectors[:n],
        firing_probabilities=p, mean_magnitudes=mean,
        std_magnitudes=std, forest=forest,
        correlation_factor=None if model.correlation_factor is None else model.correlation_factor[:n],
        correlation_diag=None if model.correlation_diag is None else model.correlation_diag[:n])
    new.notes.pop("source", None)
    if p_diff:
        # sae_lens recompensates for the pruned forest; see truncate_probabilities
        new.notes["truncation_probability_max_diff"] = p_diff
    if std_diff or mean_diff:
        # sae_lens regenerates magnitudes from the config; see the module docstring
        new.notes["truncation_magnitude_max_diff"] = {"std": std_diff, "mean": mean_diff}
    return new


def hierarchy_config_for(cfg: ModelConfig, v: Variation) -> HierarchyConfig | None:
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
    changes = {}
    for field_name, key in (("roots", "total_root_nodes"), ("branching", "branching_factor"),
                            ("depth", "max_depth"), ("me_portion", "mutually_exclusive_portion"),
                            ("me_min_depth", "mutually_exclusive_min_depth"),
                            ("me_max_depth", "mutually_exclusive_max_depth"),
                            ("compensate", "compensate_probabilities"),
                            ("rescale", "scale_children_by_parent")):
        value = getattr(v, field_name)
        if value is not None:
            changes[key] = value
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


def base_probabilities(cfg: ModelConfig) -> torch.Tensor:
    """The pre-compensation probabilities the config's generator gives (deterministic)."""
    return cfg.firing_probability.generate(cfg.num_features, seed=cfg.sub_seed(0))


def _reuse(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """`old` when equal to `new` (keeps sharing the source tensor), else `new`."""
    new = new.to(old.dtype)
    return old if new.shape == old.shape and torch.equal(new, old) else new


def apply_hierarchy(model: SynthModel, v: Variation) -> SynthModel:
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
                        firing_probabilities=_reuse(p, model.firing_probabilities))
    if model.forest is not None and forest is not None and forest == model.forest:
        new.forest = model.forest  # same structure: keep the source's object (and its caches)
    new.notes["probabilities_clamped"] = clamped
    new.notes.pop("source", None)
    from synthviz.model import validate_rescale
    validate_rescale(new)
    return new


def apply_std(model: SynthModel, std: float) -> SynthModel:
    n = model.num_features
    values = torch.full((n,), float(std), dtype=model.std_magnitudes.dtype)
    new = model.replace(cfg=model.cfg.replace(std_firing_magnitudes=float(std)),
                        std_magnitudes=_reuse(values, model.std_magnitudes))
    new.notes.pop("source", None)
    return new


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
    new.notes.pop("source", None)
    new.notes["rel_p"] = k
    new.notes["rel_p_clamped"] = clamped + over
    if not exact:
        new.notes["config_firing_probability_approximate"] = (
            f"{over} base probabilities exceeded 1 after x {k:g} and were clamped; no "
            "firing_probability generator expresses that, so the config keeps the unscaled one, "
            "which is what sae_lens samples (the export check refuses it unless asked)")
    if clamped + over:
        log.info("rel_p %g: %d feature probabilities clamped to 1", k, clamped + over)
    return new
