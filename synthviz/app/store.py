"""The app's shared data store (Panel's "structure with a DataStore" pattern, process-wide).

One `STORE` per server process holds:
- each loaded source model, once per (source, device), shared by every browser session;
- derived models (variations) in a small LRU keyed on the variation's scalar fields;
- sample statistics in an LRU keyed on (model key, sample settings);
- dictionary statistics (superposition, ~1-3 s at 16k) keyed on the feature-vector tensor itself,
  so cheap variations that share the base's dictionary reuse the base's result, and truncations
  (a prefix view of it) derive theirs exactly from its prefix tables in milliseconds.

Tensors do not hash by content, hence scalar keys. Concurrent sessions asking for the same key
wait for one computation instead of repeating it (single flight). Nothing here imports Panel.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import torch

from synthviz.app.stats_files import load_stats, save_stats, superposition_cache_file
from synthviz.errors import Cancelled, Progress

log = logging.getLogger(__name__)

INTERFERENCE_SAMPLES = 256  # 4M readout errors at 16k: smooth histograms, ~0.1 s
# a first look's (when it has the interference at all): half the readouts in half the time; the
# full count measures again on INTERFERENCE_SAMPLES
FIRST_LOOK_INTERFERENCE_SAMPLES = 128
COS_BINS = 400  # |cos| of a 16k dictionary lies below ~0.25: 100 bins over [0, 1] are too coarse


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.size:
            self.items.popitem(last=False)

    def __contains__(self, key) -> bool:
        return key in self.items

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class SampleSettings:
    """Everything that determines the sample statistics of one model (all scalars)."""
    samples: int = 8192
    first_k: int = 4096
    seed: int = 0
    cooc_how: str = "top"
    cooc_k: int = 32
    cooc_root: int = 0
    cooc_ids: tuple[int, ...] = ()


@dataclass
class SampleStats:
    """Statistics measured on one batch of samples (the fast path of every update)."""
    l0: Any
    firing: Any  # FiringStats without expected rates (see AnalyticStats.firing)
    cooccurrence: Any
    magnitudes: Any
    me_violations: int
    orphan_children: int
    samples_per_s: float
    seconds: float
    counts: torch.Tensor  # [N] active counts, to add expected rates later
    errors: dict[str, str] = field(default_factory=dict)  # statistic -> why it is missing


@dataclass
class AnalyticStats:
    """Analytic expected rates (QMC over the copula, ~0.2 s at 16k) and interference readouts
    ([D] @ [D, N] per sample, ~0.1 s for 256 samples): computed after sampling, drawn with it."""
    expected_l0: tuple[float, float] | None
    firing: Any  # FiringStats with expected rates
    interference: Any
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)


class _Unbound:
    """Feeds a stats accumulator without `collect` binding it: `FiringAccumulator.bind` would
    compute the analytic expected rates inside the fast pass (they are computed beside it)."""

    def __init__(self, acc):
        self.acc = acc

    def update(self, rows, cols, values, batch_size):
        self.acc.update(rows, cols, values, batch_size)

    def result(self):
        return self.acc


class _OwnerMovedOn(Exception):
    """The computation a waiter waited for was cancelled by its own session."""


WAIT_POLL_S = 0.25  # how often a waiter checks whether its own request has moved on


def _wait(fut: Future, progress: Progress | None):
    """The value of another session's computation, waiting no longer than our request lasts."""
    while True:
        try:
            return fut.result(timeout=WAIT_POLL_S)
        except FutureTimeout:
            if progress is not None:
                progress(0, 1)  # raises Cancelled when this request has been superseded


