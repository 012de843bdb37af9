"""Issue 12.3: dtype as sae_lens does it.

sae_lens draws the correlation factor in the config's dtype and builds the dictionary and bias in
float32 whatever the dtype; probabilities and magnitudes are generated in float32 and cast. So a
float64 (or float16, bfloat16) config builds the same tensors in synthviz, bit for bit.
sae_lens 6.54.12 cannot decode such a model (float32 dictionary against activations in the
config's dtype), so the sampled law is compared on its activation generator.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from synthviz.config import ModelConfig
from synthviz.model import build_model
from tests.conftest import SMALL_CONFIG
from tests.stat_tools import bonferroni_z, two_sample_rate_z

sl_synth = pytest.importorskip("sae_lens.synthetic")

N, SAMPLES = 300, 20_000


def _cfg(dtype: str) -> dict:
    d = copy.deepcopy(SMALL_CONFIG)
    d.update(num_features=N, hidden_dim=16, orthogonalization=None, dtype=dtype)
    d["hierarchy"] = dict(d["hierarchy"], total_root_nodes=10)
    return d


@pytest.mark.parametrize("dtype", ["float64", "float16", "bfloat16"])
def test_built_tensors_equal_sae_lens_bit_for_bit(dtype):
    ours = build_model(ModelConfig.from_dict(_cfg(dtype)), device="cpu")
    theirs = sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(_cfg(dtype)))
    gen = theirs.activation_generator
    pairs = {
        "feature_vectors": (ours.feature_vectors, theirs.feature_dict.feature_vectors.data),
        "bias": (ours.bias, theirs.feature_dict.bias.data),
        "correlation_factor": (ours.correlation_factor,
                               theirs.correlation_matrix.correlation_factor),
        "correlation_diag": (ours.correlation_diag, theirs.correlation_matrix.correlation_diag),
        "firing_probabilities": (ours.firing_probabilities, gen.firing_probabilities),
        "mean_magnitudes": (ours.mean_magnitudes, gen.mean_firing_magnitudes),
        "std_magnitudes": (ours.std_magnitudes, gen.std_firing_magnitudes),
    }
    for name, (a, b) in pairs.items():
        assert a.dtype == b.dtype, (name, a.dtype, b.dtype)
        assert torch.equal(a, b), name
    assert ours.feature_vectors.dtype == torch.float32 and ours.bias.dtype == torch.float32
    assert ours.correlation_factor.dtype == getattr(torch, dtype)
    assert ours.forest.to_dict() == theirs.hierarchy.to_dict()


@pytest.mark.parametrize("dtype", ["float64", "float16"])
def test_sampled_rates_agree_with_sae_lens(dtype, one_torch_thread):
    ours = build_model(ModelConfig.from_dict(_cfg(dtype)), device="cpu")
    theirs = sl_synth.SyntheticModel(sl_synth.SyntheticModelConfig.from_dict(_cfg(dtype)))
    _, rows, cols, _ = ours.sample_entries(SAMPLES, seed=1)
    mine = torch.bincount(cols, minlength=N)
    torch.manual_seed(2)
    fired = theirs.activation_generator.sample(SAMPLES) > 0
    z = two_sample_rate_z(mine, SAMPLES, fired.sum(0), SAMPLES)
    assert float(z.abs().max()) < bonferroni_z(N)
    l0_mine = torch.bincount(rows, minlength=SAMPLES).double()
    l0_theirs = fired.sum(1).double()
    se = math.hypot(float(l0_mine.std()), float(l0_theirs.std())) / math.sqrt(SAMPLES)
    assert abs(float(l0_mine.mean()) - float(l0_theirs.mean())) < 5 * se


def test_a_float64_export_loads_in_sae_lens_as_built(tmp_path):
    from synthviz.export import export_check, export_model

    ours = build_model(ModelConfig.from_dict(_cfg("float64")), device="cpu")
    assert export_check(ours).exact
    folder = export_model(ours, tmp_path / "m", samples=0)
    theirs = sl_synth.SyntheticModel.load_from_disk(folder).to("cpu")
    gen = theirs.activation_generator
    assert torch.equal(gen.firing_probabilities, ours.firing_probabilities)
    assert gen.firing_probabilities.dtype == torch.float64
    assert torch.equal(theirs.feature_dict.feature_vectors.data, ours.feature_vectors)
    assert torch.equal(theirs.correlation_matrix.correlation_factor, ours.correlation_factor)
