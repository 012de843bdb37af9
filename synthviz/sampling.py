"""Sampling: an exact sparse sampler (the fast path) and a dense reference sampler.

Both draw from the process in sae_lens: a low-rank Gaussian copula decides firing, a firing
feature gets relu(mu + sigma * N(0, 1)), then the hierarchy is applied level by level (a child is
zeroed when its parent is inactive, or scaled by parent / mu_parent when the parent rescales; ME
siblings keep one active child chosen uniformly), and the result is decoded.

Why the sparse path is exact: given the copula's shared factor eps, features fire independently
with P(F_i . eps + sqrt(c_i) eta_i > t_i). A child's value is zero whenever its parent is
inactive, so a child's coin only needs flipping when its parent is active. The sparse sampler
therefore draws eps, flips the coins of top-level features (roots and features outside any tree)
in cache-sized blocks, then walks down the forest flipping only the children of active parents.
Same conditional law, far fewer draws. A fired feature whose relu'd magnitude is 0 is inactive,
exactly as in the dense process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from synthviz.hierarchy import Forest


@dataclass
class Tables:
    """Per-device tensors the samplers read; built once per model and device."""
    n: int
    device: torch.device
    dtype: torch.dtype
    p: torch.Tensor
    t: torch.Tensor  # copula thresholds Phi^-1(1 - p)
    mean: torch.Tensor
    std: torch.Tensor
    factor: torch.Tensor | None  # [N, r]
    diag_sqrt: torch.Tensor | None  # [N]
    top: torch.Tensor  # features with no parent
    top_factor_t: torch.Tensor | None  # [r, n_top], contiguous for addmm
    top_s: torch.Tensor | None
    top_t: torch.Tensor
    top_p: torch.Tensor
    ptr: torch.Tensor | None  # children CSR
    idx: torch.Tensor | None
    has_kids: torch.Tensor | None
    me: torch.Tensor | None
    rescale: torch.Tensor | None
    levels: list[tuple[torch.Tensor, torch.Tensor]]  # per depth >= 1: (features, parents)
    me_levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (parents, siblings[G,K], valid)


def build_tables(p: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 factor: torch.Tensor | None, diag: torch.Tensor | None,
                 forest: Forest | None, device: torch.device) -> Tables:
    dtype = p.dtype if p.dtype in (torch.float32, torch.float64) else torch.float32
    cast = lambda x: None if x is None else x.to(device=device, dtype=dtype)  # noqa: E731
    p, mean, std, factor, diag = map(cast, (p, mean, std, factor, diag))
    t = math.sqrt(2) * torch.erfinv(1 - 2 * p)
    diag_sqrt = diag.clamp(min=0).sqrt() if diag is not None else None
    n = p.shape[0]
    if forest is not None:
        top, ptr, idx, has_kids, me, rescale, levels, me_levels = forest_tables(forest, device)
    else:
        top = torch.arange(n, device=device)
        ptr = idx = has_kids = me = rescale = None
        levels, me_levels = [], []
    return Tables(
        n=n, device=device, dtype=dtype, p=p, t=t, mean=mean, std=std, factor=factor,
        diag_sqrt=diag_sqrt, top=top,
        top_factor_t=factor[top].T.contiguous() if factor is not None else None,
        top_s=diag_sqrt[top].contiguous() if diag_sqrt is not None else None,
        top_t=t[top].contiguous(), top_p=p[top].contiguous(), ptr=ptr, idx=idx,
        has_kids=has_kids, me=me, rescale=rescale, levels=levels, me_levels=me_levels)


def forest_tables(forest: Forest, device: torch.device):
    """The hierarchy's index tensors on `device`, cached on the forest (shared by variations)."""
    cache = forest.__dict__.setdefault("_device_tables", {})
    if device in cache:
        return cache[device]
    top = (forest.parent < 0).nonzero().squeeze(1).to(device)
    ptr, idx = (x.to(device) for x in forest.csr)
    has_kids = ptr[1:] > ptr[:-1]
    levels, me_levels = [], []
    for depth, nodes in enumerate(forest.levels):
        if depth > 0:
            f = torch.tensor(nodes, dtype=torch.long)
            levels.append((f.to(device), forest.parent[f].to(device)))
        groups = [(q, forest.children[q]) for q in nodes
                  if q in forest.me and len(forest.children.get(q, [])) >= 2]
        if groups:
            k = max(len(c) for _, c in groups)
            sib = torch.zeros(len(groups), k, dtype=torch.long)
            valid = torch.zeros(len(groups), k, dtype=torch.bool)
            for g, (_, kids) in enumerate(groups):
                sib[g, :len(kids)] = torch.tensor(kids)
                valid[g, :len(kids)] = True
            pars = torch.tensor([q for q, _ in groups], dtype=torch.long)
            me_levels.append((pars.to(device), sib.to(device), valid.to(device)))
        else:
            me_levels.append(None)
    out = (top, ptr, idx, has_kids, forest.me_mask.to(device), forest.rescale_mask.to(device),
           levels, me_levels)
    cache[device] = out
    return out