class Store:
    def __init__(self, max_models: int = 6, max_stats: int = 48, max_dicts: int = 6):
        self._lock = threading.Lock()
        self._sources: dict[tuple, Any] = {}  # never evicted: a handful of sources per process
        self._models = _LRU(max_models)
        self._stats = _LRU(max_stats)
        self._dicts = _LRU(max_dicts)
        self._inflight: dict[tuple, Future] = {}

    # ------------------------------------------------------------------ single flight
    def _once(self, cache, key, compute: Callable[[], Any], progress: Progress | None = None):
        """cache[key], computing it at most once even when several sessions ask together.

        A caller that finds the computation running in another session waits for it, but not
        blindly: every `WAIT_POLL_S` it calls its own `progress(0, 1)`, which raises `Cancelled`
        once its own request has moved on (so it stops waiting), and when the computation it
        waits for is cancelled (the other session moved on; not a failure of the work) it
        computes the value itself rather than taking over that session's cancellation."""
        while True:
            with self._lock:
                hit = cache.get(key)
                if hit is not None:
                    return hit
                fut = self._inflight.get(key)
                owner = fut is None
                if owner:
                    fut = self._inflight[key] = Future()
            if owner:
                break
            try:
                return _wait(fut, progress)  # raises Cancelled once our own request moved on
            except _OwnerMovedOn:
                continue  # ask again: compute it here, or wait for whoever took it over
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                self._inflight.pop(key, None)
            # waiters recompute what this session no longer wanted; real errors reach them all
            fut.set_exception(_OwnerMovedOn() if isinstance(exc, Cancelled) else exc)
            raise
        with self._lock:
            if isinstance(cache, dict):
                cache[key] = value
            else:
                cache.put(key, value)
            self._inflight.pop(key, None)
        fut.set_result(value)
        return value

    # ------------------------------------------------------------------ models
    def source(self, source: str, device: str = "auto", progress: Progress | None = None):
        """The model a source names (preset, folder, Hub id): loaded once per process."""
        from synthviz.sources import load
        key = ("source", str(source).strip(), str(device))
        return self._once(self._sources, key, lambda: long_lived(load(source, device=device,
                                                                      progress=progress)),
                          progress)

    def model(self, source: str, device: str, variation, progress: Progress | None = None):
        """(key, model): the source with `variation` applied; the source itself for identity."""
        base = self.source(source, device, progress)
        if variation is None or variation.is_identity():
            return ("model", source, str(device), None), base
        key = ("model", source, str(device), variation)  # a frozen, hashable value
        return key, self._once(self._models, key,
                               lambda: self._derive(source, device, base, variation, progress),
                               progress)

    def _derive(self, source: str, device: str, base, variation, progress: Progress | None):
        model = variation.apply(base, progress=progress)
        if variation.num_features is not None and getattr(model, "prefix_of", None) is None:
            # a truncation followed by other families: its features are a prefix of the same
            # variation without the truncation, whose per-tree statistics (expected rates) may
            # be known already (`stats.analytic` checks every tree it takes from it)
            whole = dataclasses.replace(variation, num_features=None)
            with self._lock:
                model.prefix_of = self._models.get(("model", source, str(device), whole))
        return model

    # ------------------------------------------------------------------ statistics
    def sample_stats(self, model_key: tuple, model, settings: SampleSettings,
                     progress: Progress | None = None) -> SampleStats:
        key = ("stats", model_key, settings)
        return self._once(self._stats, key, lambda: compute_sample_stats(model, settings, progress),
                          progress)

    def analytic_stats(self, model_key: tuple, model, settings: SampleSettings,
                       sample: SampleStats, progress: Progress | None = None,
                       interference: Any = None,
                       interference_samples: int = INTERFERENCE_SAMPLES) -> AnalyticStats:
        """interference: measured already (on the same first samples: see
        `compute_analytic_stats`), e.g. by the first look; reused when it has as many."""
        key = ("analytic", model_key, settings, interference_samples)
        return self._once(self._stats, key,
                          lambda: compute_analytic_stats(model, settings, sample, progress,
                                                         interference, interference_samples),
                          progress)

    def cached_sample_stats(self, model_key: tuple, settings: SampleSettings
                            ) -> SampleStats | None:
        """The sample statistics if cached (nothing is computed)."""
        with self._lock:
            return self._stats.get(("stats", model_key, settings))

    def superposition(self, model, progress: Progress | None = None):
        """Superposition statistics of the model's dictionary, cached on the tensor's identity
        in memory and on its content on disk (a dictionary is deterministic, and the 16k one
        takes seconds), so a restarted server or a second dictionary user pays nothing."""
        hit = self.cached_superposition(model)  # known, or a prefix of a known dictionary
        if hit is not None:
            return hit
        v = model.feature_vectors
        # the entry keeps `v` alive, so its data pointer cannot be reused by another tensor
        key = ("dict", v.data_ptr(), tuple(v.shape), tuple(v.stride()), str(v.dtype))

        def compute():
            from synthviz.stats.superposition import superposition_stats
            path = superposition_cache_file(v, COS_BINS)
            cached = load_stats(path)
            if cached is None:
                cached = superposition_stats(v, bins=COS_BINS, progress=progress)
                save_stats(path, cached)
            return v, cached
        return self._once(self._dicts, key, compute, progress)[1]

    def cached_superposition(self, model):
        """The dictionary's statistics if known, or derivable at once: a truncated model's
        dictionary is a prefix (a view) of its source's, whose prefix tables give the exact
        numbers without a new Gram product (`stats.superposition.prefix_stats`)."""
        from synthviz.stats.superposition import prefix_length_ok, prefix_stats
        v = model.feature_vectors
        key = ("dict", v.data_ptr(), tuple(v.shape), tuple(v.stride()), str(v.dtype))
        with self._lock:
            hit = self._dicts.get(key)
            if hit is not None:
                return hit[1]
            # a source with prefix tables (derived entries have none) that covers v
            found = next((k for k, (src, st) in self._dicts.items.items()
                          if k != key and _is_prefix(v, src) and prefix_length_ok(st, len(v))),
                         None)
            # get() marks the source as recently used: truncations keep it from being evicted
            source = None if found is None else self._dicts.get(found)[1]
        if source is None:
            return None
        stats = prefix_stats(source, v)
        with self._lock:
            self._dicts.put(key, (v, stats))
        return stats

    def clear(self) -> None:
        """Drop everything (tests); sessions keep the objects they already hold."""
        with self._lock:
            self._sources.clear()
            self._models = _LRU(self._models.size)
            self._stats = _LRU(self._stats.size)
            self._dicts = _LRU(self._dicts.size)


