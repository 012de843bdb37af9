"""Named models: the base SynthSAEBench-16k and its variations.

The base is built locally from its published config (100 orthogonalization steps) and cached on
disk, keyed by config and seed, so later starts load it from the cache in a second or so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch

from synthviz.cache import model_cache_dir
from synthviz.config import ModelConfig, base_config
from synthviz.errors import ConfigError, ModelFileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    name: str
    family: str
    description: str


PRESETS: dict[str, Preset] = {
    "base": Preset("base", "base", "SynthSAEBench-16k as the paper configures it: 16384 features, "
                   "D=768, Zipfian p (0.5, 0.4 to 5e-4), 128 roots x 4-way x depth 3 with ME and "
                   "child rescaling, rank-25 copula, 100 orthogonalization steps, seed 42."),
}


def build_cached(cfg: ModelConfig, device="auto", progress: Callable | None = None):
    """Build `cfg` once and keep it in the disk cache; later calls load the cached files."""
    from synthviz.io import load_folder, save_model
    from synthviz.model import build_model

    folder = model_cache_dir({"config": cfg.to_dict()})
    if folder.is_dir():
        try:
            model = load_folder(folder, device=device)
            model.notes.update(source=f"cache:{folder.name}")
            return model
        except ModelFileError as exc:  # a damaged cache entry is rebuilt, not trusted
            log.warning("rebuilding damaged cache entry %s: %s", folder, exc)
    model = build_model(cfg, device=device, progress=progress)
    try:
        save_model(model, folder, force=True)
    except OSError as exc:
        log.warning("could not write the model cache at %s: %s", folder, exc)
    return model


def load_preset(name: str, device="auto", progress: Callable | None = None):
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; run `synthviz presets` for the list")
    if name == "base":
        return build_cached(base_config(), device=device, progress=progress)
    raise ConfigError(f"preset {name!r} is not available")


def default_device() -> torch.device:
    from synthviz.device import resolve_device
    return resolve_device("auto")
