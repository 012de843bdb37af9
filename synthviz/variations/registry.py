"""The ordered registry of variation families: the order in which a `Variation` applies them.

A new family is one module (a `Family` subclass and its instance) plus one entry here; the
`Variation` fields, its checks, description and CLI flags follow from this tuple.
"""

from __future__ import annotations

from synthviz.variations.family import Family
from synthviz.variations.hidden_dim import HIDDEN_DIM
from synthviz.variations.hierarchy import HIERARCHY
from synthviz.variations.rel_p import REL_P
from synthviz.variations.seed import SEED
from synthviz.variations.std import STD
from synthviz.variations.target_l0 import TARGET_L0
from synthviz.variations.truncation import TRUNCATION

FAMILIES: tuple[Family, ...] = (SEED, HIDDEN_DIM, TRUNCATION, HIERARCHY, STD, TARGET_L0, REL_P)


def family(name: str) -> Family:
    """The registered family called `name`."""
    for fam in FAMILIES:
        if fam.name == name:
            return fam
    raise KeyError(name)


def _check_unique() -> None:
    names = [s.name for fam in FAMILIES for s in fam.settings]
    flags = [s.cli_flag for fam in FAMILIES for s in fam.settings]
    if len(set(names)) != len(names) or len(set(flags)) != len(flags):
        raise RuntimeError("variation families share a field or a flag name")


_check_unique()
