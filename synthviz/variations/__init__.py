"""Variations of a model: the `Variation` value and the ordered registry of its families.

Families, in the order a `Variation` applies them (`registry.FAMILIES`):

1. ``seed`` (`seed`): rebuild the source config with a new seed (every seeded component).
2. ``hidden_dim`` (`hidden_dim`): a new orthogonalized dictionary at dimension D'.
3. ``num_features`` (`truncation`): keep the first N features of everything; prune the hierarchy.
4. hierarchy (`hierarchy`): a new forest over the current features, probabilities re-compensated.
5. ``std`` (`std`): one constant firing-magnitude std for every feature.
6. ``target_l0`` (`target_l0`): firing probabilities solved for an L0 (and a first-K L0).
7. ``rel_p`` (`rel_p`): the base probabilities x k, compensated as the base is, clamped to 1.

Every result keeps a config that regenerates it, and its `provenance` records the variation and
anything the config cannot say exactly.
"""

from synthviz.variations.family import Family, Setting
from synthviz.variations.hierarchy import HIERARCHY_FIELDS, parse_branching
from synthviz.variations.registry import FAMILIES, family
from synthviz.variations.target_l0 import TARGET_FIELDS
from synthviz.variations.value import Variation

__all__ = ["FAMILIES", "Family", "HIERARCHY_FIELDS", "Setting", "TARGET_FIELDS", "Variation",
           "family", "parse_branching"]
