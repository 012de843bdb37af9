"""Interference: how well each feature's true activation can be read out of a sample.

`InterferenceAccumulator` measures, on samples, how well the true activation a_i of a feature can be
read out by the plain projection d_i . (x - bias): for every sample it computes all N readouts with
a [B, D] @ [D, N] matmul, which is fine for a few thousand samples (16 k features: about 25 MFLOP
and 64 KiB of readouts per sample), and accumulates error histograms separately for active and
inactive features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from synthviz.errors import ConfigError
from synthviz.stats.analytic import expected_rates


@dataclass
class InterferenceStats:
    edges: torch.Tensor  # [bins + 1] readout error bins over [-R, R]
    active_counts: torch.Tensor  # [bins] errors of features active in the sample
    inactive_counts: torch.Tensor  # [bins] errors (= readouts) of inactive features
    active_mean: float
    active_std: float
    inactive_mean: float
    inactive_std: float
    active_n: int
    inactive_n: int
    signal_power: float  # mean a_i^2 over active features
    noise_power: float  # mean squared readout error over active features
    sir: float  # signal_power / noise_power
    sir_db: float
    outside_active: int  # errors beyond +-R (not in any bin)
    outside_inactive: int
    predicted_std: float  # sqrt(sum_j E[a_j^2] rate_j / D): the error std for random directions
    samples: int  # samples measured (at most max_samples)
    samples_seen: int = 0


class InterferenceAccumulator:
    """Readout noise d_i . (x - bias) - a_i of every feature on samples, active vs inactive.

    Each sample costs a [D] @ [D, N] product (all N readouts), done in row chunks; only the first
    `max_samples` samples fed are measured (later ones are counted in `samples_seen` only).
    The histogram range is +-`range_sigmas` times the error std predicted for random directions.
    """

    needs_hidden = True

    def __init__(self, model, bins: int = 100, max_samples: int = 4096, range_sigmas: float = 8.0,
                 chunk: int = 512):
        if bins < 1 or bins > 60000:
            raise ConfigError(f"bins must be within [1, 60000], got {bins}")
        if max_samples < 1:
            raise ConfigError(f"max_samples must be >= 1, got {max_samples}")
        self.model = model
        self.bins = bins
        self.max_samples = max_samples
        self.chunk = chunk
        w = model.feature_vectors.detach()
        self._w = w  # read as w.T: BLAS takes the transpose as it is (no [D, N] copy)
        self._bias = model.bias.detach()
        rates = expected_rates(model)
        mu = model.mean_magnitudes.detach().double().cpu()
        sd = model.std_magnitudes.detach().double().cpu()
        power = float((rates * (mu * mu + sd * sd)).sum())
        self.predicted_std = math.sqrt(power / max(model.hidden_dim, 1))
        r = range_sigmas * max(self.predicted_std, 1e-6)
        mag = 10 ** math.floor(math.log10(r))
        self.range = math.ceil(r / mag) * mag
        self._all = torch.zeros(bins, dtype=torch.int64)
        self._act = torch.zeros(bins, dtype=torch.int64)
        self._m = torch.zeros(6, dtype=torch.float64)  # all: n, sum, sumsq; active: n, sum, sumsq
        self._sig = 0.0
        self._out_all = self._out_act = 0
        self.samples = self.samples_seen = 0

    def _hist(self, err: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(counts over [-range, range], count outside): one pass (`histc` drops what lies
        outside; float32 counts are exact below 2^24 per bin, more than a chunk holds)."""
        r, b = self.range, self.bins
        e = err.reshape(-1)
        c = torch.histc(e, b, -r, r).to(torch.int64).cpu()
        return c, e.numel() - int(c.sum())

    def update(self, rows, cols, values, batch_size: int, hidden: torch.Tensor | None = None
               ) -> None:
        self.samples_seen += batch_size
        room = self.max_samples - self.samples
        if room <= 0:
            return
        if hidden is None:
            raise ConfigError("InterferenceAccumulator needs the decoded samples (hidden=...)")
        m = min(room, batch_size)
        dev = hidden.device
        wt = self._w.to(dev, hidden.dtype).T
        bias = self._bias.to(dev, hidden.dtype)
        n = wt.shape[1]
        for s in range(0, m, self.chunk):
            e = min(m, s + self.chunk)
            sel = (rows >= s) & (rows < e)
            r, c, v = rows[sel] - s, cols[sel], values[sel].to(hidden.dtype)
            err = (hidden[s:e] - bias) @ wt  # [b, N] readouts
            err.index_put_((r, c), -v, accumulate=True)  # readout - true activation
            ea = err[r, c]
            ha, oa = self._hist(ea)
            hall, oall = self._hist(err)
            self._all += hall
            self._act += ha
            self._out_all += oall
            self._out_act += oa
            # moments without a float64 copy of the [b, N] readouts: float64 sum, and the
            # sum of squares of each row (N float32 terms) added up in float64
            flat = err.view(-1)
            sq = torch.linalg.vector_norm(err, dim=1).double().square().sum()
            ead = ea.double()
            self._m += torch.tensor([float((e - s) * n), float(flat.sum(dtype=torch.float64)),
                                     float(sq), float(ea.numel()), float(ead.sum()),
                                     float((ead * ead).sum())], dtype=torch.float64)
            self._sig += float((v.double() ** 2).sum())
        self.samples += m

    def result(self) -> InterferenceStats:
        na, sa, qa = self._m[3:].tolist()
        nt, st, qt = self._m[:3].tolist()
        ni, si, qi = nt - na, st - sa, qt - qa

        def ms(cnt, s, q):
            if cnt < 1:
                return math.nan, math.nan
            mean = s / cnt
            var = max(q / cnt - mean * mean, 0.0) * cnt / (cnt - 1) if cnt > 1 else math.nan
            return mean, math.sqrt(var) if var == var else var

        am, asd = ms(na, sa, qa)
        im, isd = ms(ni, si, qi)
        sig = self._sig / na if na else math.nan
        noise = qa / na if na else math.nan
        sir = sig / noise if na and noise > 0 else math.nan
        return InterferenceStats(
            edges=torch.linspace(-self.range, self.range, self.bins + 1),
            active_counts=self._act.clone(), inactive_counts=self._all - self._act,
            active_mean=am, active_std=asd, inactive_mean=im, inactive_std=isd,
            active_n=int(na), inactive_n=int(ni), signal_power=sig, noise_power=noise, sir=sir,
            sir_db=10 * math.log10(sir) if sir == sir and sir > 0 else math.nan,
            outside_active=self._out_act, outside_inactive=self._out_all - self._out_act,
            predicted_std=self.predicted_std, samples=self.samples, samples_seen=self.samples_seen)
