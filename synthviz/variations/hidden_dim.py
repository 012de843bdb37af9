"""The hidden-dimension family: a new dictionary at dimension D'.

Drawn with the model's seed conventions (randn(N, D') then the bias from the same generator, as
sae_lens does) and orthogonalized with the model's settings; the bias is redrawn at D' with the
same norm. Disk-cached by `synthviz.builds`.
"""

from __future__ import annotations

from typing import Any

from synthviz.builds import build_dictionary
from synthviz.errors import Progress
from synthviz.variations.family import Family, Setting, check_integer


class HiddenDimFamily(Family):
    name = "hidden_dim"
    settings = (Setting("hidden_dim", "int | None", "new hidden dimension (new dictionary)",
                        parse=int),)

    def check(self, v, set_) -> None:
        check_integer(v, set_, "hidden_dim", 1)

    def apply(self, model: Any, v: Any, progress: Progress | None = None) -> Any:
        if v.hidden_dim == model.hidden_dim:
            return model
        vectors, bias = build_dictionary(model.cfg, model.num_features, v.hidden_dim,
                                         device=model.device, progress=progress)
        new = model.replace(cfg=model.cfg.replace(hidden_dim=v.hidden_dim),
                            feature_vectors=vectors, bias=bias)
        new.provenance = new.provenance.derived()
        return new

    def describe(self, v) -> str:
        return (f"hidden dim {v.hidden_dim} (new orthogonalized dictionary, "
                "bias redrawn with the same norm)")


HIDDEN_DIM = HiddenDimFamily()
