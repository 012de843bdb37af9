"""Encoding a model's samples from their active features instead of their hidden vectors.

A synthviz sample is hidden = sum_f v_f F_f + bias over its ~L0 active features, so an SAE's
pre-activations are

    (hidden - b_dec) @ W_enc + b_enc = sum_f v_f (F @ W_enc)_f + ((bias - b_dec) @ W_enc + b_enc)

(`b_dec` only when the SAE applies it to its input). With FW = F @ W_enc [N, d_sae] computed once,
a sample costs L0 x d_sae multiply-adds instead of d_in x d_sae. The result equals the dense
path up to float32 rounding (another summation order); `SAE.activate` then applies the same
activation function to it, so the metrics keep their definitions.

FW is stored in column blocks of about `BLOCK_BYTES` each ([blocks, N, C], contiguous), so the
rows gathered for one block stay in the CPU's cache; a device with too little free memory for FW
gets no `FeatureEncoder` (`build` returns None) and the evaluation encodes densely.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf

from synthviz.device import available_memory
from synthviz.sae.weights import SAE

BLOCK_BYTES = 16 * 2**20  # one column block of FW: fits a typical L3 cache
MEMORY_SHARE = 0.25  # FW may take at most this share of the device's free memory
MIN_GAIN = 4  # the feature path is used when d_in >= MIN_GAIN x the expected L0


class FeatureEncoder:
    """Pre-activations of samples given as (rows, cols, values) of their active features."""

    def __init__(self, sae: SAE, vectors: torch.Tensor, bias: torch.Tensor):
        dt, dev = sae.W_enc.dtype, sae.W_enc.device
        f = vectors.to(dev, dt)
        n, d_sae = f.shape[0], sae.d_sae
        width = d_sae if dev.type != "cpu" else max(
            1, min(d_sae, BLOCK_BYTES // max(1, n * f.element_size())))
        self.blocks = [(s, min(s + width, d_sae)) for s in range(0, d_sae, width)]
        self.fw = [f @ sae.W_enc[:, s:e] for s, e in self.blocks]
        shift = bias.to(dev, dt) - sae.b_dec if sae.apply_b_dec_to_input else bias.to(dev, dt)
        self.const = shift @ sae.W_enc + sae.b_enc
        self.vectors, self.bias = f, bias.to(dev, dt)
        self.dtype, self.device, self.d_sae = dt, dev, d_sae

    @torch.no_grad()
    def pre_acts(self, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                 batch: int) -> torch.Tensor:
        """[batch, d_sae] pre-activations (rows counted from 0 within the batch)."""
        order = torch.argsort(rows, stable=True)
        c, v = cols[order], vals[order].to(self.dtype)
        counts = torch.bincount(rows, minlength=batch)
        offsets = torch.cumsum(counts, 0) - counts
        if len(self.blocks) == 1:
            out = nnf.embedding_bag(c, self.fw[0], offsets, mode="sum", per_sample_weights=v)
        else:
            out = torch.empty(batch, self.d_sae, dtype=self.dtype, device=self.device)
            for (s, e), fw in zip(self.blocks, self.fw):
                out[:, s:e] = nnf.embedding_bag(c, fw, offsets, mode="sum",
                                                per_sample_weights=v)
        return out.add_(self.const)

    @torch.no_grad()
    def explains(self, hidden: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                 vals: torch.Tensor, check_rows: int = 2) -> bool:
        """Whether the first `check_rows` rows of `hidden` are the sums of their entries (the
        batch came from the bound model, not from elsewhere)."""
        k = min(check_rows, hidden.shape[0])
        sel = rows < k
        h = torch.zeros(k, self.vectors.shape[1], dtype=self.dtype, device=self.device)
        h.index_add_(0, rows[sel], self.vectors[cols[sel]] * vals[sel].to(self.dtype)[:, None])
        h += self.bias
        x = hidden[:k].to(self.dtype)
        tol = 1e-4 * (1 + x.abs().max().item())
        return bool((h - x).abs().max().item() <= tol)


def build(sae: SAE, model, mode: str = "auto", l0: float | None = None
          ) -> FeatureEncoder | None:
    """A `FeatureEncoder` for `sae` on `model`'s samples, or None for the dense path.

    mode: "auto" (when it fits and pays: d_in >= MIN_GAIN x `l0`, the mean active features per
    sample of a batch), "features" (whenever it fits), "dense" (never)."""
    if mode not in ("auto", "features", "dense"):
        raise ValueError(f"encode must be 'auto', 'features' or 'dense', got {mode!r}")
    if mode == "dense" or sae.backend is not None:
        return None
    if mode == "auto" and (l0 is None or sae.d_in < MIN_GAIN * max(l0, 1.0)):
        return None
    need = model.num_features * sae.d_sae * sae.W_enc.element_size()
    free = available_memory(sae.W_enc.device)
    if free is None or need > MEMORY_SHARE * free:
        return None
    return FeatureEncoder(sae, model.feature_vectors, model.bias)
