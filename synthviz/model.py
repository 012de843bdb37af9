"""`SynthModel`: a SynthSAEBench-style model's tensors, built from a config or loaded from files.

Building follows sae_lens's seed conventions (section 2 of the reference): the dictionary and bias
use `seed`, probabilities `seed`, std magnitudes `seed + 1`, mean magnitudes `seed + 2`, the
hierarchy `seed + 3` and the correlation factor `seed + 4`. Random draws are made on the CPU so a
model is the same whatever device it later samples on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import torch

from synthviz.config import ModelConfig, magnitude_values
from synthviz.device import available_memory, resolve_device
from synthviz.errors import ConfigError, Progress
from synthviz.hierarchy import Forest, generate_forest
from synthviz.model_files import save_model
from synthviz.orthogonalize import orthogonalize
from synthviz.provenance import Provenance
from synthviz import sampling

log = logging.getLogger(__name__)

MIN_CORRELATION_DIAG = 0.01


@dataclass(eq=False)
class SynthModel:
    cfg: ModelConfig
    feature_vectors: torch.Tensor  # [N, D]
    bias: torch.Tensor  # [D]
    firing_probabilities: torch.Tensor  # [N], stored after compensation
    mean_magnitudes: torch.Tensor  # [N]
    std_magnitudes: torch.Tensor  # [N]
    forest: Forest | None = None
    correlation_factor: torch.Tensor | None = None  # [N, r]
    correlation_diag: torch.Tensor | None = None  # [N]
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    provenance: Provenance = field(default_factory=Provenance)  # source, clamped counts...
    # the model this one keeps the first N features of (a truncation), so statistics that are
    # per tree or per feature can be taken from it (not carried by `replace`)
    prefix_of: SynthModel | None = field(default=None, repr=False)
    _tables: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ basic facts
    @property
    def num_features(self) -> int:
        return self.feature_vectors.shape[0]

    @property
    def hidden_dim(self) -> int:
        return self.feature_vectors.shape[1]

    @property
    def hierarchy(self) -> Forest | None:
        return self.forest

    def __repr__(self) -> str:
        h = f", {len(self.forest.roots)} roots" if self.forest else ""
        return f"SynthModel(N={self.num_features}, D={self.hidden_dim}{h}, device={self.device})"

    # ------------------------------------------------------------------ sampling
    def tables(self) -> sampling.Tables:
        tb = self._tables.get(self.device)
        if tb is None:
            tb = sampling.build_tables(self.firing_probabilities, self.mean_magnitudes,
                                       self.std_magnitudes, self.correlation_factor,
                                       self.correlation_diag, self.forest, self.device)
            self._tables[self.device] = tb
        return tb

    def memoized(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """A value derived from this model's tensors, computed once per model (the tensors never
        change; variations make new models). Other modules use it instead of `_tables`."""
        if key not in self._tables:
            self._tables[key] = compute()
        return self._tables[key]

    def has_memoized(self, key: Hashable) -> bool:
        """Whether `memoized(key, ...)` would return at once."""
        return key in self._tables

    def _gen(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        if generator is not None:
            return generator
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def _vectors(self) -> torch.Tensor:
        tb = self.tables()
        key = ("vectors", self.device)
        v = self._tables.get(key)
        if v is None:
            v = (self.feature_vectors.to(self.device, tb.dtype), self.bias.to(self.device, tb.dtype))
            self._tables[key] = v
        return v

    @torch.no_grad()
    def sample_entries(self, batch_size: int, *, seed: int | None = None,
                       generator: torch.Generator | None = None, method: str = "sparse"
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(hidden [B, D], rows, cols, values) of the active features."""
        _check_batch(batch_size)
        check_sample_memory(self, batch_size, method)
        gen = self._gen(seed, generator)
        tb = self.tables()
        if method == "sparse":
            rows, cols, vals = sampling.sample_sparse(tb, batch_size, gen)
        elif method == "dense":
            dense = sampling.sample_dense(tb, batch_size, gen)
            rows, cols = dense.nonzero(as_tuple=True)
            vals = dense[rows, cols]
        else:
            raise ConfigError(f"method must be 'sparse' or 'dense', got {method!r}")
        w, b = self._vectors()
        hidden = sampling.decode(rows, cols, vals, batch_size, w, b)
        return hidden, rows, cols, vals

    @torch.no_grad()
    def sample(self, batch_size: int, *, seed: int | None = None,
               generator: torch.Generator | None = None, method: str = "sparse") -> torch.Tensor:
        return self.sample_entries(batch_size, seed=seed, generator=generator, method=method)[0]

    @torch.no_grad()
    def sample_with_features(self, batch_size: int, *, seed: int | None = None,
                             generator: torch.Generator | None = None, method: str = "sparse",
                             dense: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B, D], features [B, N]); features are sparse COO unless `dense=True`."""
        hidden, rows, cols, vals = self.sample_entries(batch_size, seed=seed, generator=generator,
                                                       method=method)
        coo = sampling.to_coo(rows, cols, vals, batch_size, self.num_features)
        return hidden, (coo.to_dense() if dense else coo)

    # ------------------------------------------------------------------ moving and saving
    def to(self, device: str | torch.device) -> SynthModel:
        self.device = resolve_device(device)
        return self

    def save(self, folder: str | Path, *, force: bool = False) -> Path:
        return save_model(self, folder, force=force)

    def replace(self, **changes) -> SynthModel:
        """A new model sharing every tensor not named in `changes` (no copies)."""
        keep = {k: getattr(self, k) for k in (
            "cfg", "feature_vectors", "bias", "firing_probabilities", "mean_magnitudes",
            "std_magnitudes", "forest", "correlation_factor", "correlation_diag", "device")}
        keep["provenance"] = self.provenance  # immutable: shared
        keep.update(changes)
        return SynthModel(**keep)


def _check_batch(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"sample count must be a positive integer, got {batch_size!r}")


# ---------------------------------------------------------------------- building from a config

def make_dictionary(num_features: int, hidden_dim: int, bias: bool | float, seed: int | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit random directions [N, D], then a bias of the configured norm, from one generator."""
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    vec = torch.randn(num_features, hidden_dim, generator=gen)
    vec = vec / vec.norm(p=2, dim=1, keepdim=True).clamp(min=1e-8)
    if bias:
        norm = 1.0 if bias is True else float(bias)
        b = torch.randn(hidden_dim, generator=gen)
        b = b / b.norm().clamp(min=1e-8) * norm
    else:
        b = torch.zeros(hidden_dim)
    return vec, b


