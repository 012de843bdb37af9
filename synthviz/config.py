"""Model configuration: dataclasses that read and write sae_lens's `synthetic_model_config.json`.

Every generator is a small dataclass registered under the `generator_name` sae_lens uses, so a
config round-trips through JSON unchanged. Parsing is strict: unknown generator names, unknown
or missing fields, and out-of-range values raise `ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from synthviz.errors import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
          "bfloat16": torch.bfloat16}


def torch_dtype(name: str) -> torch.dtype:
    key = name.removeprefix("torch.")
    if key not in DTYPES:
        raise ConfigError(f"dtype: unknown dtype {name!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[key]


def _num(value: Any, where: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be finite, got {value!r}")
    return value


def _int(value: Any, where: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value


def _take_fields(cls: type, d: dict[str, Any], where: str, skip: tuple[str, ...] = ()) -> dict:
    """Check `d` holds exactly the dataclass's fields (defaults may be omitted)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    extra = set(d) - names - set(skip)
    if extra:
        raise ConfigError(f"{where}: unknown field(s) {sorted(extra)}")
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = required - set(d)
    if missing:
        raise ConfigError(f"{where}: missing field(s) {sorted(missing)}")
    return {k: v for k, v in d.items() if k in names}


class _Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls):
        self[cls.generator_name] = cls
        return cls

    def parse(self, d: Any, where: str):
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected an object with generator_name, got {d!r}")
        name = d.get("generator_name")
        if name is None:
            raise ConfigError(f"{where}: missing field 'generator_name'")
        if name not in self:
            raise ConfigError(f"{where}: unknown {self.kind} generator {name!r}; "
                              f"known: {sorted(self)}")
        cls = self[name]
        kwargs = _take_fields(cls, d, where, skip=("generator_name",))
        return cls(**kwargs)


FIRING_PROBABILITIES = _Registry("firing probability")
MAGNITUDES = _Registry("magnitude")


class _Generator:
    generator_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["generator_name"] = self.generator_name
        return d


# ---------------------------------------------------------------- firing probabilities

@FIRING_PROBABILITIES.register
@dataclass
class ZipfianProbability(_Generator):
    """p proportional to rank^-exponent, rescaled so feature 0 has max_prob and the last min_prob."""
    generator_name: ClassVar[str] = "zipfian"
    exponent: float = 1.0
    max_prob: float = 0.3
    min_prob: float = 0.01

    def __post_init__(self):
        _num(self.exponent, "firing_probability.exponent")
        if self.exponent <= 0:
            raise ConfigError("firing_probability.exponent must be positive")
        _check_prob_range(self.min_prob, self.max_prob, strict=True)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.max_prob])
        ranks = torch.arange(1, n + 1, dtype=torch.float32)
        raw = 1.0 / ranks**self.exponent
        lo, hi = raw.min(), raw.max()
        return self.min_prob + (self.max_prob - self.min_prob) * (raw - lo) / (hi - lo)


@FIRING_PROBABILITIES.register
@dataclass
class LinearProbability(_Generator):
    """Linear ramp from max_prob (feature 0) to min_prob (last feature)."""
    generator_name: ClassVar[str] = "linear"
    max_prob: float = 0.3
    min_prob: float = 0.01

    def __post_init__(self):
        _check_prob_range(self.min_prob, self.max_prob, strict=False)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.max_prob])
        return torch.linspace(self.max_prob, self.min_prob, n)


@FIRING_PROBABILITIES.register
@dataclass
class RandomProbability(_Generator):
    """Uniform in [min_prob, max_prob], drawn from the probability seed."""
    generator_name: ClassVar[str] = "random"
    max_prob: float = 0.5
    min_prob: float = 0.01

    def __post_init__(self):
        _check_prob_range(self.min_prob, self.max_prob, strict=True)

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator()
        if seed is not None:
            gen.manual_seed(seed)
        u = torch.rand(n, generator=gen, dtype=torch.float32)
        return self.min_prob + (self.max_prob - self.min_prob) * u


@FIRING_PROBABILITIES.register
@dataclass
class ConstantProbability(_Generator):
    generator_name: ClassVar[str] = "constant"
    probability: float = 0.1

    def __post_init__(self):
        # sae_lens checks nothing here; a value outside [0, 1] is refused at build unless the
        # hierarchy compensation clamps it back (see model.check_probabilities)
        _num(self.probability, "firing_probability.probability")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        return torch.full((n,), self.probability, dtype=torch.float32)


