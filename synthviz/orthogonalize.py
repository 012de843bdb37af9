"""Orthogonalization of the feature dictionary in the D x D Gram form.

sae_lens minimizes  L(E) = sum_{i != j} (e_i . e_j)^2 + N * sum_i (|e_i|^2 - 1)^2  with Adam,
computing the N x N dot products chunk by chunk. The same loss is
    L(E) = ||E^T E||_F^2 - sum_i |e_i|^4 + N * sum_i (|e_i|^2 - 1)^2,
whose gradient  4 E (E^T E) - 4 |e_i|^2 e_i + 4 N (|e_i|^2 - 1) e_i  needs only the D x D Gram
matrix: O(N D^2) per step instead of O(N^2 D). Adam is torch's own, so the trajectory matches
sae_lens's to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def gram_loss_and_grad(e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n = e.shape[0]
    gram = e.T @ e  # [D, D]
    sq = torch.einsum("ij,ij->i", e, e)  # |e_i|^2
    loss = (gram * gram).sum() - (sq * sq).sum() + n * ((sq - 1) ** 2).sum()
    # 4 E (E^T E) + 4 (N (|e_i|^2 - 1) - |e_i|^2) e_i, with the matmul accumulating in place
    grad = torch.addmm(e * (4.0 * (n * (sq - 1) - sq)).unsqueeze(1), e, gram, alpha=4.0)
    return loss, grad


def pairwise_loss(e: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The chunked N x N form (reference for tests)."""
    n = e.shape[0]
    total = torch.zeros((), dtype=e.dtype, device=e.device)
    for i in range(0, n, chunk):
        dots = e[i:i + chunk] @ e.T
        rows = torch.arange(dots.shape[0], device=e.device)
        diag = dots[rows, rows + i]
        off = (dots * dots).sum() - (diag * diag).sum()
        total = total + off + n * ((diag - 1) ** 2).sum()
    return total


def _adam(e: torch.Tensor, lr: float) -> torch.optim.Adam:
    # the fused kernel does Adam's update in one pass (the same formula as torch's default
    # Adam, which sae_lens uses); fall back where it is unavailable
    try:
        return torch.optim.Adam([e], lr=lr, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam([e], lr=lr)


def orthogonalize(vectors: torch.Tensor, num_steps: int, lr: float,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Normalize, run `num_steps` Adam steps on the Gram-form loss, normalize again."""
    e = vectors.detach().clone()
    e = e / e.norm(p=2, dim=1, keepdim=True).clamp(min=1e-8)
    e.requires_grad_(True)
    opt = _adam(e, lr)
    for step in range(num_steps):
        with torch.no_grad():
            _, grad = gram_loss_and_grad(e)
        e.grad = grad
        opt.step()
        if progress is not None:
            progress(step + 1, num_steps)
    with torch.no_grad():
        e = e / e.norm(p=2, dim=1, keepdim=True).clamp(min=1e-8)
    return e.detach().clone()
