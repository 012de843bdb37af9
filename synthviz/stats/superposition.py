"""Superposition and interference: exact pairwise |cos| statistics of a dictionary, and readout noise.

`superposition_stats` returns, for every feature, the largest |cos| with any other feature (and
which one), the p95/p99 of |cos| over the N-1 others, the mean |cos| over all pairs, and a
histogram of all N(N-1)/2 pairwise |cos|. The numbers are defined as sae_lens's
`compute_superposition_stats` defines them (same normalization, percentiles with torch.quantile's
linear interpolation over the N-1 others), and they are exact: nothing is sampled.

How it is fast: the Gram matrix is symmetric, so it is computed once per pair in cache-sized
tiles (512 x 512 on a CPU, upper triangle only) and every tile is read twice, once for its rows and
once for its columns. A percentile needs only the top K values of a row (K = 821 for p95 at
N = 16384), so each row first gets a threshold from its diagonal tile (the value there at rank
K/N plus 2.5 binomial standard deviations), and only the values above it are kept (about 1.4 K
per row instead of N). Rows that kept fewer than K values (about 1% of them) are recomputed in
full, so the result is always exact; the threshold only decides how much work is saved. The
order statistics torch.quantile interpolates between are then read with nested unsorted
`torch.topk` calls, and interpolated with the same float32 rank arithmetic and `torch.lerp`.
The max |cos| and each feature's partner come from per-tile maxima and their positions, kept
for every row and column tile (which also answer every whole-tile prefix: `prefix_stats`). On
a CPU the tiles run on worker threads with torch single-threaded (`_parallel`).
Cost at 16384 x 768: the Gram's upper triangle (206 GFLOP, about 55% of the CPU time) plus about
as much again for the bookkeeping; about 6 CPU-seconds, so about 3 s on the 2-core development
machine when it is otherwise idle (sae_lens's compute_superposition_stats: 44 s there).

The readout noise measured on samples (`InterferenceAccumulator`) lives in
`synthviz.stats.interference`, re-exported here.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError, Progress
from synthviz.stats._parallel import run_phases, workers_for
from synthviz.stats.interference import InterferenceAccumulator, InterferenceStats

__all__ = ["DEFAULT_TILE", "InterferenceAccumulator", "InterferenceStats", "PREFIX_MAX_TILES",
           "SuperpositionStats", "prefix_length_ok", "prefix_stats", "superposition_stats"]


DEFAULT_TILE = 512
# a row's threshold is its diagonal tile's value at rank (K/N + this many binomial sigmas): a
# few percent of rows then keep fewer than K values and are recomputed in full (cheap), the rest
# keep about 1.4 K instead of N
_KEEP_SIGMAS = 2.5
PREFIX_MAX_TILES = 64  # prefix tables up to 64 tiles (32k features at tile 512): <= 17 MB


@dataclass
class SuperpositionStats:
    max_abs_cos: torch.Tensor  # [N] largest |cos| with any other feature
    partner: torch.Tensor  # [N] index of that feature (smallest index on ties)
    percentile: dict  # {p: [N]} p-th percentile of |cos| over the N-1 others
    rho_mm: float  # mean of max_abs_cos
    mean_percentile: dict  # {p: mean over features of percentile[p]}
    mean_abs_cos: float  # mean |cos| over all N(N-1)/2 pairs
    hist_edges: torch.Tensor  # [bins + 1] over [0, 1]
    hist_counts: torch.Tensor  # [bins] pair counts (each unordered pair once)
    num_features: int = 0
    hidden_dim: int = 0
    num_pairs: int = 0
    rows_recomputed: int = 0  # rows whose threshold kept too few values (recomputed in full)
    method: str = "tiled"
    # prefix tables (tiled method): the statistics of every prefix v[:k * tile] follow from them
    # exactly, without a new Gram product (see `prefix_stats`); None otherwise
    tile: int = 0
    tile_max: torch.Tensor | None = None  # [N, tiles] max |cos| of each row within a column tile
    tile_arg: torch.Tensor | None = None  # [N, tiles] where in that tile (first on ties; int16/32)
    pair_sums: torch.Tensor | None = None  # [tiles, tiles] float64 sum of |cos| per tile pair
    pair_hist: torch.Tensor | None = None  # [tiles, tiles, bins] int32 histogram per tile pair

    def to_dict(self) -> dict:
        """Headline numbers as plain floats (per-feature tensors left out)."""
        out = {"rho_mm": self.rho_mm, "mean_abs_cos": self.mean_abs_cos}
        for p, v in self.mean_percentile.items():
            out[f"mean_p{p}_abs_cos"] = v
        return out


@dataclass
class _Quantile:
    """Where torch.quantile(x, q) reads a sorted row of n values, in descending ranks."""
    desc_lo: int  # descending rank of the lower (ascending floor) value
    desc_hi: int  # descending rank of the upper (ascending ceil) value
    weight: torch.Tensor  # float32 scalar, as torch.quantile computes it


def _quantile_plan(p: float, n: int) -> _Quantile:
    # torch.quantile: ranks = q * (n - 1) in the input dtype, lerp(sorted[floor], sorted[ceil], frac)
    q = torch.tensor(float(p) / 100.0, dtype=torch.float32)
    rank = q * torch.tensor(float(n - 1), dtype=torch.float32)
    lo = int(rank.floor())
    hi = int(rank.ceil())
    return _Quantile(desc_lo=n - 1 - lo, desc_hi=n - 1 - hi, weight=rank - lo)


def _normalize(vectors: torch.Tensor, device) -> torch.Tensor:
    v = vectors.to(device=device, dtype=torch.float32)
    return v / v.norm(dim=1, keepdim=True).clamp(min=1e-8)


def _hist_add(hist: torch.Tensor, vals: torch.Tensor, bins: int) -> None:
    # |cos| in [0, 1]: scale, truncate to a bin, fold the value 1.0 into the last bin
    idx = (vals * bins).to(torch.uint8 if bins < 255 else torch.int32).reshape(-1)
    counts = torch.bincount(idx, minlength=bins + 1)
    hist += counts[:bins].to(hist.dtype)
    hist[bins - 1] += counts[bins:].sum().to(hist.dtype)


@torch.no_grad()
def superposition_stats(vectors: torch.Tensor, percentiles: Sequence[int] = (95, 99),
                        bins: int = 100, progress: Progress | None = None, *,
                        tile: int | None = None, device=None, method: str = "auto"
                        ) -> SuperpositionStats:
    """Exact superposition statistics of the rows of `vectors` [N, D].

    percentiles: per-feature percentiles of |cos| over the N-1 others (sae_lens's definition).
    bins: histogram bins over [0, 1] for all pairwise |cos|.
    progress(done, total) is called after every tile (or row chunk).
    method: "tiled" (fast, for high percentiles), "dense" (row chunks, full per-row selection), or
    "auto" (tiled unless the percentiles need much of each row or N is small).
    """
    if vectors.dim() != 2:
        raise ConfigError(f"feature vectors must be a 2-D [N, D] tensor, got shape {tuple(vectors.shape)}")
    n_feat, dim = vectors.shape
    if n_feat < 2:
        raise ConfigError("superposition statistics need at least 2 features")
    if bins < 1:
        raise ConfigError(f"bins must be >= 1, got {bins}")
    pcts = list(percentiles)
    for p in pcts:
        if not 0 <= p <= 100:
            raise ConfigError(f"percentiles must be within [0, 100], got {p}")
    dev = vectors.device if device is None else torch.device(device)
    v = _normalize(vectors, dev)
    if tile is None:  # cache-sized on a CPU; large tiles keep an accelerator busy
        tile = DEFAULT_TILE if dev.type == "cpu" else 4096
    n = n_feat - 1
    plans = {p: _quantile_plan(p, n) for p in pcts}
    k_need = max([pl.desc_lo + 1 for pl in plans.values()], default=1)
    if method == "auto":
        method = "tiled" if (n_feat >= 4 * tile and k_need <= n // 8) else "dense"
    if method == "tiled":
        res = _tiled(v, plans, k_need, bins, tile, progress)
    elif method == "dense":
        res = _dense(v, plans, k_need, bins, progress)
    else:
        raise ConfigError(f"method must be 'auto', 'tiled' or 'dense', got {method!r}")
    best_v, best_i, at_rank, total, hist, recomputed, tables = res
    pct = {}
    for p, pl in plans.items():
        lo_val = at_rank[pl.desc_lo]
        hi_val = at_rank[pl.desc_hi]
        pct[p] = torch.lerp(lo_val, hi_val, pl.weight.to(lo_val.device)).cpu()
    n_pairs = n_feat * (n_feat - 1) // 2
    return SuperpositionStats(
        max_abs_cos=best_v.cpu(), partner=best_i.cpu(), percentile=pct,
        rho_mm=float(best_v.double().mean()),
        mean_percentile={p: float(x.double().mean()) for p, x in pct.items()},
        mean_abs_cos=total / n_pairs, hist_edges=torch.linspace(0, 1, bins + 1),
        hist_counts=hist.cpu(), num_features=n_feat, hidden_dim=dim, num_pairs=n_pairs,
        rows_recomputed=recomputed, method=method, **tables)


def prefix_length_ok(stats: SuperpositionStats, n: int) -> bool:
    """Whether `prefix_stats(stats, v[:n])` can answer exactly (n a whole number of tiles)."""
    return (stats.tile_max is not None and stats.tile_arg is not None and stats.tile > 0
            and 2 <= n <= stats.num_features
            and (n % stats.tile == 0 or n == stats.num_features))


@torch.no_grad()
def prefix_stats(stats: SuperpositionStats, vectors: torch.Tensor) -> SuperpositionStats:
    """Statistics of the first n rows of the dictionary `stats` was computed on, from its prefix
    tables: max |cos|, partner, rho_mm, mean |cos| and the histogram are exact (the same numbers
    `superposition_stats(vectors)` gives); per-feature percentiles need every row's full order
    statistics and are left out (`percentile` is empty). `vectors` is that prefix [n, D] (its
    shape is checked). A truncated model's dictionary is such a prefix, so its superposition
    plots need no product of vectors at all: table lookups, milliseconds at 16k."""
    n, dim = vectors.shape
    if not prefix_length_ok(stats, n) or dim != stats.hidden_dim:
        raise ConfigError(f"no prefix statistics for {n} x {dim} from {stats.num_features} x "
                          f"{stats.hidden_dim} (tile {stats.tile}, tables "
                          f"{'present' if stats.tile_arg is not None else 'absent'})")
    tile = stats.tile
    k = math.ceil(n / tile)
    best_v, best_i = _partners(stats.tile_max[:n, :k], stats.tile_arg[:n, :k], tile)
    n_pairs = n * (n - 1) // 2
    hist = stats.pair_hist[:k, :k].sum(dim=(0, 1), dtype=torch.long)
    return SuperpositionStats(
        max_abs_cos=best_v, partner=best_i, percentile={},
        rho_mm=float(best_v.double().mean()), mean_percentile={},
        mean_abs_cos=float(stats.pair_sums[:k, :k].sum()) / n_pairs,
        hist_edges=stats.hist_edges.clone(), hist_counts=hist, num_features=n, hidden_dim=dim,
        num_pairs=n_pairs, method="prefix")


def _rank_values(x: torch.Tensor, ranks: Sequence[int]) -> dict[int, torch.Tensor]:
    """{r: r-th largest value of each row of x (0 = max)}; x holds at least max(ranks) + 1 of
    each row's largest values (padding below them). Nested unsorted top-k: no full sort."""
    out: dict[int, torch.Tensor] = {}
    cur = x
    for r in sorted(set(ranks), reverse=True):
        if r in out:
            continue
        if cur.shape[1] > r + 1:
            cur = cur.topk(r + 1, dim=1, sorted=False).values
        if r >= 1 and (r - 1) in ranks and cur.shape[1] >= 2:
            two = cur.topk(2, dim=1, largest=False, sorted=True).values
            out[r], out[r - 1] = two[:, 0], two[:, 1]
        else:
            out[r] = cur.amin(dim=1)
    return out


def _needed_ranks(plans) -> list[int]:
    return sorted({r for pl in plans.values() for r in (pl.desc_lo, pl.desc_hi)})


def _top_of_rows(v: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """The k largest |cos| (unsorted) of the given rows with all others (self excluded)."""
    g = (v[rows] @ v.T).abs_()
    g[torch.arange(rows.numel(), device=v.device), rows] = -1.0
    return g.topk(k, dim=1, sorted=False).values


def _dense(v, plans, k_need, bins, progress):
    """Row chunks against the whole dictionary; per-row selection over all N-1 others."""
    n_feat = v.shape[0]
    dev = v.device
    ranks = _needed_ranks(plans)
    chunk = max(1, min(n_feat, (1 << 24) // n_feat))
    best_v = torch.empty(n_feat, device=dev)
    best_i = torch.empty(n_feat, dtype=torch.long, device=dev)
    at_rank = {r: torch.empty(n_feat, device=dev) for r in ranks}
    hist = torch.zeros(bins, dtype=torch.long, device=dev)
    total = 0.0
    vt = v.T.contiguous()
    steps = math.ceil(n_feat / chunk)
    for s, i in enumerate(range(0, n_feat, chunk)):
        e = min(n_feat, i + chunk)
        g = (v[i:e] @ vt).abs_()
        r = torch.arange(e - i, device=dev)
        # upper triangle (j > i) for the pair sum and histogram: each unordered pair once
        upper = torch.arange(n_feat, device=dev)[None, :] > (r + i)[:, None]
        vals = g[upper]
        total += float(vals.sum(dtype=torch.float64))
        _hist_add(hist, vals, bins)
        g[r, r + i] = -1.0
        mv, mi = g.max(dim=1)
        best_v[i:e], best_i[i:e] = mv, mi
        if ranks:
            for k, x in _rank_values(g.topk(k_need, dim=1, sorted=False).values, ranks).items():
                at_rank[k][i:e] = x
        if progress:
            progress(s + 1, steps)
    return best_v, best_i, at_rank, total, hist, 0, {}


def _tiled(v, plans, k_need, bins, tile, progress):
    """Upper-triangle tiles of the Gram matrix, each read for its rows and for its columns.

    On the CPU the tiles are shared among worker threads (`synthviz.stats._parallel`).
    """
    n_feat = v.shape[0]
    n = n_feat - 1
    dev = v.device
    ranks = _needed_ranks(plans)
    spans = [(s, min(n_feat, s + tile)) for s in range(0, n_feat, tile)]
    nb = len(spans)
    vt = v.T.contiguous()
    tmax = torch.empty(n_feat, nb, device=dev)  # per row, the max |cos| within each column tile
    targ = torch.empty(n_feat, nb, dtype=torch.int16 if tile < 2**15 else torch.int32,
                       device=dev)  # and where in that tile
    at_rank = {r: torch.empty(n_feat, device=dev) for r in ranks}
    frac = k_need / n
    tau = torch.empty(n_feat, device=dev)
    # per block row: (counts [rows], kept values grouped by row) from every tile touching it
    kept: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in range(nb)]
    n_tiles = nb * (nb + 1) // 2 + 1
    # prefix tables (each tile pair writes its own cell: no locking); a few MB at 16k
    record = nb <= PREFIX_MAX_TILES
    pair_sums = torch.zeros(nb, nb, dtype=torch.float64) if record else None
    pair_hist = torch.zeros(nb, nb, bins, dtype=torch.int32) if record else None
    state = {"done": 0, "recomputed": 0}
    lock = threading.Lock()

    def new_acc():
        return {"total": 0.0, "hist": torch.zeros(bins, dtype=torch.long, device=dev)}

    def tick():
        with lock:
            state["done"] += 1

    def _add_pairs(acc, vals, bins, bi, bj):
        tot = float(vals.sum())  # float32 tile sums, added up in Python floats
        acc["total"] += tot
        if record:
            h = torch.zeros(bins, dtype=torch.long, device=dev)
            _hist_add(h, vals, bins)
            acc["hist"] += h
            pair_sums[bi, bj] = tot
            pair_hist[bi, bj] = h.to("cpu", torch.int32)
        else:
            _hist_add(acc["hist"], vals, bins)

    def diag(b, acc):
        s, e = spans[b]
        g = (v[s:e] @ vt[:, s:e]).abs_()
        m = e - s
        r = torch.arange(m, device=dev)
        vals = g[r[None, :] > r[:, None]]  # strict upper triangle: each pair once
        _add_pairs(acc, vals, bins, b, b)
        g[r, r] = -1.0
        tmax[s:e, b], targ[s:e, b] = g.max(dim=1)
        others = m - 1
        keep = frac + _KEEP_SIGMAS * math.sqrt(frac * (1 - frac) / max(others, 1))
        rank = math.ceil(keep * others)
        if ranks and others >= 64 and rank < others:
            tau[s:e] = g.topk(rank, dim=1, sorted=False).values.amin(dim=1)
        else:
            tau[s:e] = -1.0  # too few columns to estimate: keep everything
        if ranks:  # the self entry is -1 and never passes a threshold >= -1
            kept[b].append(_keep(g, g > tau[s:e, None]))
        tick()

    def block_row(bi, acc):
        s, e = spans[bi]
        t_rows = tau[s:e, None]
        for bj in range(bi + 1, nb):
            s2, e2 = spans[bj]
            g = (v[s:e] @ vt[:, s2:e2]).abs_()
            _add_pairs(acc, g, bins, bi, bj)
            tmax[s:e, bj], targ[s:e, bj] = g.max(dim=1)
            tmax[s2:e2, bi], targ[s2:e2, bi] = g.max(dim=0)
            if ranks:
                kept[bi].append(_keep(g, g > t_rows))
                # the columns' kept values, grouped by column: scan the transposed mask (bytes)
                kept[bj].append(_keep(g, (g > tau[None, s2:e2]).T.contiguous(), transposed=True))
            tick()

    def finish(b, acc):
        if ranks:
            s, e = spans[b]
            short = _finish_block(v, s, e, kept[b], k_need, ranks, at_rank)
            with lock:
                state["recomputed"] += short
        kept[b] = []

    def poll():
        if progress and state["done"] < n_tiles:
            progress(state["done"], n_tiles)

    accs = run_phases([(diag, list(range(nb))), (block_row, list(range(nb))),
                       (finish, list(range(nb)))], workers_for(dev), new_acc, poll)
    total = sum(a["total"] for a in accs)
    hist = torch.stack([a["hist"] for a in accs]).sum(0)
    best_v, best_i = _partners(tmax, targ, tile)
    if progress:
        progress(n_tiles, n_tiles)
    tables = {}
    if record:
        tables = dict(tile=tile, tile_max=tmax.cpu(), tile_arg=targ.cpu(), pair_sums=pair_sums,
                      pair_hist=pair_hist)
    return best_v, best_i, at_rank, total, hist, state["recomputed"], tables


def _keep(g: torch.Tensor, mask: torch.Tensor, transposed: bool = False):
    """(count per row, kept values grouped by row) of tile g where mask; with `transposed`, mask
    is the transposed tile's mask and rows are g's columns. One scan of the mask."""
    row, col = mask.nonzero(as_tuple=True)  # row-major: grouped by row
    flat = col * g.shape[1] + row if transposed else row * g.shape[1] + col
    vals = g.view(-1).index_select(0, flat)
    return torch.bincount(row, minlength=mask.shape[0]), vals


def _partners(tmax, targ, tile):
    """Max |cos| and partner per row from the tile maxima and their positions: the first tile
    holding the max, then the first position in it (the smallest index on ties)."""
    best_v, best_t = tmax.max(dim=1)
    at = targ.gather(1, best_t[:, None]).squeeze(1).long()
    return best_v, best_t * tile + at


def _finish_block(v, s, e, pieces, k_need, ranks, at_rank) -> int:
    """Order statistics of block rows s:e from their kept values; rows that kept too few are redone."""
    dev = v.device
    m = e - s
    counts = torch.stack([c for c, _ in pieces]).long()  # [pieces, m]
    vals = torch.cat([x for _, x in pieces])  # piece by piece, each grouped by row
    per_row = counts.sum(dim=0)
    width = int(per_row.max()) if m else 0
    buf = torch.full((m, max(width, k_need)), -1.0, device=dev)
    if vals.numel():
        flat = counts.reshape(-1)
        seg = torch.repeat_interleave(torch.arange(flat.numel(), device=dev), flat)
        seg_start = torch.cumsum(flat, 0) - flat
        in_row = (torch.cumsum(counts, 0) - counts).reshape(-1)  # earlier pieces of the same row
        pos = torch.arange(vals.numel(), device=dev) - seg_start[seg] + in_row[seg]
        buf[seg % m, pos] = vals
    short = (per_row < k_need).nonzero().squeeze(1)
    if short.numel():
        buf[short] = -1.0
        buf[short, :k_need] = _top_of_rows(v, short + s, k_need)
    for r, x in _rank_values(buf, ranks).items():
        at_rank[r][s:e] = x
    return int(short.numel())