def long_lived(obj: Any) -> Any:
    """`obj`, with every object alive now (modules, the loaded source) taken out of the
    collector's full passes (in the served app a full pass took 0.5 s, and stalled whatever
    update it fell in); later full passes look at newer objects only."""
    gc.collect()
    gc.freeze()
    return obj


def _is_prefix(v: torch.Tensor, src: torch.Tensor) -> bool:
    """v is src[:n] (the same memory, rows and dtype), n < len(src)."""
    return (v.data_ptr() == src.data_ptr() and v.dtype == src.dtype and v.dim() == src.dim() == 2
            and v.shape[1] == src.shape[1] and v.shape[0] < src.shape[0]
            and v.stride() == src.stride() and v.device == src.device)




def cooccurrence_features(model, settings: SampleSettings):
    from synthviz.stats.cooccurrence import select_features
    how = settings.cooc_how
    if how == "subtree" and model.forest is None:
        how = "top"  # no hierarchy: the most frequent features instead of an empty set
    if how == "list":
        ids = [i for i in settings.cooc_ids if 0 <= i < model.num_features]
        return select_features(model, how="list", ids=ids)
    if how == "subtree":
        return select_features(model, how="subtree", root=settings.cooc_root, k=settings.cooc_k)
    return select_features(model, how="top", k=settings.cooc_k)


