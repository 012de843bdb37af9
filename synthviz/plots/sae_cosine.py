"""The SAE-against-truth |cos| heatmap: the decoder rows of the best-matched latents against their
features, both ordered by match quality, so a good SAE shows a bright diagonal."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from synthviz.plots._style import COMMON, empty


def create_cosine_plot(block: dict | None) -> hv.Image:
    """block: `synthviz.sae.view_stats.cosine_block(...)` (keys latents, features, cos)."""
    if not block or len(block.get("latents", ())) == 0:
        return empty("no SAE evaluation yet")
    cos = block["cos"]
    n_l, n_f = cos.shape
    img = hv.Image((np.arange(n_f), np.arange(n_l), cos), ["feature rank", "latent rank"], "|cos|")
    return img.opts(cmap="magma", clim=(0, 1), colorbar=True, tools=["hover"], invert_yaxis=True,
                    title=f"|cos| of the {n_l} best-matched latents against their features "
                          "(ordered by match)", **COMMON)