def make_correlation(num_features: int, rank: int, scale: float, seed: int | None,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Factor = scale * randn(N, r) drawn in `dtype` (as sae_lens draws it, in the config's
    dtype); rows that would leave c_i < 0.01 are rescaled (counted)."""
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(seed)
    factor = torch.randn(num_features, rank, generator=gen, dtype=dtype) * scale
    sq = (factor**2).sum(dim=1)
    mask = (1 - sq) < MIN_CORRELATION_DIAG
    factor[mask, :] *= torch.sqrt((1 - MIN_CORRELATION_DIAG) / sq[mask].unsqueeze(1))
    diag = 1 - (factor**2).sum(dim=1)
    n_rescaled = int(mask.sum())
    if n_rescaled:
        log.warning("correlation: %d / %d rows were rescaled so that c_i >= %.2f; lower the rank "
                    "or correlation_scale to avoid it", n_rescaled, num_features, MIN_CORRELATION_DIAG)
    return factor, diag, n_rescaled


def compensated_probabilities(base_p: torch.Tensor, forest: Forest | None, compensate: bool
                              ) -> tuple[torch.Tensor, int]:
    """Apply the hierarchy's correction factors and clamp to 1; returns (p, number clamped)."""
    if forest is None or not compensate:
        return base_p, 0
    corrected = base_p * forest.probability_correction(base_p)
    clamped = int(((corrected >= 1.0) & (base_p < 1.0)).sum())
    if clamped:
        log.warning("hierarchy compensation clamped %d feature probabilities to 1", clamped)
    return corrected.clamp(max=1.0), clamped


def regenerated_probabilities(cfg: ModelConfig, forest: Forest | None) -> torch.Tensor:
    """The firing probabilities sae_lens regenerates from `cfg` and a stored forest (on load and
    on `.to()`): the generator's values, compensated when the config says so, in cfg's dtype."""
    base_p = cfg.firing_probability.generate(cfg.num_features, seed=cfg.sub_seed(0))
    if forest is not None and not forest.roots:
        forest = None
    return compensated_probabilities(base_p, forest, cfg.compensates)[0].to(cfg.torch_dtype)


def estimate_build_bytes(num_features: int, hidden_dim: int) -> int:
    # dictionary, Adam's two moments, gradient and a working copy
    return 6 * num_features * hidden_dim * 4


def check_memory(num_features: int, hidden_dim: int) -> None:
    need = estimate_build_bytes(num_features, hidden_dim)
    avail = available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ConfigError(
            f"a {num_features} x {hidden_dim} model needs about {need / 2**30:.1f} GiB to build, "
            f"but only {avail / 2**30:.1f} GiB is available")


def l0_upper_bound(model: SynthModel) -> float:
    """An upper estimate of the mean number of active features per sample (cached per model).

    Each feature fires at most at p times its parent's rate; an ME parent contributes at most
    its own rate in children. Used only to size memory, so a loose bound is fine.
    """
    return model.memoized("l0_bound", lambda: _l0_upper_bound(model))


def _l0_upper_bound(model: SynthModel) -> float:
    p = model.firing_probabilities.detach().double().cpu()
    q = p.clone()
    f = model.forest
    if f is not None:
        for nodes in f.levels[1:]:
            idx = torch.tensor(nodes, dtype=torch.long)
            par = f.parent[idx]
            q[idx] = p[idx] * q[par]
            s = torch.zeros_like(q).index_add_(0, par, q[idx])
            # with organizational nodes a parent's children may form several groups: skip the
            # ME reduction there (the bound only grows)
            me = f.me_mask[par] if f.org is None else torch.zeros_like(par, dtype=torch.bool)
            over = me & (s[par] > q[par])
            q[idx] = torch.where(over, q[idx] * q[par] / s[par].clamp(min=1e-300), q[idx])
    return float(q.sum())


def estimate_sample_bytes(model: SynthModel, batch_size: int, method: str = "sparse") -> int:
    """Peak working memory of one `sample_entries(batch_size)` call, generously estimated."""
    d, n = model.hidden_dim, model.num_features
    r = 0 if model.correlation_factor is None else model.correlation_factor.shape[1]
    per = 8 * d + 4 * r  # hidden output and embedding_bag result, copula factors
    if method == "dense":
        per += 21 * n  # eta, noise, activations (float32) and the fired mask
    # rows, cols (int64), values, sort order and index copies per active entry; 2x for safety
    per += int(2 * 64 * l0_upper_bound(model))
    return batch_size * per


def check_sample_memory(model: SynthModel, batch_size: int, method: str = "sparse") -> None:
    need = estimate_sample_bytes(model, batch_size, method)
    if need < (256 << 20):  # ordinary batches never read the memory figures
        return
    avail = available_memory(model.device)
    if avail is not None and need > 0.8 * avail:
        per = max(1, need // batch_size)
        fits = max(1, int(0.5 * avail) // per)
        raise ConfigError(
            f"sampling {batch_size} samples at once needs about {need / 2**30:.1f} GiB "
            f"({per} bytes per sample), but only {avail / 2**30:.1f} GiB is available; "
            f"sample in batches of at most {fits}")


def build_model(cfg: ModelConfig, device: str | torch.device = "auto",
                progress: Progress | None = None) -> SynthModel:
    """Build every component from `cfg`, as sae_lens 6.54.12 would with the same seed."""
    dev = resolve_device(device)
    check_memory(cfg.num_features, cfg.hidden_dim)
    n = cfg.num_features
    forest = None
    if cfg.hierarchy is not None:
        forest = generate_forest(n, cfg.hierarchy, cfg.sub_seed(3))
    factor = diag = None
    rescaled = None
    if cfg.correlation is not None:
        factor, diag, rescaled = make_correlation(
            n, cfg.correlation.rank, cfg.correlation.correlation_scale, cfg.sub_seed(4),
            dtype=cfg.torch_dtype)
    vectors, bias = make_dictionary(n, cfg.hidden_dim, cfg.bias, cfg.seed)
    if cfg.orthogonalization is not None:
        # with no effective step sae_lens still normalizes once more (a last-bit change)
        vectors = orthogonalize(vectors.to(dev), cfg.orthogonalization.effective_steps,
                                cfg.orthogonalization.lr, progress=progress).cpu()
    base_p = cfg.firing_probability.generate(n, seed=cfg.sub_seed(0))
    p, clamped = compensated_probabilities(base_p, forest, cfg.compensates)
    check_probabilities(p)
    std = magnitude_values(cfg.std_firing_magnitudes, n, cfg.sub_seed(1))
    mean = magnitude_values(cfg.mean_firing_magnitudes, n, cfg.sub_seed(2))
    dt = cfg.torch_dtype
    # sae_lens builds the dictionary and bias in float32 whatever the config's dtype
    model = SynthModel(
        cfg=cfg, feature_vectors=vectors.float(), bias=bias.float(), firing_probabilities=p.to(dt),
        mean_magnitudes=mean.to(dt), std_magnitudes=std.to(dt), forest=forest,
        correlation_factor=None if factor is None else factor.to(dt),
        correlation_diag=None if diag is None else diag.to(dt), device=dev,
        provenance=Provenance(probabilities_clamped=clamped, correlation_rows_rescaled=rescaled))
    validate_rescale(model)
    return model


def check_probabilities(p: torch.Tensor) -> None:
    """Refuse probabilities sae_lens cannot sample: torch.bernoulli rejects them, and its copula
    path turns them into NaN thresholds (such a feature would silently never fire)."""
    bad = (p < 0) | (p > 1) | ~torch.isfinite(p)
    if bool(bad.any()):
        v = float(p[bad][0])
        raise ConfigError(f"firing_probability: {int(bad.sum())} feature probabilities lie outside "
                          f"[0, 1] (e.g. {v:g}), which sae_lens cannot sample either")


def validate_rescale(model: SynthModel) -> None:
    f = model.forest
    if f is not None and (f.rescale or f.org is not None):
        parents = torch.tensor(f.rescaling_parents, dtype=torch.long)
        if parents.numel() and not bool((model.mean_magnitudes[parents] > 0).all()):
            raise ConfigError("mean firing magnitudes must be > 0 for parents that rescale children")

