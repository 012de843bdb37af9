"""Builds kept in the disk cache: whole models by config, and dictionaries by what determines
them (so a hidden-dim variation orthogonalizes a new dictionary once per machine).

The cache's layout, keys and atomic writes are `synthviz.cache`; this module decides what is
built and checks what it reads back (a damaged entry is rebuilt, never trusted).
"""

from __future__ import annotations

import logging
import torch
from safetensors.torch import load_file, save_file

from synthviz.cache import atomic_write_folder, model_cache_dir
from synthviz.config import ModelConfig
from synthviz.device import resolve_device
from synthviz.errors import ModelFileError, Progress, SynthvizError
from synthviz.io import load_folder
from synthviz.model import SynthModel, build_model, check_memory, make_dictionary
from synthviz.model_files import save_model
from synthviz.orthogonalize import orthogonalize

log = logging.getLogger(__name__)

DICTIONARY_CACHE_VERSION = 1


def build_cached(cfg: ModelConfig, device="auto", progress: Progress | None = None
                 ) -> SynthModel:
    """Build `cfg` once and keep it in the disk cache; later calls load the cached files."""
    folder = model_cache_dir({"config": cfg.to_dict()})
    damaged = False
    if folder.is_dir():
        try:
            model = load_folder(folder, device=device)
            model.provenance = model.provenance.replace(source=f"cache:{folder.name}")
            return model
        except ModelFileError as exc:  # a damaged cache entry is rebuilt, not trusted
            log.warning("rebuilding damaged cache entry %s: %s", folder, exc)
            damaged = True
    model = build_model(cfg, device=device, progress=progress)
    try:  # an entry another process publishes meanwhile is the same model: keep it
        save_model(model, folder, force=damaged, exist_ok=True)
    except (OSError, SynthvizError) as exc:
        log.warning("could not write the model cache at %s: %s", folder, exc)
    return model


def dictionary_cache_payload(cfg: ModelConfig, num_features: int, hidden_dim: int) -> dict:
    """What determines a dictionary: size, seed, bias norm, orthogonalization and dtype."""
    ortho = cfg.orthogonalization
    return {"dictionary": DICTIONARY_CACHE_VERSION, "num_features": num_features,
            "hidden_dim": hidden_dim, "seed": cfg.seed, "bias": cfg.bias,
            "orthogonalization": ortho.to_dict() if ortho is not None else None,
            "dtype": cfg.dtype}


def build_dictionary(cfg: ModelConfig, num_features: int, hidden_dim: int,
                     device: torch.device | str = "cpu", progress: Progress | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(feature_vectors [N, D'], bias [D']) as sae_lens builds them for this config at D'.

    Cached on disk under `model_cache_dir(dictionary_cache_payload(...))`.
    """
    folder = model_cache_dir(dictionary_cache_payload(cfg, num_features, hidden_dim))
    path = folder / "dictionary.safetensors"
    damaged = folder.is_dir()  # unless it loads below: then this returns
    if path.is_file():
        try:
            t = load_file(str(path))
            if (tuple(t["feature_vectors"].shape) == (num_features, hidden_dim)
                    and tuple(t["bias"].shape) == (hidden_dim,)):
                return t["feature_vectors"].float(), t["bias"].float()
        except Exception as exc:  # a damaged cache entry is rebuilt, not trusted
            log.warning("rebuilding damaged dictionary cache %s: %s", folder, exc)
    check_memory(num_features, hidden_dim)
    vectors, bias = make_dictionary(num_features, hidden_dim, cfg.bias, cfg.seed)
    ortho = cfg.orthogonalization
    if ortho is not None:  # as build_model: even zero steps normalize once more
        vectors = orthogonalize(vectors.to(resolve_device(device)), ortho.effective_steps, ortho.lr,
                                progress=progress).cpu()
    # float32 whatever the config's dtype, as sae_lens builds its dictionary
    vectors, bias = vectors.float().contiguous(), bias.float().contiguous()
    try:
        atomic_write_folder(folder, lambda tmp: save_file(
            {"feature_vectors": vectors, "bias": bias}, str(tmp / "dictionary.safetensors")),
            force=damaged, exist_ok=True)
    except (OSError, SynthvizError) as exc:
        log.warning("could not write the dictionary cache at %s: %s", folder, exc)
    return vectors, bias