def _check_prob_range(lo: Any, hi: Any, strict: bool) -> None:
    _num(lo, "firing_probability.min_prob")
    _num(hi, "firing_probability.max_prob")
    ok = (0 < lo < hi <= 1) if strict else (0 < lo <= hi <= 1)
    if not ok:
        rel = "<" if strict else "<="
        raise ConfigError(f"firing_probability: need 0 < min_prob {rel} max_prob <= 1, "
                          f"got min_prob={lo}, max_prob={hi}")


# ---------------------------------------------------------------- magnitudes

@MAGNITUDES.register
@dataclass
class ConstantMagnitude(_Generator):
    generator_name: ClassVar[str] = "constant"
    value: float = 1.0

    def __post_init__(self):
        _num(self.value, "magnitude.value")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        return torch.full((n,), self.value, dtype=torch.float32)


@MAGNITUDES.register
@dataclass
class LinearMagnitude(_Generator):
    """value_i = start + (end - start) * i / (n - 1)."""
    generator_name: ClassVar[str] = "linear"
    start: float
    end: float

    def __post_init__(self):
        _num(self.start, "magnitude.start")
        _num(self.end, "magnitude.end")
        if self.start <= 0 or self.end <= 0:
            raise ConfigError("magnitude: linear start and end must be positive")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.start], dtype=torch.float32)
        return torch.linspace(self.start, self.end, n)


@MAGNITUDES.register
@dataclass
class ExponentialMagnitude(_Generator):
    """value_i = start * (end / start) ** (i / (n - 1))."""
    generator_name: ClassVar[str] = "exponential"
    start: float
    end: float

    def __post_init__(self):
        _num(self.start, "magnitude.start")
        _num(self.end, "magnitude.end")
        if self.start <= 0 or self.end <= 0:
            raise ConfigError("magnitude: exponential start and end must be positive")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        if n == 1:
            return torch.tensor([self.start], dtype=torch.float32)
        return self.start * (self.end / self.start) ** torch.linspace(0, 1, n)


@MAGNITUDES.register
@dataclass
class FoldedNormalMagnitude(_Generator):
    """|N(mean, std^2)| per feature, optionally clamped to [min_value, max_value]."""
    generator_name: ClassVar[str] = "folded_normal"
    mean: float = 0.0
    std: float = 0.1
    min_value: float | None = None
    max_value: float | None = None

    def __post_init__(self):
        _num(self.mean, "magnitude.mean")
        _num(self.std, "magnitude.std")
        _num(self.min_value, "magnitude.min_value", allow_none=True)
        _num(self.max_value, "magnitude.max_value", allow_none=True)
        if self.std <= 0:
            raise ConfigError("magnitude: folded_normal std must be positive")
        if self.min_value is not None and self.min_value < 0:
            raise ConfigError("magnitude: folded_normal min_value must be non-negative")
        if self.max_value is not None and self.max_value <= 0:
            raise ConfigError("magnitude: folded_normal max_value must be positive")
        if (self.min_value is not None and self.max_value is not None
                and self.min_value > self.max_value):
            raise ConfigError("magnitude: folded_normal min_value must be <= max_value")

    def generate(self, n: int, seed: int | None = None) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        x = (self.mean + torch.randn(n, generator=gen) * self.std).abs()
        if self.min_value is not None or self.max_value is not None:
            x = x.clamp(min=self.min_value, max=self.max_value)
        return x


Magnitude = float | ConstantMagnitude | LinearMagnitude | ExponentialMagnitude | FoldedNormalMagnitude


def magnitude_values(spec: Magnitude, n: int, seed: int | None) -> torch.Tensor:
    if isinstance(spec, (int, float)):
        return torch.full((n,), float(spec), dtype=torch.float32)
    return spec.generate(n, seed=seed)


def _magnitude_from_json(value: Any, where: str) -> Magnitude:
    if isinstance(value, dict):
        return MAGNITUDES.parse(value, where)
    return float(_num(value, where))


def _magnitude_to_json(value: Magnitude) -> Any:
    return value.to_dict() if isinstance(value, _Generator) else value


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
            v = getattr(self, name)
            if not isinstance(v, (bool, int)) or v not in (0, 1):
                raise ConfigError(f"{w}.{name}: expected true or false, got {v!r}")

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
            "std_firing_magnitudes": _magnitude_to_json(self.std_firing_magnitudes),
            "mean_firing_magnitudes": _magnitude_to_json(self.mean_firing_magnitudes),
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
        kw["std_firing_magnitudes"] = _magnitude_from_json(d.get("std_firing_magnitudes", 0.0),
                                                           "std_firing_magnitudes")
        kw["mean_firing_magnitudes"] = _magnitude_from_json(d.get("mean_firing_magnitudes", 1.0),
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
