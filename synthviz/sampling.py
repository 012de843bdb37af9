"""Sampling: an exact sparse sampler (the fast path) and a dense reference sampler.

Both draw from the process in sae_lens: a low-rank Gaussian copula decides firing, a firing
feature gets relu(mu + sigma * N(0, 1)), then the hierarchy is applied level by level (a child is
zeroed when its parent is inactive, or scaled by parent / mu_parent when the parent rescales; an
ME group keeps one active member chosen uniformly, including groups of top-level features made by
organizational nodes), and the result is decoded.

Why the sparse path is exact: given the copula's shared factor eps, features fire independently
with P(F_i . eps + sqrt(c_i) eta_i > t_i). A child's value is zero whenever its parent is
inactive, so a child's coin only needs flipping when its parent is active. The sparse sampler
therefore draws eps, flips the coins of top-level features (roots and features outside any tree)
in cache-sized blocks, then walks down the forest flipping only the children of active parents.
Same conditional law, far fewer draws. A fired feature whose relu'd magnitude is 0 is inactive,
exactly as in the dense process.

Rare top-level features are drawn by exact thinning instead of one normal per (sample, feature).
Given eps, feature i fires with probability q_i = Phi(v_i), v_i = (F_i . eps - t_i) / s_i. For a
block of K features and one sample, qbar = Phi(max v_i) bounds every q_i in the block; candidate
slots are drawn with probability qbar by geometric skipping (cost grows with the number of
candidates, not with K), and a candidate is kept with probability q_i / qbar. Each slot therefore
fires with probability exactly q_i, independently. Computing v for every (sample, feature) is a
rank-r matmul, far cheaper than a normal draw, a compare and a nonzero. Frequent top-level features
(p >= DENSE_P) keep the plain dense draw, which is cheaper for them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from synthviz.hierarchy import Forest

# Bump when the samples drawn for a given seed change: results measured by sampling and cached
# on disk (L0 solutions) include it in their keys, so they are measured again.
SAMPLER_VERSION = 1


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
    me: torch.Tensor | None  # parents whose children form one ME group (no organizational nodes)
    rescale: torch.Tensor | None  # [N] the feature is scaled by its parent, not gated
    levels: list[tuple[torch.Tensor, torch.Tensor]]  # per depth >= 1: (features, parents)
    me_levels: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # (parents, siblings[G,K], valid)
    # copula values in one table: v_i = [F_i / s_i, -t_i / s_i] . [eps, 1]; fires when eta < v_i
    walk: torch.Tensor | None = None  # [N, r + 1]
    dense_top: torch.Tensor | None = None  # frequent top-level features, drawn densely
    dense_a: torch.Tensor | None = None  # [r, n_dense] (F / s)^T
    dense_c: torch.Tensor | None = None  # [n_dense] t / s (correlated) or p (independent)
    thin_feats: torch.Tensor | None = None  # [blocks * THIN_BLOCK] rare top-level features by p
    thin_a: torch.Tensor | None = None  # [r + 1, blocks * THIN_BLOCK] [F / s; -t / s], correlated
    thin_c: torch.Tensor | None = None  # [blocks * THIN_BLOCK] p, padding 0 (independent)
    thin_qbar: torch.Tensor | None = None  # [blocks] largest p per block (independent only)
    thin_n: int = 0  # thinned features before padding (padding slots never fire)
    # with organizational nodes: each feature's ME group (-1 none) and the number of groups
    group: torch.Tensor | None = None
    num_groups: int = 0


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
        group = forest.group_of.to(device) if forest.org is not None else None
        num_groups = len(forest.me_groups())
    else:
        group, num_groups = None, 0
        top = torch.arange(n, device=device)
        ptr = idx = has_kids = me = rescale = None
        levels, me_levels = [], []
    tb = Tables(
        n=n, device=device, dtype=dtype, p=p, t=t, mean=mean, std=std, factor=factor,
        diag_sqrt=diag_sqrt, top=top,
        top_factor_t=factor[top].T.contiguous() if factor is not None else None,
        top_s=diag_sqrt[top].contiguous() if diag_sqrt is not None else None,
        top_t=t[top].contiguous(), top_p=p[top].contiguous(), ptr=ptr, idx=idx,
        has_kids=has_kids, me=me, rescale=rescale, levels=levels, me_levels=me_levels,
        group=group, num_groups=num_groups)
    _split_top(tb)
    return tb


DENSE_P = 0.05  # top-level features at least this likely are drawn densely, rarer ones by thinning
THIN_BLOCK = 32  # features sharing one bound per sample in the thinning
THIN_BLOCK_FLOATS = 1 << 19  # size of one [rows, thinned features] block of copula values
THIN_OUTER_FLOATS = 1 << 23  # copula values kept at once for the candidates to read back
THIN_TILE_COLS = 8192  # thinned features per matmul (a multiple of THIN_BLOCK)


def _split_top(tb: Tables) -> None:
    """Fills the walk table and splits the top-level features into a dense and a thinned part."""
    if tb.factor is not None:
        s = tb.diag_sqrt.clamp(min=1e-12)  # c_i >= 0.01 when built; guards hand-made files
        tb.walk = torch.cat([tb.factor / s[:, None], (-tb.t / s)[:, None]], 1).contiguous()
    dense = tb.top_p >= DENSE_P
    d_idx, t_idx = tb.top[dense], tb.top[~dense]
    t_idx = t_idx[torch.argsort(tb.p[t_idx], descending=True, stable=True)]
    k = THIN_BLOCK
    pad = (-t_idx.numel()) % k
    tb.dense_top = d_idx
    tb.thin_n = t_idx.numel()
    tb.thin_feats = torch.cat([t_idx, t_idx.new_zeros(pad)])
    if tb.factor is not None:
        tb.dense_a = tb.walk[d_idx, :-1].T.contiguous()
        tb.dense_c = -tb.walk[d_idx, -1]
        # [F / s; -t / s] per column, so v = [eps, 1] @ thin_a; padding columns get v = -1e30
        a = torch.cat([tb.walk[t_idx], tb.walk.new_zeros(pad, tb.walk.shape[1])])
        a[:, -1] = a[:, -1].clamp(min=-1e30)
        a[t_idx.numel():, -1] = -1e30
        tb.thin_a = a.T.contiguous()
    else:
        tb.dense_c = tb.p[d_idx]
        tb.thin_c = torch.cat([tb.p[t_idx], tb.p.new_zeros(pad)])
        tb.thin_qbar = tb.thin_c.view(-1, k).amax(1) if tb.thin_c.numel() else tb.thin_c


def forest_tables(forest: Forest, device: torch.device):
    """The hierarchy's index tensors on `device`, kept in the forest's index (shared by
    variations): top-level features, children CSR, ME and rescale masks, (features, parents) per
    depth and the ME group tables per depth (`ForestIndex.me_levels`)."""
    ix = forest.index

    def make():
        ptr, idx = (x.to(device) for x in forest.csr)
        on = lambda xs: tuple(x.to(device) for x in xs)  # noqa: E731
        return (ix.top.to(device), ptr, idx, ptr[1:] > ptr[:-1], forest.me_mask.to(device),
                forest.child_rescale_mask.to(device), [on(lv) for lv in ix.parent_levels],
                [None if g is None else on(g) for g in ix.me_levels])
    return ix.memo(("sampling", device), make)


# ---------------------------------------------------------------------------- sparse (fast)

def _block_rows(n_cols: int, floats: int = 2 << 20, min_rows: int = 64) -> int:
    # keep one [rows, n_cols] float block near `floats` so it stays cache- and memory-friendly
    return max(min_rows, min(4096, floats // max(1, n_cols)))


_SQRT_HALF = math.sqrt(0.5)


def _phi(v: torch.Tensor) -> torch.Tensor:
    """Standard normal CDF."""
    return 0.5 * torch.erfc(v * -_SQRT_HALF)


def _slots(qbar: torch.Tensor, k: int, gen: torch.Generator | None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments of k slots, each slot on with probability qbar[segment], independently.

    Returns (segment, slot) of the slots that are on. Geometric skipping: the gap to the next on
    slot is floor(E / -log(1 - qbar)) with E ~ Exp(1), so the work grows with the slots that are on.
    """
    rate = torch.log1p(-qbar).neg_()  # inf when qbar == 1 (every slot on)
    seg = (rate > 0).nonzero().squeeze(1)
    rate = rate[seg]
    pos = torch.full_like(seg, -1)
    out_s, out_p = [], []
    while seg.numel():
        # -log(1 - u) is Exp(1), so P(gap >= j) = (1 - qbar)^j (torch's exponential_ is slower)
        u = torch.rand(seg.numel(), generator=gen, device=qbar.device, dtype=qbar.dtype)
        pos = pos + 1 + torch.log1p(u.neg_()).div_(rate).neg_().clamp_(max=k).long()
        on = (pos < k).nonzero().squeeze(1)
        seg, pos, rate = seg[on], pos[on], rate[on]
        out_s.append(seg)
        out_p.append(pos)
    if not out_s:  # every bound is 0: no slot is on
        return seg, pos
    return torch.cat(out_s), torch.cat(out_p)


