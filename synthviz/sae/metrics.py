"""SAE-against-truth metrics as pure functions of weights and counts, with sae_lens 6.54.12's
definitions (`sae_lens.synthetic.evals`):

- cosines: rows normalized by max(norm, 1e-8), then |a @ b.T|;
- `mcc`: an optimal one-to-one matching of decoder rows to features
  (`scipy.optimize.linear_sum_assignment` on 1 - |cos|), the mean |cos| of the matched pairs;
- `uniqueness`: distinct best features (argmax |cos| per latent) over the number of latents;
- classification: each latent detects its best feature by decoder |cos|; precision, recall, F1
  (0 where undefined) and accuracy per latent, then their means.

Feature splitting (a synthviz definition, stated in `splitting`) is here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SPLIT_COS = 0.5  # |cos| above which a latent counts as one of a feature's pieces


def abs_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|cos| [len(a), len(b)] between the rows of a and b, as sae_lens computes it."""
    an = a / a.norm(dim=1, keepdim=True).clamp(min=1e-8)
    bn = b / b.norm(dim=1, keepdim=True).clamp(min=1e-8)
    return (an @ bn.T).abs()


@dataclass
class Matching:
    """What the decoder's geometry alone says (no samples needed)."""
    mcc: float
    uniqueness: float
    latent_best_feature: torch.Tensor  # [L] argmax |cos| over features (decoder)
    latent_best_cos: torch.Tensor  # [L]
    feature_best_latent: torch.Tensor  # [N] argmax |cos| over latents (decoder)
    feature_best_cos: torch.Tensor  # [N]
    feature_best_latent_enc: torch.Tensor  # [N] argmax |cos| over latents (encoder columns)
    feature_best_cos_enc: torch.Tensor  # [N]
    hungarian_latent: torch.Tensor  # [min(L, N)] matched pairs of the mcc
    hungarian_feature: torch.Tensor
    hungarian_cos: torch.Tensor


def mcc_from_cosines(cos: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mcc, rows, cols, matched |cos|) for a [L, N] |cos| matrix; sae_lens's arithmetic (a
    float32 cost matrix, the mean taken in torch) so the value is bit-identical."""
    from scipy.optimize import linear_sum_assignment

    cos = cos.cpu()
    rows, cols = linear_sum_assignment(1 - cos.numpy())
    matched = cos[rows, cols]
    return (matched.mean().item(), torch.as_tensor(rows, dtype=torch.long),
            torch.as_tensor(cols, dtype=torch.long), matched)


def uniqueness(latent_best_feature: torch.Tensor, num_latents: int) -> float:
    if num_latents == 0:
        return 0.0
    return len(latent_best_feature.unique()) / num_latents


def match(W_dec: torch.Tensor, W_enc: torch.Tensor, features: torch.Tensor,
          with_mcc: bool = True) -> Matching:
    """Best matches both ways, by decoder rows and by encoder columns, and the mcc matching."""
    features = features.to(W_dec.device, W_dec.dtype)
    cos = abs_cosines(W_dec, features)  # [L, N]
    lb_cos, lb = cos.max(dim=1) if cos.shape[1] else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
    fb_cos, fb = cos.max(dim=0)
    if with_mcc:
        mcc, hr, hc, hcos = mcc_from_cosines(cos)
    else:
        mcc, hr, hc, hcos = float("nan"), *(torch.zeros(0, dtype=torch.long),) * 2, torch.zeros(0)
    del cos
    enc = abs_cosines(W_enc.T.to(features.dtype), features)
    fe_cos, fe = enc.max(dim=0)
    del enc
    return Matching(mcc=mcc, uniqueness=uniqueness(lb, W_dec.shape[0]),
                    latent_best_feature=lb.cpu(), latent_best_cos=lb_cos.cpu(),
                    feature_best_latent=fb.cpu(), feature_best_cos=fb_cos.cpu(),
                    feature_best_latent_enc=fe.cpu(), feature_best_cos_enc=fe_cos.cpu(),
                    hungarian_latent=hr, hungarian_feature=hc, hungarian_cos=hcos)


def prf(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Precision, recall and F1 per entry, 0 where undefined (sae_lens's convention)."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    p = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
    r = torch.where(tp + fn > 0, tp / (tp + fn).clamp(min=1), torch.zeros_like(tp))
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-300), torch.zeros_like(tp))
    return p, r, f


def classification(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor, tn: torch.Tensor
                   ) -> dict[str, float]:
    """Mean precision, recall, f1_score and accuracy over latents (sae_lens's keys)."""
    if tp.numel() == 0:
        return {"precision": 0.0, "recall": 0.0, "f1_score": 0.0, "accuracy": 0.0}
    p, r, f = prf(tp, fp, fn)
    acc = (tp + tn).double() / (tp + fp + fn + tn).double().clamp(min=1e-8)
    return {"precision": p.mean().item(), "recall": r.mean().item(), "f1_score": f.mean().item(),
            "accuracy": acc.mean().item()}


def splitting(latent_best_feature: torch.Tensor, latent_best_cos: torch.Tensor,
              num_features: int, threshold: float = SPLIT_COS) -> torch.Tensor:
    """Latents per feature [N]: how many latents have the feature as their best match (decoder
    |cos|, as `uniqueness` uses) with |cos| >= threshold. A feature is *split* when this is 2 or
    more: several latents each point along it, so each can carry part of it."""
    keep = latent_best_cos >= threshold
    return torch.bincount(latent_best_feature[keep], minlength=num_features)


def explained_variance(sum_x: torch.Tensor, sum_sq_norm: float, sum_sq_resid: float,
                       n: int) -> float:
    """sae_lens's R^2: 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2)."""
    if n == 0:
        return 0.0
    total = sum_sq_norm / n - (sum_x.double() / n).pow(2).sum().item()
    mse = sum_sq_resid / n
    if total < 1e-10:
        return 1.0 if mse < 1e-10 else 0.0
    return 1.0 - mse / total


def top_k_rows(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest entries per row, largest first."""
    k = min(k, values.shape[1])
    if k == 0:
        return np.zeros((values.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)
