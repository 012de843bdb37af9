"""One update of the explorer: a settings snapshot turned into `Results`, stage by stage.

The stages: load the source, apply the variation, a first look from `PREVIEW_SAMPLES` samples
(when the full count is not cached), the full count with expected rates and interference, then a
new dictionary's superposition statistics. Each stage publishes what it has through its `Host`
(the controller, which runs this in its worker thread) and stops once a newer request makes its
work unwanted. Nothing here imports Panel.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any, Protocol

from synthviz.app.model_text import ready_status
from synthviz.app.results import Results, sample_settings
from synthviz.app.store import FIRST_LOOK_INTERFERENCE_SAMPLES, STORE
from synthviz.app.variation_bridge import make_variation, source_facts
from synthviz.errors import SynthvizError
from synthviz.stats.analytic import rates_are_cheap

PREVIEW_SAMPLES = 1024  # the first look at a change, when its full count is not cached

# settings that need new samples (every other param is view-only and redraws from `results`)
MODEL_PARAMS = ("source", "device", "std_mode", "std", "hidden_dim", "rel_p", "num_features",
                "hierarchy_mode", "roots", "branching_min", "branching_max", "branching_random",
                "depth", "me_portion", "me_min_depth", "me_max_depth", "compensate", "rescale",
                "use_target_l0", "target_l0", "target_l0_first_k", "seed")
SAMPLE_PARAMS = ("samples", "first_k", "sample_seed", "cooc_how", "cooc_k", "cooc_root",
                 "cooc_ids", "compare_base")
SETTINGS = MODEL_PARAMS + SAMPLE_PARAMS


class Host(Protocol):
    """What an update needs from whoever runs it (the `Controller`)."""

    def publish(self, **values: Any) -> None:
        """Set outputs: results, status, progress, error."""

    def superseded(self, keys: tuple[str, ...] = SETTINGS) -> bool:
        """A newer request changes one of `keys`."""

    def progress_callback(self, stage: str, cancel_on: tuple[str, ...] = ()
                          ) -> Callable[[int, int], None]:
        """Progress for long work, raising `Cancelled` once `cancel_on` changes."""

    def source_loaded(self, facts: dict[str, Any], snap: dict[str, Any]) -> bool:
        """The source's facts; False when the host moves sliders to them (a new request)."""

    def first_look_published(self) -> None:
        """A first look went out: returns once a page has painted it (or at once)."""


