"""Issue 3: the D x D Gram-form orthogonalization equals sae_lens's chunked pairwise form.

The Gram-form loss and its closed-form gradient are checked against autograd of the chunked
N x N form in float64, and `orthogonalize`'s Adam trajectory against sae_lens's
`orthogonalize_embeddings` at N=2048, D=128 to float32 rounding.
"""

from __future__ import annotations

import pytest
import torch

from synthviz.orthogonalize import gram_loss_and_grad, orthogonalize, pairwise_loss

sl_dict = pytest.importorskip("sae_lens.synthetic.feature_dictionary")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def _naive_loss(e: torch.Tensor) -> torch.Tensor:
    """The definition, written out over the full N x N matrix."""
    dots = e @ e.T
    n = e.shape[0]
    off = dots - torch.diag(torch.diagonal(dots))
    return (off**2).sum() + n * ((torch.diagonal(dots) - 1) ** 2).sum()


@pytest.mark.parametrize("n,d,chunk", [(300, 20, 64), (50, 80, 16), (1000, 32, 1024)])
@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_gram_loss_and_grad_equal_pairwise_autograd(n, d, chunk, scale):
    gen = torch.Generator().manual_seed(n + d)
    e = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale / d**0.5
    e[0] *= 3.0  # norms away from 1, so the diagonal term matters
    ref = e.clone().requires_grad_(True)
    loss_ref = pairwise_loss(ref, chunk=chunk)
    loss_ref.backward()
    loss, grad = gram_loss_and_grad(e)
    torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, ref.grad, rtol=1e-10, atol=1e-12)
    # the chunked reference itself is the definition (chunk edges, diagonal offsets)
    torch.testing.assert_close(loss_ref.detach(), _naive_loss(e), rtol=1e-12, atol=0)


def test_gradient_is_not_trivially_small():
    # guards the test above against comparing two near-zero gradients
    e = torch.randn(300, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    _, grad = gram_loss_and_grad(e)
    assert float(grad.abs().max()) > 1.0


def _raw(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps", [1, 4])
def test_trajectory_matches_sae_lens(steps):
    n, d, lr = 2048, 128, 3e-3
    raw = _raw(n, d, 0)
    theirs = sl_dict.orthogonalize_embeddings(raw.clone(), num_steps=steps, lr=lr, chunk_size=1024)
    calls = []
    ours = orthogonalize(raw.clone(), steps, lr, progress=lambda i, k: calls.append((i, k)))
    assert calls == [(i + 1, steps) for i in range(steps)]
    start = raw / raw.norm(dim=1, keepdim=True)
    moved = float((theirs - start).abs().max())
    diff = float((ours - theirs).abs().max())
    # Adam moves each coordinate by about lr per step; float32 rounding of the two loss forms
    # leaves differences orders of magnitude smaller
    assert moved > 0.5 * lr
    assert diff < 2e-5, f"max |ours - sae_lens| = {diff:.2e} (moved {moved:.2e})"
    torch.testing.assert_close(ours.norm(dim=1), torch.ones(n), atol=1e-5, rtol=0)


def test_orthogonalize_lowers_the_loss_and_keeps_the_input():
    raw = _raw(512, 32, 3)
    keep = raw.clone()
    out = orthogonalize(raw, 20, 1e-2)
    assert torch.equal(raw, keep)
    start = raw / raw.norm(dim=1, keepdim=True)
    assert float(pairwise_loss(out.double())) < 0.99 * float(pairwise_loss(start.double()))