def compute_sample_stats(model, settings: SampleSettings, progress: Progress | None = None
                         ) -> SampleStats:
    """The fast pass: sample once and feed every sampled statistic from the same batches."""
    from synthviz.stats.cooccurrence import CooccurrenceAccumulator
    from synthviz.stats.frequencies import FiringAccumulator, firing_stats
    from synthviz.stats.l0 import L0Accumulator
    from synthviz.stats.magnitudes import MagnitudeAccumulator
    from synthviz.stats.stream import collect
    from synthviz.stats.validity import ValidityAccumulator

    errors: dict[str, str] = {}
    accs = {
        "l0": L0Accumulator(first_k=settings.first_k),
        "counts": _Unbound(FiringAccumulator(model.num_features)),
        "validity": ValidityAccumulator(model.forest, model.num_features),
    }
    try:
        accs["magnitudes"] = MagnitudeAccumulator(model.forest)
    except Exception as exc:  # one statistic failing must not cost the other plots
        errors["magnitudes"] = str(exc)
    try:
        accs["cooccurrence"] = CooccurrenceAccumulator(cooccurrence_features(model, settings))
    except Exception as exc:  # e.g. a bad feature list: the message goes in that plot
        errors["cooccurrence"] = str(exc)
    t0 = time.perf_counter()
    results = collect(model, settings.samples, list(accs.values()), seed=settings.seed,
                      progress=progress)
    secs = time.perf_counter() - t0
    res = dict(zip(accs, results))
    counts, n = res["counts"].counts, res["counts"].samples
    valid = res["validity"]
    return SampleStats(l0=res["l0"], firing=firing_stats(counts, n, model.firing_probabilities),
                       cooccurrence=res.get("cooccurrence"), magnitudes=res.get("magnitudes"),
                       me_violations=valid.me_violations, orphan_children=valid.orphan_children,
                       samples_per_s=settings.samples / max(secs, 1e-9), seconds=secs,
                       counts=counts, errors=errors)


def measure_interference(model, settings: SampleSettings, samples: int,
                         progress: Progress | None = None):
    """Readout errors on the first `samples` samples of the sample seed. Readouts cost a [D] @
    [D, N] product per sample: a few hundred samples give millions of readout errors, plenty
    for the histograms."""
    from synthviz.stats.stream import collect
    from synthviz.stats.superposition import InterferenceAccumulator
    return collect(model, samples, InterferenceAccumulator(model, max_samples=samples),
                   seed=settings.seed, progress=progress)


def compute_analytic_stats(model, settings: SampleSettings, sample: SampleStats,
                           progress: Progress | None = None, interference: Any = None,
                           interference_samples: int = INTERFERENCE_SAMPLES) -> AnalyticStats:
    """Expected rates and L0, and interference on the first `interference_samples` samples of
    the sample seed (the same for any sample count from that many up, so a measurement on as
    many samples can be passed in as `interference` and reused)."""
    from synthviz.stats.frequencies import firing_stats
    from synthviz.stats.l0 import expected_l0, expected_rates

    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    exp = firing = None
    try:
        rates = expected_rates(model)
        firing = firing_stats(sample.counts, sample.l0.samples, model.firing_probabilities, rates)
        exp = tuple(float(x) for x in expected_l0(model, first_k=settings.first_k))
    except Cancelled:
        raise  # not a failure to cache: the request moved on
    except Exception as exc:
        errors["expected"] = str(exc)
    try:
        n = min(interference_samples, settings.samples)
        if interference is None or interference.samples != n:
            interference = measure_interference(model, settings, n, progress)
    except Cancelled:
        raise  # not a failure to cache: the request moved on
    except Exception as exc:
        errors["interference"] = str(exc)
    return AnalyticStats(expected_l0=exp, firing=firing if firing is not None else sample.firing,
                         interference=interference, seconds=time.perf_counter() - t0,
                         errors=errors)


STORE = Store()
