"""Shared fixtures: a small model config that exercises every part of the process."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest

# sae_lens and huggingface_hub log warnings (capped rows, clamped p) that are expected in tests
logging.getLogger("sae_lens").setLevel(logging.ERROR)

SMALL_CONFIG = {
    "num_features": 2048,
    "hidden_dim": 64,
    "firing_probability": {"generator_name": "zipfian", "exponent": 0.5, "max_prob": 0.4,
                           "min_prob": 0.001},
    "hierarchy": {"total_root_nodes": 24, "branching_factor": [2, 5], "max_depth": 3,
                  "mutually_exclusive_portion": 0.7, "mutually_exclusive_min_depth": 0,
                  "mutually_exclusive_max_depth": None, "compensate_probabilities": True,
                  "scale_children_by_parent": True},
    "orthogonalization": {"num_steps": 5, "lr": 3e-4, "chunk_size": 512},
    "correlation": {"rank": 6, "correlation_scale": 0.25, "seed": None},
    "std_firing_magnitudes": {"generator_name": "folded_normal", "mean": 0.5, "std": 0.5,
                              "min_value": None, "max_value": None},
    "mean_firing_magnitudes": {"generator_name": "linear", "start": 5.0, "end": 4.0},
    "bias": 0.5,
    "dtype": "float32",
    "seed": 7,
}


@pytest.fixture
def small_config_dict():
    return copy.deepcopy(SMALL_CONFIG)


@pytest.fixture(scope="session")
def sae_lens_small(tmp_path_factory):
    """(sae_lens model, folder it saved to) for SMALL_CONFIG."""
    from sae_lens.synthetic import SyntheticModel, SyntheticModelConfig

    model = SyntheticModel(SyntheticModelConfig.from_dict(copy.deepcopy(SMALL_CONFIG)))
    folder = tmp_path_factory.mktemp("sl_small")
    model.save(folder)
    return model, folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch single-threaded for a module: the test machine is shared, and two torch threads on
    busy cores run several times slower."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- browser tests

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """pytest-playwright with Debian's Chromium (Playwright's own download is not available)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    return {**browser_type_launch_args, "executable_path": CHROMIUM,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--no-first-run"]}
