"""Evaluating an SAE against a model's ground truth, streaming through synthviz's sparse sampler.

`SAEAccumulator` is a `synthviz.stats.stream` accumulator: each batch's hidden activations are
encoded by the SAE and compared with the batch's active features, without ever forming a dense
[batch, num_features] tensor. The means are sae_lens 6.54.12's (`eval_sae_on_synthetic_data`,
see `synthviz.sae.metrics`). Beyond them it keeps:

- per feature: its best latent by decoder |cos| and by encoder |cos|, and that latent's detection
  precision / recall / F1 for the feature, beside the feature's firing rate and hierarchy depth;
- per latent: sae_lens's per-latent precision / recall / F1 and the features it fires with (the
  top co-firing features over the first `cofire_samples` samples, as a fraction of its firings);
- per parent->child edge, absorption as SAELens proposal #729 defines it: with the parent's
  latent the best match of the parent feature by decoder |cos|,
  `without_child = P(parent latent fires | parent on, child off)`,
  `with_child = P(parent latent fires | parent on, child on)` and
  `gap = without_child - with_child` (positive: the child absorbs the parent's latent). Per
  parent, `P(parent latent fires | parent on, no child on)` is kept as well;
- feature splitting: latents per feature (see `metrics.splitting`).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from synthviz.sae import feature_encode, metrics
from synthviz.sae.loading import check_d_in
from synthviz.sae.weights import SAE

# the decode reads only the fired rows of W_dec while fewer than 1/16 of the latents fire (a
# dense matmul is faster beyond: measured on CPU)
SPARSE_DECODE_SHARE = 16
MAX_PAIRS = 4_000_000  # co-firing (latent, feature) pairs counted per evaluation
_MATCH_CACHE: dict[tuple, tuple] = {}
MATCH_CACHE_SIZE = 8


def matching_for(sae: SAE, features: torch.Tensor, with_mcc: bool = True) -> metrics.Matching:
    """`metrics.match`, cached while both weight tensors live and are unmodified (a variation
    that keeps the base dictionary reuses the Hungarian matching)."""
    key = (id(sae.W_dec), id(sae.W_enc), id(features))
    versions = (sae.W_dec._version, sae.W_enc._version, features._version)
    hit = _MATCH_CACHE.get(key)
    if hit is not None:
        refs, vers, got = hit
        alive = all(r() is t for r, t in zip(refs, (sae.W_dec, sae.W_enc, features)))
        if alive and vers == versions and not (with_mcc and np.isnan(got.mcc)):
            return got
    got = metrics.match(sae.W_dec, sae.W_enc, features, with_mcc=with_mcc)
    for k in [k for k, (refs, _, _) in _MATCH_CACHE.items() if any(r() is None for r in refs)]:
        del _MATCH_CACHE[k]
    while len(_MATCH_CACHE) >= MATCH_CACHE_SIZE:
        del _MATCH_CACHE[next(iter(_MATCH_CACHE))]
    _MATCH_CACHE[key] = (tuple(weakref.ref(t) for t in (sae.W_dec, sae.W_enc, features)),
                         versions, got)
    return got


def _sparse_decode(sae: SAE, rows: torch.Tensor, cols: torch.Tensor, vals: torch.Tensor,
                   batch: int) -> torch.Tensor:
    """sae.decode of a sparse code: only the ~L0 active rows of W_dec per sample are read."""
    if sae.architecture == "topk" and sae.rescale_acts_by_decoder_norm:
        vals = vals / sae.W_dec.norm(dim=-1)[cols]
    counts = torch.bincount(rows, minlength=batch)
    offsets = torch.cumsum(counts, 0) - counts
    return nnf.embedding_bag(cols, sae.W_dec, offsets, mode="sum",
                             per_sample_weights=vals.to(sae.W_dec.dtype)) + sae.b_dec


@dataclass
class SAEEvalResult:
    true_l0: float
    sae_l0: float
    dead_latents: int
    shrinkage: float
    explained_variance: float
    mcc: float
    uniqueness: float
    classification: dict[str, float]
    n_samples: int
    features: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    latents: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    edges: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # absorption and splitting headlines

    def to_dict(self) -> dict[str, Any]:
        """sae_lens's keys (classification nested, as its `to_dict`), then synthviz's extras."""
        return {"true_l0": self.true_l0, "sae_l0": self.sae_l0, "dead_latents": self.dead_latents,
                "shrinkage": self.shrinkage, "explained_variance": self.explained_variance,
                "mcc": self.mcc, "uniqueness": self.uniqueness,
                "classification": dict(self.classification), "n_samples": self.n_samples,
                **self.summary}


class SAEAccumulator:
    """Streams batches; `result()` is an `SAEEvalResult`. Call `bind(model)` first (the stream
    driver does). `encode="auto"` encodes each sample from its active features when that pays
    (`synthviz.sae.feature_encode`; equal to the dense encode up to float32 rounding), and
    densely for a batch whose hidden vectors are not the bound model's sums of features."""

    needs_hidden = True

    def __init__(self, sae: SAE, *, cofire_samples: int = 8192, top_cofire: int = 5,
                 with_mcc: bool = True, split_threshold: float = metrics.SPLIT_COS,
                 encode: str = "auto"):
        self.sae = sae
        self.encode = encode  # "auto", "features" or "dense": see synthviz.sae.feature_encode
        self.cofire_samples = cofire_samples
        self.top_cofire = top_cofire
        self.with_mcc = with_mcc
        self.split_threshold = split_threshold

    # ------------------------------------------------------------------ setup
    def bind(self, model) -> None:
        check_d_in(self.sae, model.hidden_dim)
        dev = model.device
        self.sae.to(dev)
        self.m = matching_for(self.sae, model.feature_vectors, self.with_mcc)
        self.model, self.fenc = model, None  # the feature encoder is built on the first batch
        n, nl = model.num_features, self.sae.d_sae
        self.n_feat, self.n_lat, self.dev = n, nl, dev
        z = lambda k: torch.zeros(k, dtype=torch.long, device=dev)  # noqa: E731
        self.feature_count, self.latent_count = z(n), z(nl)
        self.tp_dec, self.tp_enc, self.tp_lat = z(n), z(n), z(nl)
        self.edge_n, self.edge_fire = z(n), z(n)  # indexed by the child
        self.nochild_n, self.nochild_fire = z(n), z(n)  # indexed by the parent
        self.fb = self.m.feature_best_latent.to(dev)
        self.fe = self.m.feature_best_latent_enc.to(dev)
        lb = self.m.latent_best_feature.to(dev)
        # latents grouped by their best feature, to expand feature entries to latent entries
        self.lat_sorted = torch.argsort(lb, stable=True)
        self.lat_per_feat = torch.bincount(lb, minlength=n)
        self.feat_start = torch.cumsum(self.lat_per_feat, 0) - self.lat_per_feat
        forest = model.forest
        self.parent = forest.parent.to(dev) if forest is not None else None
        self.has_child = None
        if forest is not None:
            self.has_child = torch.zeros(n, dtype=torch.bool, device=dev)
            self.has_child[self.parent[self.parent >= 0]] = True
        self.depth = forest.depth.clone() if forest is not None else torch.full((n,), -1)
        self.n = 0
        self.true_l0 = self.sae_l0 = 0
        self.sum_x = torch.zeros(model.hidden_dim, dtype=torch.float64)
        self.sum_sq = self.sum_resid = self.shrink_sum = 0.0
        self.shrink_n = 0
        self.cofire_keys: list[torch.Tensor] = []
        self.cofire_lat = z(nl)
        self.cofire_seen = self.cofire_pairs = 0

    # ------------------------------------------------------------------ one batch
    @torch.no_grad()
    def update(self, rows, cols, vals, batch_size, hidden=None) -> None:
        sae, dev = self.sae, self.dev
        all_rows, all_cols, all_vals = rows.to(dev), cols.to(dev), vals.to(dev)
        keep = vals > 0
        rows, cols = rows[keep].to(dev), cols[keep].to(dev)
        if self.model is not None:  # first batch: its L0 says whether the feature path pays
            self.fenc = feature_encode.build(sae, self.model, self.encode,
                                             l0=all_rows.numel() / max(batch_size, 1))
            self.model = None
        if self.fenc is not None and self.fenc.explains(hidden, all_rows, all_cols, all_vals):
            acts = sae.activate(self.fenc.pre_acts(all_rows, all_cols, all_vals, batch_size))
        else:
            acts = sae.encode(hidden)
        fires = acts != 0
        lr, lc = fires.nonzero(as_tuple=True)
        if sae.backend is None and lr.numel() * SPARSE_DECODE_SHARE < batch_size * sae.d_sae:
            recon = _sparse_decode(sae, lr, lc, acts[lr, lc], batch_size)
        else:
            recon = sae.decode(acts)
        self._reconstruction(hidden, recon)
        self.n += batch_size
        self.true_l0 += int(rows.numel())
        self.sae_l0 += int(lr.numel())
        n = self.n_feat
        self.feature_count += torch.bincount(cols, minlength=n)
        self.latent_count += torch.bincount(lc, minlength=self.n_lat)
        hit = fires[rows, self.fb[cols]]
        self.tp_dec += torch.bincount(cols[hit], minlength=n)
        self.tp_enc += torch.bincount(cols[fires[rows, self.fe[cols]]], minlength=n)
        self._latent_tp(rows, cols, fires)
        if self.parent is not None:
            self._edges(rows, cols, hit, fires)
        if self.cofire_seen < self.cofire_samples:
            self._cofire(rows, cols, lr, lc, batch_size)

    def _reconstruction(self, hidden: torch.Tensor, recon: torch.Tensor) -> None:
        x = hidden.to(torch.promote_types(hidden.dtype, torch.float32))
        self.sum_x += x.sum(0).to("cpu", torch.float64)
        self.sum_sq += x.pow(2).sum().item()
        self.sum_resid += (x - recon).pow(2).sum().item()
        xn = x.norm(dim=-1)
        ok = xn > 1e-6
        self.shrink_sum += (recon.norm(dim=-1)[ok] / xn[ok]).sum().item()
        self.shrink_n += int(ok.sum())

    def _latent_tp(self, rows, cols, fires) -> None:
        """sae_lens's per-latent true positives: latent fires and its best feature is on."""
        cnt = self.lat_per_feat[cols]
        sel = cnt > 0
        r, f, c = rows[sel], cols[sel], cnt[sel]
        if r.numel() == 0:
            return
        total = int(c.sum())
        base = torch.repeat_interleave(self.feat_start[f], c, output_size=total)
        first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c, output_size=total)
        lat = self.lat_sorted[base + torch.arange(total, device=self.dev) - first]
        rr = torch.repeat_interleave(r, c, output_size=total)
        self.tp_lat += torch.bincount(lat[fires[rr, lat]], minlength=self.n_lat)

    def _edges(self, rows, cols, hit, fires) -> None:
        n = self.n_feat
        par = self.parent[cols]
        child = par >= 0
        keys = rows * n + cols
        skeys = torch.sort(keys).values
        ck = rows[child] * n + par[child]
        pos = torch.searchsorted(skeys, ck).clamp(max=max(skeys.numel() - 1, 0))
        both = skeys[pos] == ck  # the parent is on in the child's row
        c_on, r_on, p_on = cols[child][both], rows[child][both], par[child][both]
        self.edge_n += torch.bincount(c_on, minlength=n)
        pfire = fires[r_on, self.fb[p_on]]
        self.edge_fire += torch.bincount(c_on[pfire], minlength=n)
        # parents on with no child on
        with_kid = torch.unique(r_on * n + p_on)
        isp = self.has_child[cols]
        pk = keys[isp]
        if with_kid.numel():
            pos = torch.searchsorted(with_kid, pk).clamp(max=with_kid.numel() - 1)
            alone = with_kid[pos] != pk
        else:
            alone = torch.ones_like(pk, dtype=torch.bool)
        pc = cols[isp][alone]
        self.nochild_n += torch.bincount(pc, minlength=n)
        self.nochild_fire += torch.bincount(pc[hit[isp][alone]], minlength=n)

    def _cofire(self, rows, cols, lr, lc, batch_size) -> None:
        take = min(batch_size, self.cofire_samples - self.cofire_seen)
        # (latent, feature) pairs per row = latents fired x features on: stop at MAX_PAIRS in
        # all, so a dense SAE cannot make this the slow part (`cofire_samples_used` says so)
        per_row = (torch.bincount(lr, minlength=batch_size)[:take] *
                   torch.bincount(rows, minlength=batch_size)[:take])
        fits = int((torch.cumsum(per_row, 0) <= MAX_PAIRS - self.cofire_pairs).sum())
        if fits < take:  # the budget is spent: no later (smaller) sample may still slip in
            take = fits
            self.cofire_samples = self.cofire_seen + take
        if take == 0:
            return
        self.cofire_pairs += int(per_row[:take].sum())
        self.cofire_seen += take
        fsel = rows < take
        fr, fc = rows[fsel], cols[fsel]
        order = torch.argsort(fr, stable=True)
        fr, fc = fr[order], fc[order]
        fcount = torch.bincount(fr, minlength=take)
        fstart = torch.cumsum(fcount, 0) - fcount
        lsel = lr < take
        r, l = lr[lsel], lc[lsel]
        self.cofire_lat += torch.bincount(l, minlength=self.n_lat)
        c = fcount[r]
        total = int(c.sum())
        if total == 0:
            return
        first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c, output_size=total)
        idx = torch.repeat_interleave(fstart[r], c, output_size=total) + \
            torch.arange(total, device=self.dev) - first
        lat = torch.repeat_interleave(l, c, output_size=total)
        keys, counts = torch.unique(lat * self.n_feat + fc[idx], return_counts=True)
        self.cofire_keys.append((keys.cpu(), counts.cpu()))

    # ------------------------------------------------------------------ result
    def result(self) -> SAEEvalResult:
        m, n, nl = self.m, self.n_feat, self.n_lat
        fc, lcnt = self.feature_count.cpu(), self.latent_count.cpu()
        tp = self.tp_lat.cpu()
        pos = fc[m.latent_best_feature]
        fp, fn = lcnt - tp, pos - tp
        tn = self.n - tp - fp - fn
        cls = metrics.classification(tp, fp, fn, tn)
        lp, lrc, lf = metrics.prf(tp, fp, fn)
        fb, fe = m.feature_best_latent, m.feature_best_latent_enc
        tpd, tpe = self.tp_dec.cpu(), self.tp_enc.cpu()
        dp, dr, df = metrics.prf(tpd, lcnt[fb] - tpd, fc - tpd)
        ep, er, ef = metrics.prf(tpe, lcnt[fe] - tpe, fc - tpe)
        splits = metrics.splitting(m.latent_best_feature, m.latent_best_cos, n,
                                   self.split_threshold)
        hung = torch.full((n,), -1, dtype=torch.long)
        hung[m.hungarian_feature] = m.hungarian_latent
        rate = fc.double() / max(self.n, 1)
        features = {"feature": np.arange(n), "rate": rate.numpy(), "depth": self.depth.numpy(),
                    "count": fc.numpy(),
                    "best_latent": fb.numpy(), "best_cos": m.feature_best_cos.numpy(),
                    "precision": dp.numpy(), "recall": dr.numpy(), "f1": df.numpy(),
                    "best_latent_enc": fe.numpy(), "best_cos_enc": m.feature_best_cos_enc.numpy(),
                    "precision_enc": ep.numpy(), "recall_enc": er.numpy(), "f1_enc": ef.numpy(),
                    "latents": splits.numpy(), "hungarian_latent": hung.numpy()}
        top_f, top_frac = self._top_cofire()
        latents = {"latent": np.arange(nl), "count": lcnt.numpy(),
                   "rate": (lcnt.double() / max(self.n, 1)).numpy(),
                   "best_feature": m.latent_best_feature.numpy(),
                   "best_cos": m.latent_best_cos.numpy(), "precision": lp.numpy(),
                   "recall": lrc.numpy(), "f1": lf.numpy(), "top_features": top_f,
                   "top_fraction": top_frac}
        edges = self._edge_table(fc, tpd)
        gaps = edges.get("gap", np.zeros(0))
        gaps = gaps[np.isfinite(gaps)]
        summary = {
            "absorption": {"edges": int(len(gaps)),
                           "mean_gap": float(gaps.mean()) if len(gaps) else float("nan"),
                           "edges_gap_over_0.5": int((gaps > 0.5).sum())},
            "cofire_samples_used": self.cofire_seen,
            "splitting": {"threshold": self.split_threshold,
                          "split_features": int((splits >= 2).sum()),
                          "max_latents_per_feature": int(splits.max()) if n else 0},
        }
        return SAEEvalResult(
            true_l0=self.true_l0 / max(self.n, 1), sae_l0=self.sae_l0 / max(self.n, 1),
            dead_latents=int((lcnt == 0).sum()),
            shrinkage=self.shrink_sum / self.shrink_n if self.shrink_n else 0.0,
            explained_variance=metrics.explained_variance(self.sum_x, self.sum_sq,
                                                          self.sum_resid, self.n),
            mcc=m.mcc, uniqueness=m.uniqueness, classification=cls, n_samples=self.n,
            features=features, latents=latents, edges=edges, summary=summary)

    def _edge_table(self, fc: torch.Tensor, tpd: torch.Tensor) -> dict[str, np.ndarray]:
        if self.parent is None:
            return {}
        par = self.parent.cpu()
        child = (par >= 0).nonzero().squeeze(1)
        p = par[child]
        en, ef = self.edge_n.cpu()[child].double(), self.edge_fire.cpu()[child].double()
        pn, pf = fc[p].double(), tpd[p].double()
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        with_c = torch.where(en > 0, ef / en.clamp(min=1), nan)
        without = torch.where(pn - en > 0, (pf - ef) / (pn - en).clamp(min=1), nan)
        nn_, nf = self.nochild_n.cpu()[p].double(), self.nochild_fire.cpu()[p].double()
        alone = torch.where(nn_ > 0, nf / nn_.clamp(min=1), nan)
        return {"parent": p.numpy(), "child": child.numpy(),
                "parent_latent": self.m.feature_best_latent[p].numpy(),
                "both_on": en.numpy(), "parent_on": pn.numpy(),
                "with_child": with_c.numpy(), "without_child": without.numpy(),
                "gap": (without - with_c).numpy(), "no_child": alone.numpy()}

    def _top_cofire(self) -> tuple[np.ndarray, np.ndarray]:
        k, nl, n = self.top_cofire, self.n_lat, self.n_feat
        top_f = np.full((nl, k), -1, dtype=np.int64)
        top_frac = np.zeros((nl, k))
        if not self.cofire_keys:
            return top_f, top_frac
        keys, inv = torch.unique(torch.cat([k for k, _ in self.cofire_keys]), return_inverse=True)
        counts = torch.zeros(len(keys), dtype=torch.long).index_add_(
            0, inv, torch.cat([c for _, c in self.cofire_keys]))
        lat, feat = keys // n, keys % n
        order = np.lexsort((-counts.numpy(), lat.numpy()))
        lat, feat, counts = lat.numpy()[order], feat.numpy()[order], counts.numpy()[order]
        start = np.searchsorted(lat, lat, side="left")
        rank = np.arange(len(lat)) - start
        ok = rank < k
        denom = np.maximum(self.cofire_lat.cpu().numpy(), 1)
        top_f[lat[ok], rank[ok]] = feat[ok]
        top_frac[lat[ok], rank[ok]] = counts[ok] / denom[lat[ok]]
        return top_f, top_frac


def evaluate_sae(model, sae: SAE, n_samples: int = 100_000, *, seed: int | None = 0,
                 batch_size: int = 4096, progress=None, method: str = "sparse",
                 **options) -> SAEEvalResult:
    """Evaluate `sae` on `n_samples` drawn from `model` (on the model's device)."""
    from synthviz.stats.stream import collect

    return collect(model, n_samples, SAEAccumulator(sae, **options), seed=seed,
                   batch_size=batch_size, progress=progress, method=method)
