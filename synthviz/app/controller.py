"""`Controller`: every setting of the explorer as a param, and the background worker behind it.

Each browser session (or notebook) has its own Controller; the models and statistics it shows
come from the process-wide `STORE`, so sessions share them. Any settings change is handed to a
worker thread (latest request wins), so setting a parameter never blocks the caller: cheap
changes show a first look from `PREVIEW_SAMPLES` samples within a second and the full count
soon after; expensive ones (a new dictionary, a first base build, L0 solving) report progress
through `progress` / `status` while the previous `results` stay. The stages of one update are
in `pipeline`.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import param

from synthviz.app import pipeline
from synthviz.app.pipeline import MODEL_PARAMS, SETTINGS
from synthviz.app.variation_bridge import settings_for
from synthviz.device import DEVICES, release_free_memory
from synthviz.errors import Cancelled, SynthvizError
from synthviz.variations import Variation

log = logging.getLogger(__name__)

CUSTOM = "custom"
DEFAULT_SAMPLES = 8192
# at most how long the worker waits for a served page to paint the first look before it
# samples the full count (both need the CPU: side by side, the first look took about twice as
# long to appear); the page says when it has painted (`page_drawn`)
PAGE_DRAW_WAIT_S = 1.0
# what a shared link carries (URL query names equal the param names)
URL_PARAMS = SETTINGS + ("tree_root", "cooc_measure")
# sliders that start from the loaded source's own values (N, D, seed and its hierarchy)
SOURCE_FOLLOW = ("num_features", "hidden_dim", "seed", "roots", "branching_min",
                 "branching_max", "branching_random", "depth", "me_portion", "me_min_depth",
                 "me_max_depth", "compensate", "rescale")


_LIVE: "weakref.WeakSet[Controller]" = weakref.WeakSet()

# Python's full garbage collections (its oldest generation: 0.07-0.13 s with a served page's
# objects) fell inside about one update in three. Deferred, they run once a controller has been
# idle this long, or after this many updates without one
IDLE_COLLECT_AFTER_S = 0.5
UPDATES_PER_COLLECT = 20
# and Python's own then waits for this many younger (generation 1) collections, not 10: an
# update makes about 4-6, so it comes only in long runs of updates without a pause, or in work
# that no controller does (a backstop, e.g. for the SAE tab)
DEFERRED_FULL_THRESHOLD = 100
_FULL_GC = {"deferred": False, "threshold": 10}


def defer_full_collections(on: bool = True) -> None:
    """Process-wide (the served app turns it on): Python's full collections run from the
    controllers' workers between updates (see `IDLE_COLLECT_AFTER_S`), and by themselves only
    rarely (`DEFERRED_FULL_THRESHOLD`); off restores Python's setting."""
    g0, g1, g2 = gc.get_threshold()
    if on and not _FULL_GC["deferred"]:
        _FULL_GC["threshold"] = g2
        gc.set_threshold(g0, g1, max(g2, DEFERRED_FULL_THRESHOLD))
    elif not on and _FULL_GC["deferred"]:
        gc.set_threshold(g0, g1, _FULL_GC["threshold"])
    _FULL_GC["deferred"] = on


@atexit.register
def _stop_workers(timeout: float = 5.0) -> None:
    """Let running workers reach a stopping point before the interpreter goes away (a torch
    op still running in a daemon thread at exit can abort the process)."""
    deadline = time.monotonic() + timeout
    for c in list(_LIVE):
        c.close()
        t = c._thread
        if t is not None and t.is_alive():
            t.join(max(0.0, deadline - time.monotonic()))


def preset_names() -> list[str]:
    """The presets a model picker offers."""
    from synthviz.presets import PRESETS
    return list(PRESETS)


