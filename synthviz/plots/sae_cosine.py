"""The SAE-against-truth |cos| heatmap: the decoder rows of the best-matched latents against their
features, both ordered by match quality, so a good SAE shows a bright diagonal."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import torch

from synthviz.plots._style import COMMON, empty

MAX_SIDE = 120


def cosine_block(W_dec: torch.Tensor, features: torch.Tensor, latent_best_feature: np.ndarray,
                 latent_best_cos: np.ndarray, side: int = MAX_SIDE) -> dict:
    """The |cos| block of the `side` best-matched latents (by decoder |cos|) against their best
    features, latents ordered by that |cos| (descending) and features in the same order."""
    order = np.argsort(-np.asarray(latent_best_cos), kind="stable")
    feats, lats = [], []
    for lat in order:
        f = int(latent_best_feature[lat])
        if f not in feats:
            feats.append(f)
            lats.append(int(lat))
        if len(lats) >= side:
            break
    from synthviz.sae.metrics import abs_cosines
    block = abs_cosines(W_dec[torch.as_tensor(lats)].float(),
                        features[torch.as_tensor(feats)].to(W_dec.device).float())
    return {"latents": np.array(lats), "features": np.array(feats),
            "cos": block.cpu().numpy()}


def create_cosine_plot(block: dict | None) -> hv.Image:
    """block: `cosine_block(...)`."""
    if not block or len(block.get("latents", ())) == 0:
        return empty("no SAE evaluation yet")
    cos = block["cos"]
    n_l, n_f = cos.shape
    img = hv.Image((np.arange(n_f), np.arange(n_l), cos), ["feature rank", "latent rank"], "|cos|")
    return img.opts(cmap="magma", clim=(0, 1), colorbar=True, tools=["hover"], invert_yaxis=True,
                    title=f"|cos| of the {n_l} best-matched latents against their features "
                          "(ordered by match)", **COMMON)