def _empty(dev) -> tuple[torch.Tensor, torch.Tensor]:
    e = torch.empty(0, dtype=torch.long, device=dev)
    return e, e


@torch.no_grad()
def sample_top(tb: Tables, batch: int, gen: torch.Generator | None,
               eps1: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, cols) of the top-level features (roots, features outside trees) that fire.

    eps1 is [batch, r + 1]: the copula's shared factor with a column of ones (drawn here when
    the model is correlated and it is not given).
    """
    dev, dt = tb.device, tb.dtype
    if tb.factor is not None and eps1 is None:
        eps1 = _draw_eps(tb, batch, gen)
    eps = None if eps1 is None else eps1[:, :-1]
    rows_l, cols_l = [], []
    nd = tb.dense_top.numel()
    if nd:
        step = _block_rows(nd)
        for s in range(0, batch, step):
            b = min(step, batch - s)
            if eps is not None:
                z = torch.randn(b, nd, generator=gen, device=dev, dtype=dt)
                fired = z.addmm_(eps[s:s + b], tb.dense_a) > tb.dense_c  # eta + u/s > t/s
            else:
                fired = torch.rand(b, nd, generator=gen, device=dev, dtype=dt) < tb.dense_c
            r, c = fired.nonzero(as_tuple=True)
            rows_l.append(r + s)
            cols_l.append(tb.dense_top[c])
    k = THIN_BLOCK
    n_thin = tb.thin_feats.numel()
    nb = n_thin // k
    if nb and eps is not None:
        # v for up to THIN_OUTER_FLOATS values at a time, computed in cache-sized matmuls (column
        # tiles keep the factor slice in cache; row blocks keep the output in cache while its
        # block maxima are taken); candidates then read their v back from `flat_buf`
        width = min(n_thin, THIN_TILE_COLS)
        tiles = [(c, min(width, n_thin - c)) for c in range(0, n_thin, width)]
        step = _block_rows(width, THIN_BLOCK_FLOATS, min_rows=8)
        outer = max(step, (min(batch, THIN_OUTER_FLOATS // n_thin) // step) * step)
        rows_alloc = min(outer, batch)
        flat_buf = torch.empty(rows_alloc * n_thin, device=dev, dtype=dt)
        tile_off = torch.tensor([rows_alloc * c for c, _ in tiles], device=dev)
        tile_w = torch.tensor([w for _, w in tiles], device=dev)
        vmax = torch.empty(rows_alloc, nb, device=dev, dtype=dt)
        for s0 in range(0, batch, outer):
            b0 = min(outer, batch - s0)
            for c, w in tiles:
                tile = flat_buf[rows_alloc * c:rows_alloc * (c + w)].view(rows_alloc, w)
                for s in range(0, b0, step):
                    b = min(step, b0 - s)
                    v = torch.mm(eps1[s0 + s:s0 + s + b], tb.thin_a[:, c:c + w], out=tile[s:s + b])
                    vmax[s:s + b, c // k:(c + w) // k] = v.view(b, w // k, k).amax(2)
            # one bound per (sample, block): the largest v of the block
            qbar = _phi(vmax[:b0].reshape(-1))
            seg, pos = _slots(qbar, k, gen)
            r = torch.div(seg, nb, rounding_mode="floor")
            col = (seg - r * nb) * k + pos
            ti = torch.div(col, width, rounding_mode="floor")
            at = tile_off[ti] + r * tile_w[ti] + (col - ti * width)
            q = _phi(torch.take(flat_buf, at))  # padding columns have v = -1e30: q = 0
            keep = torch.rand(seg.numel(), generator=gen, device=dev, dtype=dt) * qbar[seg] < q
            keep = keep.nonzero().squeeze(1)
            rows_l.append(r[keep] + s0)
            cols_l.append(tb.thin_feats[col[keep]])
    elif nb:
        step = max(1, (1 << 20) // nb)  # bounds the segment arrays
        for s in range(0, batch, step):
            b = min(step, batch - s)
            qbar = tb.thin_qbar.repeat(b)
            seg, pos = _slots(qbar, k, gen)
            r = torch.div(seg, nb, rounding_mode="floor")
            slot = (seg - r * nb) * k + pos
            f = tb.thin_feats[slot]
            keep = (torch.rand(seg.numel(), generator=gen, device=dev, dtype=dt) * qbar[seg]
                    < tb.p[f]) & (slot < tb.thin_n)
            rows_l.append(r[keep] + s)
            cols_l.append(f[keep])
    if not rows_l:
        return _empty(dev)
    return torch.cat(rows_l), torch.cat(cols_l)


def _draw_eps(tb: Tables, batch: int, gen: torch.Generator | None) -> torch.Tensor:
    eps1 = torch.ones(batch, tb.factor.shape[1] + 1, device=tb.device, dtype=tb.dtype)
    eps1[:, :-1].normal_(generator=gen)
    return eps1


@torch.no_grad()
def sample_sparse(tb: Tables, batch: int, gen: torch.Generator | None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (rows, cols, values) of the active features; unsorted."""
    dev, dt = tb.device, tb.dtype
    eps1 = _draw_eps(tb, batch, gen) if tb.factor is not None else None
    rows, cols = sample_top(tb, batch, gen, eps1)
    vals = _magnitudes(tb, cols, gen)
    rows, cols, vals = _select(vals > 0, rows, cols, vals)
    if tb.ptr is None:
        return rows, cols, vals
    if tb.group is not None:  # ME groups of top-level features (organizational parents)
        keep = _me_keep(tb, rows, cols, gen)
        if keep is not None:
            rows, cols, vals = _select(keep, rows, cols, vals)
    out_r, out_c, out_v = [rows], [cols], [vals]
    fr, fc, fv = _select(tb.has_kids[cols], rows, cols, vals)
    while fr.numel():
        first = tb.ptr[fc]
        nk = tb.ptr[fc + 1] - first
        inst = torch.repeat_interleave(torch.arange(fr.numel(), device=dev), nk)
        offs = torch.cumsum(nk, 0) - nk
        pos = torch.arange(inst.numel(), device=dev) + (first - offs)[inst]
        child = tb.idx[pos]
        crow = fr[inst]
        if eps1 is not None:
            v = torch.einsum("ij,ij->i", tb.walk.index_select(0, child), eps1.index_select(0, crow))
            fired = torch.randn(child.numel(), generator=gen, device=dev, dtype=dt) < v
        else:
            fired = torch.rand(child.numel(), generator=gen, device=dev, dtype=dt) < tb.p[child]
        # a magnitude for every candidate, so one selection keeps the fired, non-zero ones
        mag = _magnitudes(tb, child, gen)
        child, crow, inst, mag = _select(fired & (mag > 0), child, crow, inst, mag)
        if tb.group is not None:
            keep = _me_keep(tb, crow, child, gen)
            if keep is not None:
                child, crow, inst, mag = _select(keep, child, crow, inst, mag)
            me_par = torch.zeros(0, dtype=torch.bool, device=dev)
        else:
            me_par = tb.me[fc][inst]
        if me_par.any():
            # keep exactly one active child per ME parent instance, chosen uniformly
            counts = torch.bincount(inst, minlength=fr.numel())
            start = torch.cumsum(counts, 0) - counts  # inst is sorted, so groups are contiguous
            rank = torch.arange(inst.numel(), device=dev) - start[inst]
            pick = (torch.rand(fr.numel(), generator=gen, device=dev) * counts).long()
            pick = torch.minimum(pick, (counts - 1).clamp(min=0))
            child, crow, inst, mag = _select(~me_par | (rank == pick[inst]), child, crow, inst, mag)
        resc = tb.rescale[child]
        if resc.any():
            mag = torch.where(resc, mag * fv[inst] / tb.mean[fc][inst], mag)
        out_r.append(crow)
        out_c.append(child)
        out_v.append(mag)
        fr, fc, fv = _select(tb.has_kids[child], crow, child, mag)
    return torch.cat(out_r), torch.cat(out_c), torch.cat(out_v)