# ---------------------------------------------------------------------------- sparse (fast)

def _block_rows(n_cols: int) -> int:
    # keep one [rows, n_top] float block near 8 MB so it stays cache- and memory-friendly
    return max(64, min(4096, (2 << 20) // max(1, n_cols)))


@torch.no_grad()
def sample_sparse(tb: Tables, batch: int, gen: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (rows, cols, values) of the active features; unsorted."""
    dev, dt = tb.device, tb.dtype
    eps = torch.randn(batch, tb.factor.shape[1], generator=gen, device=dev, dtype=dt) \
        if tb.factor is not None else None
    n_top = tb.top.numel()
    rows_l, cols_l = [], []
    step = _block_rows(n_top)
    for s in range(0, batch, step):
        b = min(step, batch - s)
        if eps is not None:
            z = torch.randn(b, n_top, generator=gen, device=dev, dtype=dt)
            z.mul_(tb.top_s)
            z.addmm_(eps[s:s + b], tb.top_factor_t)
            fired = z > tb.top_t
        else:
            fired = torch.rand(b, n_top, generator=gen, device=dev, dtype=dt) < tb.top_p
        r, c = fired.nonzero(as_tuple=True)
        rows_l.append(r + s)
        cols_l.append(tb.top[c])
    rows = torch.cat(rows_l)
    cols = torch.cat(cols_l)
    vals = _magnitudes(tb, cols, gen)
    keep = vals > 0
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    if tb.ptr is None:
        return rows, cols, vals
    out_r, out_c, out_v = [rows], [cols], [vals]
    sel = tb.has_kids[cols]
    fr, fc, fv = rows[sel], cols[sel], vals[sel]
    while fr.numel():
        nk = tb.ptr[fc + 1] - tb.ptr[fc]
        inst = torch.repeat_interleave(torch.arange(fr.numel(), device=dev), nk)
        offs = torch.cumsum(nk, 0) - nk
        pos = torch.arange(inst.numel(), device=dev) - offs[inst] + tb.ptr[fc][inst]
        child = tb.idx[pos]
        crow = fr[inst]
        if eps is not None:
            z = (tb.factor[child] * eps[crow]).sum(1)
            z.add_(tb.diag_sqrt[child] * torch.randn(child.numel(), generator=gen, device=dev, dtype=dt))
            fired = z > tb.t[child]
        else:
            fired = torch.rand(child.numel(), generator=gen, device=dev, dtype=dt) < tb.p[child]
        child, crow, inst = child[fired], crow[fired], inst[fired]
        mag = _magnitudes(tb, child, gen)
        act = mag > 0
        child, crow, inst, mag = child[act], crow[act], inst[act], mag[act]
        me_par = tb.me[fc][inst]
        if me_par.any():
            # keep exactly one active child per ME parent instance, chosen uniformly
            counts = torch.zeros(fr.numel(), dtype=torch.long, device=dev).index_add_(
                0, inst, torch.ones_like(inst))
            first = torch.cumsum(counts, 0) - counts  # inst is sorted, so groups are contiguous
            rank = torch.arange(inst.numel(), device=dev) - first[inst]
            pick = (torch.rand(fr.numel(), generator=gen, device=dev) * counts).long()
            pick = torch.minimum(pick, (counts - 1).clamp(min=0))
            keep = ~me_par | (rank == pick[inst])
            child, crow, inst, mag = child[keep], crow[keep], inst[keep], mag[keep]
        resc = tb.rescale[fc][inst]
        if resc.any():
            mag = torch.where(resc, mag * fv[inst] / tb.mean[fc][inst], mag)
        out_r.append(crow)
        out_c.append(child)
        out_v.append(mag)
        sel = tb.has_kids[child]
        fr, fc, fv = crow[sel], child[sel], mag[sel]
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _magnitudes(tb: Tables, cols: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    noise = torch.randn(cols.numel(), generator=gen, device=tb.device, dtype=tb.dtype)
    return (tb.mean[cols] + tb.std[cols] * noise).relu_()


def decode(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, batch: int,
           vectors: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """hidden[b] = sum of vals * vectors[cols] over the entries of row b, plus bias (no dense B x N)."""
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=batch)
    offsets = torch.cumsum(counts, 0) - counts
    h = nnf.embedding_bag(cols[order], vectors, offsets, mode="sum",
                          per_sample_weights=vals[order].to(vectors.dtype))
    return h + bias


def to_coo(rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor, batch: int, n: int
           ) -> torch.Tensor:
    order = torch.argsort(rows * n + cols)
    idx = torch.stack([rows[order], cols[order]])
    return torch.sparse_coo_tensor(idx, vals[order], (batch, n), is_coalesced=True,
                                   check_invariants=False)


# ---------------------------------------------------------------------------- dense (reference)

@torch.no_grad()
def sample_dense(tb: Tables, batch: int, gen: torch.Generator | None) -> torch.Tensor:
    """The plain [B, N] process, kept as the reference the sparse path is tested against."""
    dev, dt, n = tb.device, tb.dtype, tb.n
    if tb.factor is not None:
        eps = torch.randn(batch, tb.factor.shape[1], generator=gen, device=dev, dtype=dt)
        eta = torch.randn(batch, n, generator=gen, device=dev, dtype=dt)
        fired = eps @ tb.factor.T + eta * tb.diag_sqrt > tb.t
    else:
        fired = torch.rand(batch, n, generator=gen, device=dev, dtype=dt) < tb.p
    noise = torch.randn(batch, n, generator=gen, device=dev, dtype=dt)
    acts = torch.where(fired, (tb.mean + tb.std * noise).relu(), torch.zeros((), dtype=dt, device=dev))
    for depth, me_group in enumerate(tb.me_levels):
        if depth > 0:
            feats, pars = tb.levels[depth - 1]
            pv = acts[:, pars]
            gate = (pv > 0).to(dt)
            factor = torch.where(tb.rescale[pars], pv / tb.mean[pars], gate)
            acts[:, feats] = acts[:, feats] * factor
        if me_group is not None:
            pars, sib, valid = me_group
            sv = acts[:, sib.reshape(-1)].reshape(batch, *sib.shape)
            active = (sv > 0) & valid & (acts[:, pars] > 0).unsqueeze(2)
            k = active.sum(2)
            pick = (torch.rand(batch, sib.shape[0], generator=gen, device=dev) * k).long()
            pick = torch.minimum(pick, (k - 1).clamp(min=0))
            rank = torch.cumsum(active.long(), 2) - 1
            loser = active & (rank != pick.unsqueeze(2))
            b_i, g_i, s_i = loser.nonzero(as_tuple=True)
            acts[b_i, sib[g_i, s_i]] = 0
    return acts.relu_()
