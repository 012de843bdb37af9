"""The truncation family (``num_features``): keep features 0..N-1 of everything (views, no
copies); the hierarchy is pruned and a parent left with fewer than 2 children loses ME.

sae_lens rebuilds per-feature magnitudes (and probabilities) from the config, so wherever slicing
cannot be expressed exactly in a config (a truncated linear ramp is off by one float ulp; torch's
normal generator is not prefix-consistent when N % 16 != 0) the truncated model uses the values its
config regenerates, and its `provenance` records the difference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from synthviz.config import ModelConfig, magnitude_values
from synthviz.generators import magnitude_prefix
from synthviz.errors import ConfigError, Progress
from synthviz.hierarchy import Forest
from synthviz.model import SynthModel, regenerated_probabilities
from synthviz.variations.family import Family, Setting, check_integer


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

    def regenerates_itself() -> bool:
        full = regenerated_probabilities(model.cfg, model.forest).to(sliced.dtype)
        return torch.equal(full.to(model.firing_probabilities.device), model.firing_probabilities)
    # asked once per source (every truncation of it asks again)
    if not model.memoized("regenerates_its_probabilities", regenerates_itself):
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
    changes: dict[str, Any] = {}
    if p_diff:
        # sae_lens recompensates for the pruned forest; see truncate_probabilities
        changes["truncation_probability_max_diff"] = p_diff
    if std_diff or mean_diff:
        # sae_lens regenerates magnitudes from the config; see the module docstring
        changes.update(truncation_std_max_diff=std_diff, truncation_mean_max_diff=mean_diff)
    new.provenance = new.provenance.derived(**changes)
    new.prefix_of = model
    return new


class TruncationFamily(Family):
    name = "num_features"
    settings = (Setting("num_features", "int | None", "keep the first N features", parse=int),)

    def check(self, v, set_) -> None:
        check_integer(v, set_, "num_features", 1)

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        return apply_truncation(model, v.num_features)

    def describe(self, v) -> str:
        return f"truncated to the first {v.num_features} features"


TRUNCATION = TruncationFamily()
