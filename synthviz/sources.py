"""What a model source string means: a preset name, a local folder, or a Hub id.

`load` is the one dispatcher every entry point uses (the library, the CLI, the app and the
notebooks), so a name resolves the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synthviz import presets
from synthviz.config import ModelConfig
from synthviz.errors import ConfigError
from synthviz.io import load_folder, load_hub, looks_like_path
from synthviz.model import SynthModel, build_model


def load(source: str | Path | ModelConfig, device: str | torch.device = "auto",
         progress=None) -> SynthModel:
    """A model from a preset name, a local folder, a Hub id (`repo` or `repo:subfolder`), or a config."""
    if isinstance(source, ModelConfig):
        return build_model(source, device=device, progress=progress)
    if isinstance(source, Path):
        return load_folder(source, device=device)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"model source must be a non-empty string, got {source!r}")
    source = source.strip()
    if source in presets.PRESETS:
        return presets.load_preset(source, device=device, progress=progress)
    if looks_like_path(source):
        return load_folder(source, device=device)
    return load_hub(source, device=device)
