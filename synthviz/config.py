"""Model configuration: dataclasses that read and write sae_lens's `synthetic_model_config.json`.

`ModelConfig` holds the structure configs defined here (hierarchy, orthogonalization,
correlation) and the generators of `synthviz.generators` (re-exported here). Parsing is strict:
unknown generator names, unknown or missing fields, and out-of-range values raise `ConfigError`
naming the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from synthviz.config_fields import integer as _int
from synthviz.config_fields import number as _num
from synthviz.config_fields import take_fields as _take_fields
from synthviz.errors import ConfigError, ModelFileError
from synthviz.generators import (
    FIRING_PROBABILITIES, MAGNITUDES, ConstantMagnitude, ConstantProbability,
    ExponentialMagnitude, FoldedNormalMagnitude, LinearMagnitude, LinearProbability, Magnitude,
    RandomProbability, ZipfianProbability, magnitude_from_json, magnitude_to_json,
    magnitude_values)
from synthviz.hierarchy_nodes import truth_value

__all__ = [
    "DTYPES", "FIRING_PROBABILITIES", "MAGNITUDES", "ConstantMagnitude", "ConstantProbability",
    "CorrelationConfig", "ExponentialMagnitude", "FoldedNormalMagnitude", "HierarchyConfig",
    "LinearMagnitude", "LinearProbability", "Magnitude", "ModelConfig", "OrthogonalizationConfig",
    "RandomProbability", "ZipfianProbability", "base_config", "magnitude_values", "torch_dtype",
]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    key = name.removeprefix("torch.")
    if key not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[key]


# ---------------------------------------------------------------- structure configs

@dataclass
class HierarchyConfig:
    """A forest built breadth-first: roots take indices 0.., then their children, and so on."""
    total_root_nodes: int = 100
    branching_factor: int | tuple[int, int] = 100
    max_depth: int = 2
    mutually_exclusive_portion: float = 0.0
    mutually_exclusive_min_depth: int = 0
    mutually_exclusive_max_depth: int | None = None
    compensate_probabilities: bool = False
    scale_children_by_parent: bool = False

    def __post_init__(self):
        w = "hierarchy"
        self.total_root_nodes = _int(self.total_root_nodes, f"{w}.total_root_nodes")
        if self.total_root_nodes <= 0:
            raise ConfigError(f"{w}.total_root_nodes must be positive, got {self.total_root_nodes}")
        bf = self.branching_factor
        if isinstance(bf, (list, tuple)):
            if len(bf) != 2:
                raise ConfigError(f"{w}.branching_factor: expected an int or [min, max], got {bf!r}")
            lo, hi = (_int(b, f"{w}.branching_factor") for b in bf)
            if lo > hi:
                raise ConfigError(f"{w}.branching_factor: min {lo} > max {hi}")
            if lo < 2:
                raise ConfigError(f"{w}.branching_factor: min must be at least 2, got {lo}")
            self.branching_factor = (lo, hi)
        else:
            bf = _int(bf, f"{w}.branching_factor")
            if bf < 2:
                raise ConfigError(f"{w}.branching_factor must be at least 2, got {bf}")
            self.branching_factor = bf
        self.max_depth = _int(self.max_depth, f"{w}.max_depth")
        if self.max_depth < 1:
            raise ConfigError(f"{w}.max_depth must be at least 1, got {self.max_depth}")
        _num(self.mutually_exclusive_portion, f"{w}.mutually_exclusive_portion")
        if not 0.0 <= self.mutually_exclusive_portion <= 1.0:
            raise ConfigError(f"{w}.mutually_exclusive_portion must be in [0, 1], "
                              f"got {self.mutually_exclusive_portion}")
        self.mutually_exclusive_min_depth = _int(self.mutually_exclusive_min_depth,
                                                 f"{w}.mutually_exclusive_min_depth")
        if self.mutually_exclusive_min_depth < 0:
            raise ConfigError(f"{w}.mutually_exclusive_min_depth must be non-negative")
        self.mutually_exclusive_max_depth = _int(self.mutually_exclusive_max_depth,
                                                 f"{w}.mutually_exclusive_max_depth", allow_none=True)
        if (self.mutually_exclusive_max_depth is not None
                and self.mutually_exclusive_max_depth < self.mutually_exclusive_min_depth):
            raise ConfigError(f"{w}.mutually_exclusive_max_depth must be >= mutually_exclusive_min_depth")
        for name in ("compensate_probabilities", "scale_children_by_parent"):
            # sae_lens reads these by truth value, so 0 and 1 work as well as false and true
            try:
                setattr(self, name, truth_value(getattr(self, name), f"{w}.{name}"))
            except ModelFileError as exc:
                raise ConfigError(str(exc)) from None

    @property
    def branching_range(self) -> tuple[int, int]:
        bf = self.branching_factor
        return (bf, bf) if isinstance(bf, int) else bf

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if not isinstance(self.branching_factor, int):
            d["branching_factor"] = list(self.branching_factor)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HierarchyConfig:
        return cls(**_take_fields(cls, d, "hierarchy"))


@dataclass
class OrthogonalizationConfig:
    num_steps: int = 200
    lr: float = 0.01
    chunk_size: int = 1024  # kept for the format; the Gram form needs no chunking

    def __post_init__(self):
        self.num_steps = _int(self.num_steps, "orthogonalization.num_steps")
        self.chunk_size = _int(self.chunk_size, "orthogonalization.chunk_size")
        _num(self.lr, "orthogonalization.lr")
        # sae_lens runs max(num_steps, 0) steps; torch's Adam refuses a negative lr; a chunk
        # size of 0 stops its loop with an error, a negative one makes every step a no-op
        if self.lr < 0:
            raise ConfigError("orthogonalization.lr must be non-negative")
        if self.chunk_size == 0:
            raise ConfigError("orthogonalization.chunk_size must not be 0")

    @property
    def effective_steps(self) -> int:
        """Adam steps that move the vectors (sae_lens's loop does nothing for the others)."""
        return max(self.num_steps, 0) if self.chunk_size > 0 else 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OrthogonalizationConfig:
        return cls(**_take_fields(cls, d, "orthogonalization"))


@dataclass
class CorrelationConfig:
    """Low-rank Gaussian copula: factor = correlation_scale * randn(N, rank)."""
    rank: int = 32
    correlation_scale: float = 0.1
    seed: int | None = None

    def __post_init__(self):
        self.rank = _int(self.rank, "correlation.rank")
        _num(self.correlation_scale, "correlation.correlation_scale")
        self.seed = _int(self.seed, "correlation.seed", allow_none=True)
        if self.rank <= 0:
            raise ConfigError(f"correlation.rank must be positive, got {self.rank}")
        if self.correlation_scale < 0:
            raise ConfigError("correlation.correlation_scale must be non-negative")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CorrelationConfig:
        return cls(**_take_fields(cls, d, "correlation"))


@dataclass
class ModelConfig:
    """The whole model definition, as `synthetic_model_config.json` stores it."""
    num_features: int
    hidden_dim: int
    firing_probability: Any = field(default_factory=ZipfianProbability)
    hierarchy: HierarchyConfig | None = None
    orthogonalization: OrthogonalizationConfig | None = None
    correlation: CorrelationConfig | None = None
    std_firing_magnitudes: Magnitude = 0.0
    mean_firing_magnitudes: Magnitude = 1.0
    bias: bool | float | None = 1.0
    dtype: str = "float32"
    seed: int | None = None

    def __post_init__(self):
        self.num_features = _int(self.num_features, "num_features")
        self.hidden_dim = _int(self.hidden_dim, "hidden_dim")
        if self.num_features < 1:
            raise ConfigError(f"num_features must be at least 1, got {self.num_features}")
        if self.hidden_dim < 1:
            raise ConfigError(f"hidden_dim must be at least 1, got {self.hidden_dim}")
        # a negative norm gives a bias pointing the other way, null none (as in sae_lens)
        if self.bias is not None and not isinstance(self.bias, bool):
            _num(self.bias, "bias")
        torch_dtype(self.dtype)
        self.seed = _int(self.seed, "seed", allow_none=True)
        # total_root_nodes may exceed num_features: the generator stops when features run out

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch_dtype(self.dtype)

    @property
    def compensates(self) -> bool:
        """Whether the hierarchy's probability compensation is on (false without a hierarchy)."""
        return bool(self.hierarchy and self.hierarchy.compensate_probabilities)

    def sub_seed(self, offset: int) -> int | None:
        """Seeds follow sae_lens: probabilities +0, std +1, mean +2, hierarchy +3, correlation +4."""
        return None if self.seed is None else self.seed + offset

    def to_dict(self) -> dict[str, Any]:
        return {
            "num_features": self.num_features,
            "hidden_dim": self.hidden_dim,
            "firing_probability": self.firing_probability.to_dict(),
            "hierarchy": self.hierarchy.to_dict() if self.hierarchy else None,
            "orthogonalization": self.orthogonalization.to_dict() if self.orthogonalization else None,
            "correlation": self.correlation.to_dict() if self.correlation else None,
            "std_firing_magnitudes": magnitude_to_json(self.std_firing_magnitudes),
            "mean_firing_magnitudes": magnitude_to_json(self.mean_firing_magnitudes),
            "bias": self.bias,
            "dtype": self.dtype,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        kw = _take_fields(cls, d, "config")
        kw["firing_probability"] = FIRING_PROBABILITIES.parse(
            d.get("firing_probability", {"generator_name": "zipfian"}), "firing_probability")
        for key, sub in (("hierarchy", HierarchyConfig), ("orthogonalization", OrthogonalizationConfig),
                         ("correlation", CorrelationConfig)):
            kw[key] = sub.from_dict(d[key]) if d.get(key) is not None else None
        kw["std_firing_magnitudes"] = magnitude_from_json(d.get("std_firing_magnitudes", 0.0),
                                                           "std_firing_magnitudes")
        kw["mean_firing_magnitudes"] = magnitude_from_json(d.get("mean_firing_magnitudes", 1.0),
                                                            "mean_firing_magnitudes")
        return cls(**kw)

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def base_config() -> ModelConfig:
    """SynthSAEBench-16k exactly as the paper configures it (with child rescaling)."""
    return ModelConfig(
        num_features=16384,
        hidden_dim=768,
        firing_probability=ZipfianProbability(exponent=0.5, max_prob=0.4, min_prob=5e-4),
        hierarchy=HierarchyConfig(total_root_nodes=128, branching_factor=4, max_depth=3,
                                  mutually_exclusive_portion=1.0, mutually_exclusive_min_depth=0,
                                  mutually_exclusive_max_depth=None, compensate_probabilities=True,
                                  scale_children_by_parent=True),
        orthogonalization=OrthogonalizationConfig(num_steps=100, lr=3e-4, chunk_size=1024),
        correlation=CorrelationConfig(rank=25, correlation_scale=0.1, seed=None),
        std_firing_magnitudes=FoldedNormalMagnitude(mean=0.5, std=0.5),
        mean_firing_magnitudes=LinearMagnitude(start=5.0, end=4.0),
        bias=0.5,
        dtype="float32",
        seed=42,
    )