def _me_keep(tb: Tables, rows: torch.Tensor, cols: torch.Tensor, gen: torch.Generator | None
             ) -> torch.Tensor | None:
    """Mask keeping one active member, chosen uniformly, of each (sample, ME group); None when
    no entry is in a group. A random order then a stable sort by group puts a uniformly chosen
    member first."""
    g = tb.group[cols]
    m = (g >= 0).nonzero().squeeze(1)
    if m.numel() == 0:
        return None
    key = rows[m] * tb.num_groups + g[m]
    perm = torch.randperm(m.numel(), generator=gen, device=tb.device)
    k = key[perm]
    order = torch.argsort(k, stable=True)
    sk = k[order]
    first = torch.ones_like(sk, dtype=torch.bool)
    first[1:] = sk[1:] != sk[:-1]
    keep = g < 0
    keep[m[perm[order[first]]]] = True
    return keep


def _select(mask: torch.Tensor, *xs: torch.Tensor) -> list[torch.Tensor]:
    """The entries of each x where mask is true (one nonzero for all of them)."""
    idx = mask.nonzero().squeeze(1)
    return [x[idx] for x in xs]


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
            factor = torch.where(tb.rescale[feats], pv / tb.mean[pars], gate)
            acts[:, feats] = acts[:, feats] * factor
        if me_group is not None:
            pars, sib, valid = me_group
            sv = acts[:, sib.reshape(-1)].reshape(batch, *sib.shape)
            # a group without a parent feature (organizational node) is always active
            par_on = (acts[:, pars.clamp(min=0)] > 0) | (pars < 0)
            active = (sv > 0) & valid & par_on.unsqueeze(2)
            k = active.sum(2)
            pick = (torch.rand(batch, sib.shape[0], generator=gen, device=dev) * k).long()
            pick = torch.minimum(pick, (k - 1).clamp(min=0))
            rank = torch.cumsum(active.long(), 2) - 1
            loser = active & (rank != pick.unsqueeze(2))
            b_i, g_i, s_i = loser.nonzero(as_tuple=True)
            acts[b_i, sib[g_i, s_i]] = 0
    return acts.relu_()
