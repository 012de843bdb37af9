"""Firing-probability and magnitude generators: sae_lens's generator configs, with their behaviour.

Each generator is a small dataclass registered under the `generator_name` sae_lens uses, so a
config round-trips through JSON unchanged. Besides `generate`, a generator knows how to scale itself
(`scaled`), which generator gives the prefix of its values (`prefix`), and how to say itself in
words (`describe`); probability generators also expose the affine shape the L0 solver works on.
"""

from synthviz.generators.base import Generator, GeneratorRegistry, spec_words
from synthviz.generators.magnitude import (MAGNITUDES, ConstantMagnitude, ExponentialMagnitude,
                                           FoldedNormalMagnitude, LinearMagnitude, Magnitude,
                                           MagnitudeGenerator, magnitude_from_json,
                                           magnitude_prefix, magnitude_to_json, magnitude_values)
from synthviz.generators.probability import (FIRING_PROBABILITIES, ConstantProbability,
                                             LinearProbability, ProbabilityGenerator,
                                             RandomProbability, ZipfianProbability)

__all__ = [
    "FIRING_PROBABILITIES", "MAGNITUDES", "ConstantMagnitude", "ConstantProbability",
    "ExponentialMagnitude", "FoldedNormalMagnitude", "Generator", "GeneratorRegistry",
    "LinearMagnitude", "LinearProbability", "Magnitude", "MagnitudeGenerator",
    "ProbabilityGenerator", "RandomProbability", "ZipfianProbability", "magnitude_from_json",
    "magnitude_prefix", "magnitude_to_json", "magnitude_values", "spec_words",
]