class Controller(param.Parameterized):
    """The explorer's settings and its worker; `Explorer(controller=...)` shows them."""

    # -------------------------------------------------------------- the model
    source = param.String(default="base", doc="preset name, local model folder, or Hub id "
                          "owner/name[:subfolder]")
    preset = param.Selector(default="base", objects=[CUSTOM, *preset_names()],
                            doc="choosing a preset sets the sliders")
    device = param.Selector(default="auto", objects=list(DEVICES))
    std_mode = param.Selector(default="base", objects=["base", "constant"],
                              label="magnitude std", doc="base per-feature std, or one constant")
    std = param.Number(default=0.5, bounds=(0.0, 3.0), step=0.05, label="constant std")
    hidden_dim = param.Integer(default=768, bounds=(256, 2048), step=64, label="hidden dim")
    rel_p = param.Number(default=1.0, bounds=(0.05, 2.0), step=0.05, label="relative p")
    num_features = param.Integer(default=16384, bounds=(1024, 16384), step=1024,
                                 label="features (truncate)")
    hierarchy_mode = param.Selector(default="base", objects=["base", "custom"], label="hierarchy")
    roots = param.Integer(default=128, bounds=(1, 4096))
    branching_min = param.Integer(default=4, bounds=(2, 256), label="branching (min)")
    branching_max = param.Integer(default=4, bounds=(2, 256), label="branching (max)")
    branching_random = param.Boolean(default=False, label="random branching (min-max)")
    depth = param.Integer(default=3, bounds=(1, 12), label="max depth")
    me_portion = param.Number(default=1.0, bounds=(0.0, 1.0), step=0.05, label="ME portion")
    me_min_depth = param.Integer(default=0, bounds=(0, 12), label="ME min depth")
    me_max_depth = param.Integer(default=12, bounds=(0, 12), label="ME max depth")
    compensate = param.Boolean(default=True, label="compensate probabilities")
    rescale = param.Boolean(default=True, label="rescale children by parent")
    use_target_l0 = param.Boolean(default=False, label="solve for target L0")
    target_l0 = param.Number(default=34.0, bounds=(1.0, 500.0), step=0.5, label="target L0")
    target_l0_first_k = param.Number(default=None, allow_None=True, bounds=(0.5, 500.0),
                                     label="target first-K L0")
    seed = param.Integer(default=42, bounds=(0, 2**31 - 1), label="model seed")
    # -------------------------------------------------------------- sampling and statistics
    samples = param.Integer(default=DEFAULT_SAMPLES, bounds=(256, 1_048_576), label="samples")
    first_k = param.Integer(default=4096, bounds=(1, 1 << 20), label="K for first-K L0")
    sample_seed = param.Integer(default=0, bounds=(0, 2**31 - 1), label="sample seed")
    cooc_how = param.Selector(default="subtree", objects=["top", "subtree", "list"],
                              label="co-occurrence features")
    cooc_k = param.Integer(default=32, bounds=(2, 128), label="co-occurrence K")
    cooc_root = param.Integer(default=0, bounds=(0, None), label="co-occurrence subtree root")
    cooc_ids = param.String(default="", label="co-occurrence ids (comma separated)")
    cooc_measure = param.Selector(default="lift", objects=["lift", "phi", "npmi"],
                                  label="co-occurrence measure")
    tree_root = param.Integer(default=0, bounds=(0, None), label="tree of feature")
    compare_base = param.Boolean(default=False, label="compare to base")
    # -------------------------------------------------------------- outputs
    results = param.Parameter(default=None, precedence=-1, doc="latest `Results`")
    status = param.String(default="starting", precedence=-1)
    progress = param.Integer(default=0, bounds=(0, 100), precedence=-1)
    busy = param.Boolean(default=False, precedence=-1)
    error = param.String(default="", precedence=-1)

    def __init__(self, start: bool = True, **params):
        """start=False: nothing is computed until the first `request()` (so a page can apply
        the URL's settings first, and tests can check settings without sampling)."""
        self._cond = threading.Condition()
        self._pending: dict | None = None
        self._running: dict | None = None  # the settings being computed, if any
        self._closed = False
        self._thread: threading.Thread | None = None
        self._applying_preset = False
        self._last_progress = 0.0
        self._source_facts: dict[str, Any] | None = None
        self._pages = 0  # served pages drawing this controller's results (see `page_drawn`)
        self._drawn = threading.Event()
        self._uncollected = 0  # updates since this worker's last full collection
        # the source's own N, D and seed replace these slider values once it has loaded,
        # except those given explicitly (by the caller or, with the source, by a URL)
        self._follow_source = set(SOURCE_FOLLOW) - set(params)
        self._started = False
        preset = params.get("preset")
        super().__init__(**params)
        if preset not in (None, CUSTOM):
            self._apply_preset(preset, keep=set(params) - {"preset", "name"})
        _LIVE.add(self)
        self.param.watch(self._on_preset, ["preset"])
        self.param.watch(self._on_settings, list(SETTINGS))
        if start:
            self.request()

    # -------------------------------------------------------------- presets
    def _apply_preset(self, name: str, keep: set[str] = frozenset()) -> None:
        from synthviz.app.variation_bridge import preset_settings
        values = preset_settings(name, self._facts_or_defaults())
        values = {k: v for k, v in values.items() if k not in keep}
        self._applying_preset = True
        try:
            self.param.update(**values)
        finally:
            self._applying_preset = False

    def _on_preset(self, event) -> None:
        if event.new != CUSTOM and not self._applying_preset:
            self._apply_preset(event.new)

    def choose_model(self, text: str) -> None:
        """The one model picker: a preset name applies that preset (its source with its
        variation: the same cost and label however it is chosen, also when typed); anything else
        is a source (a model folder or a Hub id) with the sliders' current variation."""
        text = (text or "").strip()
        if not text or text == CUSTOM:
            return
        if text in preset_names():
            if self.preset == text:
                self._apply_preset(text)  # chosen again: back to the preset's own settings
            else:
                self.preset = text
            return
        self._applying_preset = True  # a source is no preset: nothing to match or apply
        try:
            self.param.update(preset=CUSTOM)
        finally:
            self._applying_preset = False
        self.source = text

    def model_choice(self) -> str:
        """What a model picker shows: the preset, or (once sliders differ from it) the source."""
        return self.preset if self.preset != CUSTOM else self.source

    def _facts_or_defaults(self) -> dict[str, Any]:
        if self._source_facts is None:
            from synthviz.app.variation_bridge import base_facts
            return base_facts()
        return self._source_facts

    # -------------------------------------------------------------- scheduling
    def _on_settings(self, *events) -> None:
        from synthviz.presets import PRESETS
        src = self.source.strip()
        if (not self._applying_preset and any(e.name == "source" for e in events)
                and src in PRESETS and src != "base"):
            # one model picker: a preset typed as a source is that preset (its base with its
            # variation, as the dropdown applies it), not a separate from-scratch build
            self.preset = src
            return
        if not self._applying_preset:
            from synthviz.app.variation_bridge import matching_preset
            names = [e.name for e in events]
            if any(n in MODEL_PARAMS and n not in ("source", "device") for n in names):
                self._applying_preset = True
                try:
                    self.preset = matching_preset(self.settings(), self._facts_or_defaults()) \
                        or CUSTOM
                finally:
                    self._applying_preset = False
        names = {e.name for e in events}
        if "source" in names:
            self._follow_source = set(SOURCE_FOLLOW) - names
        else:
            self._follow_source -= names  # set explicitly: no longer follows the source
        if self._started:
            self.request()

    def attach_page(self) -> None:
        """A served page draws these results: the worker then lets it draw a first look
        before it samples the full count (up to `PAGE_DRAW_WAIT_S`)."""
        self._pages += 1

    def page_drawn(self) -> None:
        """The page has painted the first look (called from the page's event loop)."""
        self._drawn.set()

    def settings(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in SETTINGS}

    def request(self) -> None:
        """Schedule a recomputation for the current settings; returns at once."""
        snap = self.settings()
        with self._cond:
            self._started = True
            self._pending = snap
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._worker, daemon=True,
                                                name=f"synthviz-{self.name}")
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None = 60.0) -> bool:
        """Block until every requested update has finished (tests, notebooks, scripts)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and self._running is None,
                                       timeout=timeout)

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._pending is None and self._running is None

    def close(self) -> None:
        """Stop the worker (a browser session closed)."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()

    def _worker(self) -> None:
        while True:
            if self._uncollected and _FULL_GC["deferred"]:
                with self._cond:
                    if self._pending is None and self._uncollected < UPDATES_PER_COLLECT:
                        self._cond.wait_for(lambda: self._pending is not None or self._closed,
                                            timeout=IDLE_COLLECT_AFTER_S)
                    collect = self._pending is None or self._uncollected >= UPDATES_PER_COLLECT
                if collect:
                    gc.collect()  # outside the lock: a request must not wait for it
                    self._uncollected = 0
            with self._cond:
                while self._pending is None and not self._closed:
                    if not self._cond.wait(timeout=30.0) and self._pending is None:
                        self._thread = None  # idle: let the thread go; request() starts another
                        return
                if self._closed:
                    return
                snap, self._pending = self._pending, None
                self._running = snap
            try:
                self._compute(snap)
            finally:
                release_free_memory()
                self._uncollected += 1
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def superseded(self, keys: tuple[str, ...] = SETTINGS) -> bool:
        """A newer request changes one of `keys` of the running one (or the session closed):
        what is being computed for the running one is no longer wanted."""
        with self._cond:
            if self._closed:
                return True
            new, run = self._pending, self._running
            return new is not None and run is not None and any(new[k] != run[k] for k in keys)

    def progress_callback(self, stage: str, cancel_on: tuple[str, ...] = ()
                  ) -> Callable[[int, int], None]:
        """A progress callback for long work; it raises `Cancelled` (stopping the work) once a
        newer request changes any setting in `cancel_on`, so a slider moved during a minute-long
        dictionary build does not wait for it. Settings the work does not depend on never
        cancel it: its result is still wanted."""
        def cb(done: int, total: int) -> None:
            if cancel_on and self.superseded(cancel_on):
                raise Cancelled(stage)
            now = time.monotonic()
            if done < total and now - self._last_progress < 0.2:
                return  # a few updates a second are plenty for the page
            self._last_progress = now
            pct = int(100 * done / total) if total else 0
            self.param.update(progress=max(0, min(100, pct)), status=f"{stage}: {pct}%")
        return cb

    def _compute(self, snap: dict[str, Any]) -> None:
        self.param.update(busy=True, progress=0, status="loading model")
        try:
            pipeline.compute(self, snap)
        except Cancelled:
            # newer settings follow; when the cancelled work was shared with another session
            # (single flight in the store) and ours still wants it, ask again
            self.param.update(status="cancelled: newer settings")
            if not self.superseded():
                self.request()
        except SynthvizError as exc:
            self.param.update(error=str(exc), status="error: previous model kept")
        except MemoryError:
            self.param.update(error="out of memory: use fewer samples or a smaller model",
                              status="error: previous model kept")
        except Exception as exc:  # shown as one line in the page; the traceback goes to the log
            log.exception("update failed")
            self.param.update(error=f"unexpected error ({type(exc).__name__}): {exc}",
                              status="error: previous model kept")
        finally:
            self.param.update(busy=False, progress=100)

    # -------------------------------------------------------------- pipeline.Host
    def publish(self, **values: Any) -> None:
        res = values.get("results")
        if res is not None and res.preview:
            self._drawn.clear()  # `first_look_published` waits for the page to paint this one
        self.param.update(**values)

    def source_loaded(self, facts: dict[str, Any], snap: dict[str, Any]) -> bool:
        self._source_facts = facts
        self._set_bounds(facts)
        own = settings_for(Variation(), facts)
        follow = {k: own[k] for k in self._follow_source if snap[k] != own[k]}
        self._follow_source = set()
        if follow and snap["source"] == self.source:
            self._reset_to_source(follow)  # a new source: those sliders start from its values
            return False
        return True

    def first_look_published(self) -> None:
        """A served page gets up to PAGE_DRAW_WAIT_S to paint the first look (`page_drawn`)."""
        if self._pages:
            self._drawn.wait(PAGE_DRAW_WAIT_S)

    def _set_bounds(self, facts: dict[str, Any]) -> None:
        n, d = facts["num_features"], facts["hidden_dim"]
        self.param.num_features.bounds = (min(1024, n), n)
        lo, hi = self.param.hidden_dim.bounds
        self.param.hidden_dim.bounds = (min(lo, d), max(hi, d))

    def _reset_to_source(self, values: dict[str, Any]) -> None:
        from synthviz.app.variation_bridge import matching_preset
        # the sliders take the loaded source's own values, which changes no variation: a preset
        # chosen on this source is still that preset (base-v1's presets: rescale follows it)
        preset = matching_preset({**self.settings(), **values}, self._facts_or_defaults(),
                                 prefer=self.preset) or CUSTOM
        self._applying_preset = True
        try:
            self.param.update(**values, preset=preset)
        finally:
            self._applying_preset = False
        self.request()

