"""`SAE`: a sparse autoencoder's weights and its encode/decode maths, as sae_lens 6.54.12 defines
them for the architectures synthviz evaluates natively.

- `standard`: relu((x - b_dec) @ W_enc + b_enc);
- `topk`: the k largest pre-activations (times the decoder row norms when
  `rescale_acts_by_decoder_norm`), relu'd, the rest zero; decoding divides by those norms again;
- `jumprelu`: relu(h) where h > threshold, else 0. sae_lens saves BatchTopK and Matryoshka
  BatchTopK SAEs for inference this way (one threshold per latent); `kind` keeps what the SAE was
  trained as (from `metadata.training_architecture`).

`b_dec` is subtracted from the input only when `apply_b_dec_to_input`. An SAE loaded through
sae_lens (architectures synthviz has no maths for) keeps the sae_lens module in `backend` and
delegates encode/decode to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from synthviz.errors import SynthvizError

NATIVE_ARCHITECTURES = ("standard", "topk", "jumprelu")
# what sae_lens's cfg.json may name, beyond the native maths; `batchtopk` and
# `matryoshka_batchtopk` are training saves (`save_model`), converted on load like sae_lens's
# inference save does
TRAINING_ARCHITECTURES = ("batchtopk", "matryoshka_batchtopk")
SAE_LENS_ONLY = ("gated", "abstopk", "temporal", "matching_pursuit")
KINDS = {"standard": "standard", "topk": "topk", "jumprelu": "jumprelu",
         "batchtopk": "batchtopk", "matryoshka_batchtopk": "matryoshka"}
CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


@dataclass(eq=False)
class SAE:
    architecture: str  # the maths: standard, topk or jumprelu (or a sae_lens name with backend)
    W_enc: torch.Tensor  # [d_in, d_sae]
    b_enc: torch.Tensor  # [d_sae]
    W_dec: torch.Tensor  # [d_sae, d_in]
    b_dec: torch.Tensor  # [d_in]
    threshold: torch.Tensor | None = None  # [d_sae], jumprelu
    k: int | None = None  # topk
    apply_b_dec_to_input: bool = True
    rescale_acts_by_decoder_norm: bool = False
    kind: str = ""  # what it was trained as: standard, topk, batchtopk, jumprelu, matryoshka, ...
    cfg: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    backend: Any = None  # a sae_lens SAE, when its maths are not native

    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def device(self) -> torch.device:
        return self.W_dec.device

    @property
    def loader(self) -> str:
        return "sae_lens" if self.backend is not None else "native"

    def __repr__(self) -> str:
        return (f"SAE({self.kind or self.architecture}, d_in={self.d_in}, d_sae={self.d_sae}"
                f"{f', k={self.k}' if self.k else ''}, loader={self.loader})")

    def to(self, device: str | torch.device) -> SAE:
        dev = torch.device(device)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(dev))
        if self.backend is not None:
            self.backend = self.backend.to(dev)
        return self

    def _dec_norm(self) -> torch.Tensor:
        return self.W_dec.norm(dim=-1)

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.W_enc.dtype)
        if self.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent activations [B, d_sae] of inputs [B, d_in]."""
        if self.backend is not None:
            return self.backend.encode(x.to(self.backend.dtype))
        return self.activate(self.pre_acts(x))

    def activate(self, h: torch.Tensor) -> torch.Tensor:
        """Latent activations from pre-activations [B, d_sae] (native maths only)."""
        if self.architecture == "standard":
            return h.relu()
        if self.architecture == "jumprelu":
            return h.relu() * (h > self.threshold).to(h.dtype)
        if self.rescale_acts_by_decoder_norm:
            h = h * self._dec_norm()
        vals, idx = torch.topk(h, k=self.k, dim=-1, sorted=False)
        return torch.zeros_like(h).scatter_(-1, idx, vals.relu())

    @torch.no_grad()
    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        if self.backend is not None:
            return self.backend.decode(acts)
        if self.architecture == "topk" and self.rescale_acts_by_decoder_norm:
            acts = acts / self._dec_norm()
        return acts @ self.W_dec + self.b_dec

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {"W_enc": self.W_enc, "b_enc": self.b_enc, "W_dec": self.W_dec, "b_dec": self.b_dec}
        if self.threshold is not None:
            t["threshold"] = self.threshold
        return {k: v.detach().cpu().contiguous() for k, v in t.items()}

    def save(self, folder: str | Path) -> Path:
        """Write `cfg.json` and `sae_weights.safetensors` as sae_lens's inference save does, so
        `sae_lens.SAE.load_from_disk` reads it back (native architectures only)."""
        from safetensors.torch import save_file

        if self.backend is not None:
            raise SynthvizError("only natively loaded SAEs can be saved by synthviz; use "
                                "sae_lens's own save for this one")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {k: v for k, v in self.cfg.items() if k not in ("topk_threshold_lr",)}
        cfg.update(architecture=self.architecture, d_in=self.d_in, d_sae=self.d_sae,
                   apply_b_dec_to_input=self.apply_b_dec_to_input,
                   dtype=str(self.W_dec.dtype).replace("torch.", ""))
        cfg.setdefault("normalize_activations", "none")
        if self.architecture == "topk":
            cfg.update(k=self.k, rescale_acts_by_decoder_norm=self.rescale_acts_by_decoder_norm)
        meta = dict(cfg.get("metadata") or {})
        if self.kind and self.kind != self.architecture:
            meta.setdefault("training_architecture", {"matryoshka": "matryoshka_batchtopk"}.get(
                self.kind, self.kind))
        cfg["metadata"] = meta
        save_file(self.tensors(), str(folder / WEIGHTS_FILE))
        (folder / CFG_FILE).write_text(json.dumps(cfg, indent=2))
        return folder


def kind_of(cfg: dict[str, Any]) -> str:
    """What the SAE was trained as: the metadata's training architecture, else the saved one."""
    meta = cfg.get("metadata") if isinstance(cfg.get("metadata"), dict) else {}
    arch = meta.get("training_architecture") or cfg.get("architecture") or ""
    return KINDS.get(arch, str(arch))
