"""Generators carry their own behaviour: scaling, prefixes, words, the solver's unit shape; and
the registry they are parsed through."""

from __future__ import annotations

import pytest
import torch

from synthviz.config import ModelConfig, base_config
from synthviz.errors import ConfigError
from synthviz.generators import (FIRING_PROBABILITIES, MAGNITUDES, ConstantMagnitude,
                                 ConstantProbability, ExponentialMagnitude, FoldedNormalMagnitude,
                                 LinearMagnitude, LinearProbability, RandomProbability,
                                 ZipfianProbability, magnitude_prefix, magnitude_values,
                                 spec_words)
from synthviz.registry import Registry

N = 1000
PROBS = [ZipfianProbability(exponent=0.5, max_prob=0.4, min_prob=5e-4),
         LinearProbability(max_prob=0.3, min_prob=0.01), RandomProbability(max_prob=0.2, min_prob=0.01),
         ConstantProbability(probability=0.05)]
MAGS = [ConstantMagnitude(value=2.0), LinearMagnitude(start=5.0, end=4.0),
        ExponentialMagnitude(start=1.0, end=3.0), FoldedNormalMagnitude(mean=0.5, std=0.5), 1.5]


@pytest.mark.parametrize("gen", PROBS, ids=lambda g: g.generator_name)
@pytest.mark.parametrize("seed", [7, None])
def test_unit_shape_gives_the_generated_values(gen, seed):
    lo, hi = gen.value_range
    got = lo + (hi - lo) * gen.unit_shape(N, seed)
    want = gen.generate(N, seed=seed).double()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-8)  # float32 generation
    assert gen.with_range(lo, hi) == gen


@pytest.mark.parametrize("gen", PROBS, ids=lambda g: g.generator_name)
def test_scaled_generators_scale_the_values(gen):
    scaled, exact = gen.scaled(0.5)
    assert exact and type(scaled) is type(gen)
    assert torch.allclose(scaled.generate(N, seed=3), 0.5 * gen.generate(N, seed=3), rtol=1e-5)


def test_scaling_past_one():
    gen = ZipfianProbability(exponent=0.5, max_prob=0.4, min_prob=5e-4)
    assert gen.scaled(3.0) == (gen, False)  # no generator says "scaled, then clamped"
    assert ConstantProbability(probability=0.4).scaled(3.0) == (ConstantProbability(1.0), True)


@pytest.mark.parametrize("gen", PROBS, ids=lambda g: g.generator_name)
@pytest.mark.parametrize("n", [1, 2, 317, N])
def test_probability_prefix_regenerates_the_first_values(gen, n):
    full = gen.generate(N, seed=5)
    short = gen.prefix(full, n)
    assert torch.allclose(short.generate(n, seed=5), full[:n], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("spec", MAGS, ids=lambda s: spec_words(s).split()[0])
@pytest.mark.parametrize("n", [1, 317])
def test_magnitude_prefix_regenerates_the_first_values(spec, n):
    full = magnitude_values(spec, N, seed=9)
    short = magnitude_prefix(spec, full, n)
    if isinstance(spec, FoldedNormalMagnitude):  # seeded draws keep their parameters
        assert short == spec
    else:
        assert torch.allclose(magnitude_values(short, n, seed=9), full[:n], rtol=1e-5)
    with pytest.raises(ConfigError, match="cannot truncate"):
        magnitude_prefix(object(), full, n)


def test_words():
    cfg = base_config()
    assert cfg.firing_probability.describe() == ("zipfian (exponent=0.5, max_prob=0.4, "
                                                 "min_prob=0.0005)")
    assert spec_words(cfg.std_firing_magnitudes) == "folded_normal (mean=0.5, std=0.5)"
    assert spec_words(2.5) == "constant 2.5"


def test_registries_parse_and_refuse():
    assert list(FIRING_PROBABILITIES) == ["zipfian", "linear", "random", "constant"]
    assert list(MAGNITUDES) == ["constant", "linear", "exponential", "folded_normal"]
    with pytest.raises(ConfigError, match="unknown firing probability generator 'nope'"):
        FIRING_PROBABILITIES.parse({"generator_name": "nope"}, "firing_probability")
    with pytest.raises(ConfigError, match="unknown field"):
        MAGNITUDES.parse({"generator_name": "constant", "value": 1.0, "x": 2}, "magnitude")
    reg = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get_or_raise("a") == 1


def test_compensates():
    cfg = base_config()
    assert cfg.compensates
    assert not cfg.replace(hierarchy=None).compensates
    d = cfg.to_dict()
    d["hierarchy"]["compensate_probabilities"] = 0
    assert not ModelConfig.from_dict(d).compensates
