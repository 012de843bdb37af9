"""`Variation`: one immutable value holding any mix of the registered variation families.

Its fields are the families' settings, in registry order, which is also the order of application,
so a composed variation equals applying its parts one after another (`Variation.parts()`).
None means "keep the source's".
"""

from __future__ import annotations

import dataclasses
from typing import Any

from synthviz.errors import ConfigError, Progress
from synthviz.model import SynthModel
from synthviz.strict import from_fields
from synthviz.variations.registry import FAMILIES, family


class _VariationMethods:
    """The behaviour of `Variation`; the fields come from the registry (see `_make`)."""

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        for fam in FAMILIES:
            fam.check(self, set_)

    # ------------------------------------------------------------------ description
    def is_identity(self) -> bool:
        return not any(fam.is_set(self) for fam in FAMILIES)

    def sets(self, family_name: str) -> bool:
        """Whether this variation changes the named family."""
        return family(family_name).is_set(self)

    @property
    def changes_hierarchy(self) -> bool:
        return self.sets("hierarchy")

    def to_dict(self) -> dict[str, Any]:
        """Only the fields that are set (a family's options only alongside its settings)."""
        out = {}
        for fam in FAMILIES:
            active = fam.is_set(self)
            for s in fam.settings:
                v = getattr(self, s.name)
                if (active if s.option else v is not None):
                    out[s.name] = list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None):
        return from_fields(cls, d, "variation")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def merged(self, other):
        """This variation with every field `other` sets overriding it."""
        return self.replace(**{k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in other.to_dict().items()})

    def parts(self) -> list:
        """Single-family pieces in application order; applying them in turn equals `apply`."""
        return [type(self)(**{n: getattr(self, n) for n in fam.field_names})
                for fam in FAMILIES if fam.is_set(self)]

    def describe(self) -> str:
        """The variation in words, e.g. 'hidden dim 512; constant magnitude std 0'."""
        if self.is_identity():
            return "no variation"
        return "; ".join(fam.describe(self) for fam in FAMILIES if fam.is_set(self))

    # ------------------------------------------------------------------ applying
    def apply(self, base_model: SynthModel, progress: Progress | None = None) -> SynthModel:
        """A new model: `base_model` with this variation; untouched tensors are shared."""
        if self.is_identity():
            return base_model
        model = base_model
        for fam in FAMILIES:
            if fam.is_set(self):
                model = fam.apply(model, self, progress)
        if model is base_model:  # every step was a no-op: never touch the source's record
            model = base_model.replace()
        total = self
        changes: dict[str, Any] = {"base": base_model.provenance.base_label()}
        previous = base_model.provenance.variation
        if previous:
            try:  # the record describes the whole change from the base
                total = type(self).from_dict(previous).merged(self)
            except ConfigError:
                changes["previous_variation"] = previous
        changes.update(variation=total.to_dict(), variation_words=total.describe())
        model.provenance = model.provenance.replace(**changes)
        return model


def _make() -> type:
    fields = [(s.name, s.annotation, dataclasses.field(default=s.default))
              for fam in FAMILIES for s in fam.settings]
    doc = ("Any mix of the variation families; None means \"keep the source's\". Field order "
           "is the order of application. Fields: " + ", ".join(f[0] for f in fields) + ".")
    return dataclasses.make_dataclass("Variation", fields, bases=(_VariationMethods,),
                                      frozen=True, namespace={"__doc__": doc,
                                                              "__module__": __name__})


Variation = _make()
