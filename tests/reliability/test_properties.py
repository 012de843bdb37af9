"""Issue 8.6: property tests over the config space (hypothesis, derandomized, bounded).

- Any valid config survives to_dict -> JSON -> from_dict unchanged, and sae_lens's own
  SyntheticModelConfig reads it and writes back the very same dict.
- Any small valid model samples with no ME violation and no orphan child (sparse and dense
  samplers), and save -> load gives identical tensors, magnitudes and hierarchy.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synthviz
from synthviz.config import ModelConfig
from synthviz.model import build_model
from synthviz.stats.validity import validity_counts

# fixed seed (derandomize), bounded examples, no deadline (the machine is shared)
CONFIG_SETTINGS = settings(derandomize=True, max_examples=300, deadline=None, database=None,
                           suppress_health_check=[HealthCheck.too_slow])
BUILD_SETTINGS = settings(derandomize=True, max_examples=20, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])

finite = dict(allow_nan=False, allow_infinity=False)
prob = st.floats(min_value=1e-6, max_value=1.0, **finite)
seed = st.none() | st.integers(min_value=0, max_value=2**31 - 1)


@st.composite
def firing_probability(draw):
    kind = draw(st.sampled_from(["zipfian", "linear", "random", "constant"]))
    if kind == "constant":
        return {"generator_name": kind, "probability": draw(st.floats(0.0, 1.0, **finite))}
    a, b = sorted(draw(st.lists(prob, min_size=2, max_size=2, unique=True)))
    if kind == "linear" and draw(st.booleans()):
        a = b  # linear allows min == max
    d = {"generator_name": kind, "max_prob": b, "min_prob": a}
    if kind == "zipfian":
        d["exponent"] = draw(st.floats(0.01, 4.0, **finite))
    return d


@st.composite
def magnitude(draw, positive: bool = False):
    kind = draw(st.sampled_from(["number", "constant", "linear", "exponential", "folded_normal"]))
    pos = st.floats(0.01, 20.0, **finite)
    if kind == "number":
        return draw(pos if positive else st.floats(0.0, 20.0, **finite))
    if kind == "constant":
        return {"generator_name": kind, "value": draw(pos if positive else
                                                      st.floats(-5.0, 20.0, **finite))}
    if kind in ("linear", "exponential"):
        return {"generator_name": kind, "start": draw(pos), "end": draw(pos)}
    lo = draw(st.floats(0.01, 2.0, **finite) if positive else
              st.none() | st.floats(0.0, 2.0, **finite))
    hi = draw(st.none() | st.floats(2.0, 30.0, **finite))
    return {"generator_name": kind, "mean": draw(st.floats(-3.0, 10.0, **finite)),
            "std": draw(st.floats(0.01, 5.0, **finite)), "min_value": lo, "max_value": hi}


@st.composite
def hierarchy(draw, num_features: int, max_roots: int = 10**6, max_depth: int = 8):
    if draw(st.booleans()):
        branching = draw(st.integers(2, 64))
    else:
        lo = draw(st.integers(2, 16))
        branching = [lo, draw(st.integers(lo, 32))]
    me_min = draw(st.integers(0, 4))
    return {
        "total_root_nodes": draw(st.integers(1, min(num_features, max_roots))),
        "branching_factor": branching,
        "max_depth": draw(st.integers(1, max_depth)),
        "mutually_exclusive_portion": draw(st.floats(0.0, 1.0, **finite)),
        "mutually_exclusive_min_depth": me_min,
        "mutually_exclusive_max_depth": draw(st.none() | st.integers(me_min, me_min + 4)),
        "compensate_probabilities": draw(st.booleans()),
        "scale_children_by_parent": draw(st.booleans()),
    }


@st.composite
def config_dict(draw, max_n: int = 10**6, max_d: int = 4096, max_steps: int = 1000,
                max_rank: int = 64, positive_mean: bool = False, seeded: bool = False):
    n = draw(st.integers(1, max_n))
    return {
        "num_features": n,
        "hidden_dim": draw(st.integers(1, max_d)),
        "firing_probability": draw(firing_probability()),
        "hierarchy": draw(st.none() | hierarchy(n, max_roots=max(1, n // 4) if max_n < 10**6
                                                 else 10**6,
                                                 max_depth=3 if max_n < 10**6 else 8)),
        "orthogonalization": draw(st.none() | st.fixed_dictionaries({
            "num_steps": st.integers(0, max_steps), "lr": st.floats(1e-6, 0.1, **finite),
            "chunk_size": st.integers(1, 4096)})),
        "correlation": draw(st.none() | st.fixed_dictionaries({
            "rank": st.integers(1, max_rank), "correlation_scale": st.floats(0.0, 0.5, **finite),
            "seed": seed})),
        "std_firing_magnitudes": draw(magnitude()),
        "mean_firing_magnitudes": draw(magnitude(positive=positive_mean)),
        "bias": draw(st.booleans() | st.floats(0.0, 10.0, **finite)),
        "dtype": draw(st.sampled_from(["float32", "float64", "float16", "bfloat16"])),
        "seed": draw(seed.filter(lambda s: s is not None) if seeded else seed),
    }


@CONFIG_SETTINGS
@given(config_dict())
def test_config_json_round_trip(d):
    cfg = ModelConfig.from_dict(d)
    text = json.dumps(cfg.to_dict())
    again = ModelConfig.from_dict(json.loads(text))
    assert again == cfg
    assert again.to_dict() == cfg.to_dict() == d  # nothing added, dropped or rewritten
    assert json.dumps(again.to_dict()) == text


@settings(CONFIG_SETTINGS, max_examples=150)
@given(config_dict())
def test_sae_lens_reads_and_writes_the_same_config(d):
    from sae_lens.synthetic import SyntheticModelConfig

    ours = ModelConfig.from_dict(d).to_dict()
    theirs = SyntheticModelConfig.from_dict(json.loads(json.dumps(ours))).to_dict()
    assert json.loads(json.dumps(theirs)) == ours


def test_strategies_reach_every_generator_and_option():
    # the round trip above covers the whole space only if the strategy reaches all of it
    seen: set = set()

    @settings(derandomize=True, max_examples=300, deadline=None, database=None)
    @given(config_dict())
    def collect(d):
        seen.add(("p", d["firing_probability"]["generator_name"]))
        for key in ("mean_firing_magnitudes", "std_firing_magnitudes"):
            m = d[key]
            seen.add(("m", m["generator_name"] if isinstance(m, dict) else "number"))
        seen.add(("dtype", d["dtype"]))
        seen.add(("bias", type(d["bias"]).__name__))
        for key in ("hierarchy", "orthogonalization", "correlation", "seed"):
            seen.add((key, d[key] is None))
        if d["hierarchy"]:
            seen.add(("branching", type(d["hierarchy"]["branching_factor"]).__name__))
            seen.add(("me_max", d["hierarchy"]["mutually_exclusive_max_depth"] is None))

    collect()
    expected = ({("p", g) for g in ("zipfian", "linear", "random", "constant")}
                | {("m", g) for g in ("number", "constant", "linear", "exponential",
                                      "folded_normal")}
                | {("dtype", t) for t in ("float32", "float64", "float16", "bfloat16")}
                | {("bias", "bool"), ("bias", "float"), ("branching", "int"),
                   ("branching", "list"), ("me_max", True), ("me_max", False)}
                | {(k, v) for k in ("hierarchy", "orthogonalization", "correlation", "seed")
                   for v in (True, False)})
    assert expected <= seen, expected - seen


def tensors_of(m):
    return {k: getattr(m, k) for k in ("feature_vectors", "bias", "firing_probabilities",
                                       "mean_magnitudes", "std_magnitudes", "correlation_factor",
                                       "correlation_diag")}


@BUILD_SETTINGS
@given(d=config_dict(max_n=300, max_d=16, max_steps=3, max_rank=8, positive_mean=True,
                     seeded=True),  # magnitudes are regenerated from the seed on load
       method=st.sampled_from(["sparse", "dense"]))
def test_small_models_sample_validly_and_round_trip(d, method, tmp_path_factory):
    model = build_model(ModelConfig.from_dict(d), device="cpu")
    _, rows, cols, vals = model.sample_entries(500, seed=0, method=method)
    assert validity_counts(model.forest, rows, cols, model.num_features) == (0, 0)
    assert bool((vals > 0).all()) and bool(torch.isfinite(vals).all())
    folder = tmp_path_factory.mktemp("prop") / "m"
    model.save(folder)
    loaded = synthviz.load(folder, device="cpu")
    for name, t in tensors_of(model).items():
        u = getattr(loaded, name)
        assert (t is None) == (u is None), name
        if t is not None:
            assert t.dtype == u.dtype and torch.equal(t, u), name
    assert loaded.forest == model.forest
    assert loaded.cfg == model.cfg
    # the loaded model samples exactly like the built one
    again = loaded.sample_entries(500, seed=0, method=method)
    assert torch.equal(again[1], rows) and torch.equal(again[2], cols)


@pytest.mark.parametrize("bad", [
    {"num_features": 0}, {"hidden_dim": -1}, {"bias": "0.5"}, {"dtype": "int8"},
    {"firing_probability": {"generator_name": "zipfian", "exponent": 1.0, "max_prob": 0.2,
                            "min_prob": 0.3}},
])
def test_invalid_configs_are_refused_not_round_tripped(bad):
    from tests.reliability.helpers import tiny_config

    with pytest.raises(synthviz.ConfigError):
        ModelConfig.from_dict(tiny_config(**bad))


def test_unseeded_random_magnitudes_cannot_round_trip_so_export_refuses(tmp_path):
    # the format stores no magnitudes: with seed None a folded-normal draw is not reproducible,
    # so save -> load changes them, and the exporter (which promises sae_lens the same model)
    # refuses with a message saying why
    from tests.reliability.helpers import tiny_config

    d = tiny_config(seed=None, orthogonalization=None)
    model = build_model(ModelConfig.from_dict(d), device="cpu")
    model.save(tmp_path / "m")
    loaded = synthviz.load(tmp_path / "m", device="cpu")
    assert torch.equal(loaded.feature_vectors, model.feature_vectors)
    assert not torch.equal(loaded.std_magnitudes, model.std_magnitudes)
    try:
        from synthviz.export import export_model
    except ImportError:
        return
    with pytest.raises(synthviz.SynthvizError, match="magnitudes"):
        export_model(model, tmp_path / "export", samples=0)
    assert not (tmp_path / "export").exists()
