"""Shared SAE-lens fixtures: a ~1000-feature model built by sae_lens (and loaded by synthviz from
the folder sae_lens saved, so both hold the same dictionary), and a toy BatchTopK SAE trained on
it with sae_lens's own `train_toy_sae`, once per test session."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import SMALL_CONFIG

TOY_CONFIG = {**copy.deepcopy(SMALL_CONFIG), "num_features": 1024}


@pytest.fixture(scope="session")
def sae_world(tmp_path_factory):
    """(sae_lens model, synthviz model, SAE folder) with a trained toy BatchTopK SAE."""
    sl = pytest.importorskip("sae_lens")
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig, train_toy_sae

    from synthviz.io import load_folder

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        sl_model = SyntheticModel(SyntheticModelConfig.from_dict(copy.deepcopy(TOY_CONFIG)))
        model_dir = tmp_path_factory.mktemp("toy_model")
        sl_model.save(model_dir)
        model = load_folder(model_dir, device="cpu")
        sae = sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(d_in=64, d_sae=256, k=12))
        train_toy_sae(sae, sl_model.feature_dict, sl_model.activation_generator,
                      training_samples=150_000, batch_size=1024, lr=3e-3)
        sae_dir = tmp_path_factory.mktemp("toy_sae")
        sae.save_inference_model(str(sae_dir))
    finally:
        torch.set_num_threads(threads)
    return sl_model, model, sae_dir
