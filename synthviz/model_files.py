"""The three files of a model folder in sae_lens's format, and writing them.

Reading them (with every check a hostile file needs) is `synthviz.io`; writing lives here, below
`synthviz.model`, so that `SynthModel.save` needs nothing above it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from synthviz.cache import atomic_write_folder

CONFIG_FILE = "synthetic_model_config.json"
WEIGHTS_FILE = "synthetic_model.safetensors"
HIERARCHY_FILE = "hierarchy.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, HIERARCHY_FILE)


def model_tensors(model: Any) -> dict[str, torch.Tensor]:
    """The tensors of a `SynthModel` as the safetensors file holds them (on the CPU)."""
    t = {
        "feature_vectors": model.feature_vectors,
        "bias": model.bias,
        "firing_probabilities": model.firing_probabilities,
    }
    if model.correlation_factor is not None:
        t["correlation_factor"] = model.correlation_factor
        t["correlation_diag"] = model.correlation_diag
    return {k: v.detach().cpu().contiguous() for k, v in t.items()}


def write_model_files(model: Any, folder: Path) -> None:
    """Write the three files into an existing (empty) folder."""
    (folder / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=2))
    save_file(model_tensors(model), str(folder / WEIGHTS_FILE))
    if model.forest is not None:
        (folder / HIERARCHY_FILE).write_text(json.dumps(model.forest.to_dict(), indent=2))


def save_model(model: Any, folder: str | Path, *, force: bool = False,
               exist_ok: bool = False) -> Path:
    return atomic_write_folder(folder, lambda tmp: write_model_files(model, tmp), force=force,
                               exist_ok=exist_ok)