def compute(host: Host, snap: dict[str, Any]) -> None:
    """Results for the settings `snap`, published through `host` as each stage ends."""
    t0 = time.perf_counter()
    took: dict[str, float] = {}  # what the time went on, for the final status
    if snap["branching_random"] and snap["branching_min"] > snap["branching_max"] \
            and snap["hierarchy_mode"] == "custom":
        raise SynthvizError(f"branching min {snap['branching_min']} is above max "
                            f"{snap['branching_max']}: lower min or raise max")
    t = time.perf_counter()
    src = STORE.source(snap["source"], snap["device"],
                       host.progress_callback("building base", ("source", "device")))
    took["loading the source"] = time.perf_counter() - t
    facts = source_facts(src)
    if not host.source_loaded(facts, snap):
        return
    variation = make_variation(snap, facts)
    host.publish(status="applying variation")
    t = time.perf_counter()
    key, model = STORE.model(snap["source"], snap["device"], variation,
                             host.progress_callback("building", MODEL_PARAMS))
    took["applying the variation"] = time.perf_counter() - t
    if host.superseded():
        return
    settings = sample_settings(snap)
    base_key = base_model = None
    if snap["compare_base"] and key[-1] is not None:
        base_key, base_model = STORE.model(snap["source"], snap["device"], None)

    def results(stats, analytic, base_stats, base_analytic, **kw) -> Results:
        return Results(
            settings=snap, model=model, stats=stats, analytic=analytic,
            superposition=STORE.cached_superposition(model), base_model=base_model,
            base_stats=base_stats, base_analytic=base_analytic,
            base_superposition=None if base_model is None
            else STORE.cached_superposition(base_model),
            seconds=time.perf_counter() - t0, **kw)

    def sample(settings):
        stats = STORE.sample_stats(key, model, settings,
                                   host.progress_callback("sampling", SETTINGS))
        base_stats = None if base_model is None else STORE.sample_stats(
            base_key, base_model, settings, host.progress_callback("sampling base", SETTINGS))
        return stats, base_stats

    # a first look from PREVIEW_SAMPLES samples (titled with its count) while the full count
    # is sampled (at 16k a cheap change is seen in about a second)
    uncached = any(k is not None and STORE.cached_sample_stats(k, settings) is None
                   for k in (key, base_key))
    analytic = base_analytic = None  # from a first look, when it measured them
    if uncached and settings.samples >= 2 * PREVIEW_SAMPLES:
        first = dataclasses.replace(settings, samples=PREVIEW_SAMPLES)
        t = time.perf_counter()
        host.publish(status=f"sampling {PREVIEW_SAMPLES:,} for a first look")
        stats, base_stats = sample(first)
        if host.superseded():
            return
        # where expected rates need no new integration (e.g. a truncation of a model whose
        # rates are known) the first look has them and the interference too, measured on
        # samples of its own (about 0.1 s at 16k; one after the other, sampling and this
        # were faster on two cores than side by side in two threads)
        if all(m is None or rates_are_cheap(m) for m in (model, base_model)):
            n = FIRST_LOOK_INTERFERENCE_SAMPLES
            analytic = STORE.analytic_stats(key, model, first, stats, interference_samples=n)
            base_analytic = None if base_model is None else STORE.analytic_stats(
                base_key, base_model, first, base_stats, interference_samples=n)
        # one publication: the page shows this status with the first look
        host.publish(results=results(stats, analytic, base_stats, base_analytic, preview=True),
                     error="", status=f"first look from {PREVIEW_SAMPLES:,} samples; "
                     f"sampling {settings.samples:,}")
        host.first_look_published()
        took["the first look"] = time.perf_counter() - t
    else:
        host.publish(status=f"sampling {settings.samples:,}")
    t = time.perf_counter()
    stats, base_stats = sample(settings)
    # this run's own time: cached statistics keep the seconds of the run that made them
    took["sampling"] = time.perf_counter() - t
    # expected rates and interference (about 0.4 s at 16k) join the full count's drawing; only
    # a new dictionary's superposition statistics (seconds) follow in a later pass. A newer
    # request skips what is left.
    host.publish(status="expected rates and interference")
    t = time.perf_counter()
    analytic = STORE.analytic_stats(
        key, model, settings, stats, host.progress_callback("expected rates", SETTINGS),
        None if analytic is None else analytic.interference)
    base_analytic = None if base_model is None else STORE.analytic_stats(
        base_key, base_model, settings, base_stats,
        interference=None if base_analytic is None else base_analytic.interference)
    took["expected rates and interference"] = time.perf_counter() - t
    if host.superseded():
        return
    res = results(stats, analytic, base_stats, base_analytic)
    host.publish(results=res, error="")
    sup = host.progress_callback("superposition", MODEL_PARAMS)
    steps = [("superposition", "superposition statistics",
              lambda: STORE.superposition(model, sup))]
    if base_model is not None:
        base_sup = host.progress_callback("superposition (base)", ("source", "device"))
        steps += [("base_superposition", "superposition statistics (base)",
                   lambda: STORE.superposition(base_model, base_sup))]
    for field_name, what, stage in steps:
        if getattr(res, field_name) is not None:
            continue
        if host.superseded():
            return
        host.publish(status=what, progress=0)
        t = time.perf_counter()
        res = dataclasses.replace(res, **{field_name: stage()},
                                  seconds=time.perf_counter() - t0)
        took[what] = time.perf_counter() - t
        host.publish(results=res)
    host.publish(status=ready_status(model, settings.samples, time.perf_counter() - t0, took))
