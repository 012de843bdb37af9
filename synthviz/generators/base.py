"""What every generator shares: JSON in sae_lens's shape, a description, and the registry type."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from synthviz.config_fields import take_fields
from synthviz.errors import ConfigError
from synthviz.registry import Registry


class Generator:
    """A generator config: a dataclass with a `generator_name` (sae_lens's) and `generate(n, seed)`."""
    generator_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["generator_name"] = self.generator_name
        return d

    def describe(self) -> str:
        """The generator in words, e.g. ``zipfian (exponent=0.5, max_prob=0.4, min_prob=0.0005)``."""
        d = dataclasses.asdict(self)
        args = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in d.items() if v is not None)
        return f"{self.generator_name} ({args})"


def spec_words(spec: Any) -> str:
    """A generator, or a plain number (a constant magnitude), in words."""
    if isinstance(spec, (int, float)):
        return f"constant {spec:g}"
    return spec.describe()


class GeneratorRegistry(Registry):
    """Generator classes by `generator_name`; `parse` reads one from its JSON object."""

    def add(self, cls: type) -> type:
        """Class decorator: register `cls` under its generator_name."""
        return self.register(cls.generator_name, cls)

    def parse(self, d: Any, where: str):
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: expected an object with generator_name, got {d!r}")
        name = d.get("generator_name")
        if name is None:
            raise ConfigError(f"{where}: missing field 'generator_name'")
        cls = self.get_or_raise(name, where)
        return cls(**take_fields(cls, d, where, skip=("generator_name",)))
