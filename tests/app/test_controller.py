"""Controller tests without a browser: presets set the sliders, each change updates the statistics
it should, expensive changes do not block the caller, errors keep the previous model, and
sessions share the loaded model."""

from __future__ import annotations

import contextlib
import math
import time

import pytest
import torch

from synthviz.app import STORE, Controller
from synthviz.app.views import Explorer
from synthviz.app.controller import CUSTOM, PAGE_DRAW_WAIT_S
from synthviz.app.pipeline import PREVIEW_SAMPLES
from synthviz.presets import PRESETS

WAIT = 240  # seconds; a cold machine may have to build the 16k base first


def ready(c: Controller) -> Controller:
    assert c.wait(WAIT), f"controller did not finish: {c.status}"
    assert c.error == "", c.error
    return c


@contextlib.contextmanager
def publications(c: Controller):
    """The `results` the controller publishes inside the block (each drawing of the page)."""
    seen: list = []
    watcher = c.param.watch(lambda e: seen.append(e.new), ["results"])
    try:
        yield seen
    finally:
        c.param.unwatch(watcher)


def l0_se(stats) -> float:
    return stats.l0.std / math.sqrt(stats.l0.samples)


# ------------------------------------------------------------------ presets (no sampling)

def test_presets_set_the_sliders():
    c = Controller(start=False)
    c.preset = "d-512"
    assert (c.hidden_dim, c.num_features, c.rel_p, c.std_mode) == (512, 16384, 1.0, "base")
    c.preset = "std-0.1"
    assert (c.std_mode, c.std, c.hidden_dim) == ("constant", 0.1, 768)
    c.preset = "rel-p-0.25"
    assert (c.rel_p, c.std_mode) == (0.25, "base")
    c.preset = "n-4096"
    assert c.num_features == 4096 and c.rel_p == 1.0
    c.preset = "rand-hierarchy-16-4-32-me-0.75-l0-30-4kl0-24"
    assert c.hierarchy_mode == "custom"
    assert (c.roots, c.branching_random, c.branching_min, c.branching_max, c.depth) == \
        (16, True, 4, 32, 3)
    assert c.me_portion == 0.75 and c.use_target_l0
    assert (c.target_l0, c.target_l0_first_k) == (30.0, 24.0)
    c.preset = "base-v1"
    assert c.hierarchy_mode == "custom" and c.rescale is False and not c.use_target_l0
    c.preset = "base"
    assert c.hierarchy_mode == "base" and c.rescale is True and c.num_features == 16384
    assert c.idle  # start=False: nothing was sampled


def test_every_preset_round_trips_through_the_sliders():
    """Setting a preset's sliders gives back that preset's Variation (so its link reopens it)."""
    from synthviz.app.variation_bridge import (make_variation, normalize, preset_variation,
                                               settings_for)
    facts = {"num_features": 16384, "hidden_dim": 768, "seed": 42,
             "hierarchy": {"roots": 128, "branching": 4, "depth": 3, "me_portion": 1.0,
                           "me_min_depth": 0, "me_max_depth": None, "compensate": True,
                           "rescale": True}}
    c = Controller(start=False)
    for name in PRESETS:
        source, v = preset_variation(name)
        settings = {**c.settings(), **settings_for(v, facts)}
        assert make_variation(settings, facts) == normalize(v, facts), name


def test_moving_a_slider_off_a_preset_says_custom():
    c = Controller(start=False)
    c.preset = "rel-p-0.5"
    c.rel_p = 0.55
    assert c.preset == CUSTOM
    c.rel_p = 0.75
    assert c.preset == "rel-p-0.75"  # the sliders match a preset again


# ------------------------------------------------------------------ live statistics (16k base)

@pytest.fixture(scope="module")
def base_controller():
    c = ready(Controller())
    yield c
    c.close()


def test_base_cards(base_controller):
    r = base_controller.results
    cards = r.cards
    assert (cards["N"], cards["D"]) == (16384, 768)
    # sampled L0 agrees with the analytic expectation within 5 standard errors (+3% model error)
    exp_l0, exp_k = r.expected_l0
    assert abs(cards["L0"] - exp_l0) < 5 * l0_se(r.stats) + 0.03 * exp_l0
    assert abs(cards["first-K L0"] - exp_k) < 5 * r.stats.l0.std_first_k / math.sqrt(
        r.stats.l0.samples) + 0.03 * exp_k
    assert cards["ME violations"] == 0 and r.stats.orphan_children == 0
    assert 0.1 < cards["rho_mm"] < 0.2 and cards["samples/s"] > 0


def test_rel_p_changes_l0_and_rates_but_not_the_dictionary(base_controller):
    c = base_controller
    before = c.results
    with publications(c) as published:
        c.rel_p = 0.5
        after = ready(c).results
    # a cheap change is drawn twice: a first look from PREVIEW_SAMPLES samples, then the full
    # count with the expected rates and interference already in it
    assert [r.preview for r in published] == [True, False], published
    assert published[0].stats.l0.samples == PREVIEW_SAMPLES < c.samples
    assert published[0].model is published[1].model and published[1].complete
    assert published[1].stats.l0.samples == c.samples
    assert after.analytic.interference is not None
    ratio = after.stats.l0.mean / before.stats.l0.mean
    tol = 5 * math.hypot(l0_se(after.stats) / before.stats.l0.mean,
                         l0_se(before.stats) * after.stats.l0.mean / before.stats.l0.mean ** 2)
    assert abs(ratio - 0.5) < 0.08 + tol, ratio  # L0 scales by about k
    assert float(after.firing.stored_p[0]) == pytest.approx(
        0.5 * float(before.firing.stored_p[0]), rel=1e-5)
    # expected rates follow the probabilities: the expected L0 halves exactly (no clamping here)
    assert after.expected_l0[0] == pytest.approx(0.5 * before.expected_l0[0], rel=0.02)
    # same dictionary: the tensors and the cached superposition result are shared
    assert after.model.feature_vectors is before.model.feature_vectors
    assert after.superposition is before.superposition
    c.rel_p = 1.0
    assert ready(c).results.model is before.model  # back to the source itself


def test_truncation_after_another_change_has_its_rates_in_the_first_look(base_controller):
    # rel p, then a truncation: the truncated model is built from the base (truncation comes
    # before rel p), and its expected rates come from the rel-p model's, known already
    from synthviz.stats.analytic import DEFAULT_POINTS, _compute_expected_rates
    c = base_controller
    c.rel_p = 0.8
    whole = ready(c).results.model
    with publications(c) as published:
        c.num_features = 15360
        ready(c)
    first = published[0]
    assert first.preview and first.model.prefix_of is whole
    assert first.analytic is not None and first.analytic.interference is not None
    got = first.firing.expected_rate
    want = _compute_expected_rates(first.model, DEFAULT_POINTS)
    assert torch.allclose(got, want, rtol=2e-6, atol=1e-9), float((got - want).abs().max())
    c.param.update(rel_p=1.0, num_features=16384)
    ready(c)


def test_a_first_look_reuses_its_cached_interference(base_controller, monkeypatch):
    """The first look measures its interference unless the first look's statistics are cached
    already (a new full sample count after a truncation has the same first look): no readouts
    are measured twice on the update's path."""
    import synthviz.app.store as store_module
    calls: list[int] = []
    real = store_module.measure_interference
    # (the full count's interference, on more samples, is counted apart)
    monkeypatch.setattr(store_module, "measure_interference",
                        lambda *a, **k: (calls.append(a[2]), real(*a, **k))[1])
    c = base_controller
    c.num_features = 11264
    ready(c)
    after_truncation = len(calls)
    with publications(c) as published:
        c.samples = 6144  # not cached: a first look, whose statistics are
        ready(c)
    first = published[0]
    assert first.preview and first.analytic is not None
    assert first.analytic.interference is not None
    first_look = store_module.FIRST_LOOK_INTERFERENCE_SAMPLES
    assert calls.count(first_look) == 1 and calls[:after_truncation].count(first_look) == 1
    c.param.update(samples=8192, num_features=16384)
    ready(c)


def test_a_first_look_is_published_with_its_status(base_controller):
    """The page shows the status of quick work only with its first look (one update), so the
    first look must carry the status that describes it."""
    c = base_controller
    seen: list[str] = []
    watcher = c.param.watch(lambda e: seen.append(c.status) if e.new is not None
                            and e.new.preview else None, ["results"])
    try:
        c.num_features = 14336
        ready(c)
    finally:
        c.param.unwatch(watcher)
        c.num_features = 16384
        ready(c)
    assert seen and all(s.startswith("first look from 1,024 samples") for s in seen), seen


def test_std_changes_only_magnitudes(base_controller):
    c = base_controller
    before = c.results
    c.param.update(std_mode="constant", std=0.0)
    after = ready(c).results
    m = after.stats.magnitudes
    # features outside every tree are never rescaled: with std 0 each is exactly mu_i
    assert m.rel_std_by_depth[-1] < 1e-6 < before.stats.magnitudes.rel_std_by_depth[-1]
    assert after.model.firing_probabilities is before.model.firing_probabilities
    c.param.update(std_mode="base")
    ready(c)


def test_truncation_changes_n_and_the_dictionary_statistics(base_controller):
    from synthviz.app.store import COS_BINS
    from synthviz.stats import superposition_stats
    c = base_controller
    before = c.results
    with publications(c) as published:
        c.num_features = 4096
        after = ready(c).results
    assert after.cards["N"] == 4096 and after.stats.firing.empirical_rate.shape[0] == 4096
    # one drawing with everything: the truncated dictionary's statistics come from the base's
    # prefix tables at once, and equal a direct computation on the first 4096 rows
    assert [r.preview for r in published] == [True, False], published
    assert published[1].complete and published[0].superposition is published[1].superposition
    # the base's expected rates are known, so the truncation's need no new integration: the
    # first look already has them and the interference, measured there on fewer samples (in
    # half the time) and again with the full count
    from synthviz.app.store import FIRST_LOOK_INTERFERENCE_SAMPLES, INTERFERENCE_SAMPLES
    first = published[0].analytic
    assert first is not None and first.interference is not None
    assert first.interference.samples == FIRST_LOOK_INTERFERENCE_SAMPLES < INTERFERENCE_SAMPLES
    assert published[1].analytic.interference.samples == INTERFERENCE_SAMPLES
    assert torch.equal(first.firing.expected_rate, published[1].firing.expected_rate)
    sup = after.superposition
    assert sup.method == "prefix" and sup.num_features == 4096
    direct = superposition_stats(before.model.feature_vectors[:4096], bins=COS_BINS)
    assert sup.rho_mm == pytest.approx(direct.rho_mm, abs=1e-6)
    assert sup.mean_abs_cos == pytest.approx(direct.mean_abs_cos, rel=1e-6)
    assert (sup.partner == direct.partner).all()
    assert int((sup.hist_counts - direct.hist_counts).abs().sum()) <= 2
    assert after.superposition.rho_mm < before.superposition.rho_mm  # fewer neighbours
    # L0 of the first 4096 features of the base equals the base's first-4096 L0
    se = math.hypot(l0_se(after.stats), before.stats.l0.std_first_k
                    / math.sqrt(before.stats.l0.samples))
    assert abs(after.stats.l0.mean - before.stats.l0.mean_first_k) < 5 * se
    # truncations one after another each derive from the base, not from an earlier truncation
    # (whose statistics have no prefix tables)
    for n in (8192, 6144, 12288, 2048):
        with publications(c) as published:
            c.num_features = n
            ready(c)
        # the first look and the full count, both with the prefix-derived statistics
        assert [(r.model.num_features, r.superposition.method) for r in published] == \
            [(n, "prefix")] * 2, [r.superposition for r in published]
    c.num_features = 16384
    ready(c)


def test_sampling_settings(base_controller):
    c = base_controller
    c.param.update(samples=4096, first_k=1024, cooc_how="list", cooc_ids="5, 0, 9")
    r = ready(c).results
    assert r.stats.l0.samples == 4096 and r.stats.l0.first_k == 1024
    assert r.stats.cooccurrence.features.tolist() == [5, 0, 9]
    c.cooc_ids = "5, banana"
    c.wait(WAIT)
    assert "co-occurrence ids" in c.error and c.results is r  # message, previous results kept
    c.param.update(samples=8192, first_k=4096, cooc_how="subtree", cooc_ids="")
    ready(c)


def test_compare_to_base(base_controller):
    c = base_controller
    c.param.update(rel_p=0.75, compare_base=True)
    r = ready(c).results
    assert r.base_stats is not None and r.base_model is STORE.source("base", "auto")
    assert r.base_stats.l0.mean > r.stats.l0.mean
    c.param.update(rel_p=1.0, compare_base=False)
    ready(c)


# ------------------------------------------------------------------ small model: fast edge cases

def test_expensive_change_does_not_block(small_source):
    c = ready(Controller(source=small_source, samples=2048))
    assert c.results.cards["D"] == 64 and c.hidden_dim == 64  # sliders follow the source
    assert (c.roots, c.branching_random, c.branching_min, c.branching_max) == (24, True, 2, 5)
    assert c.preset == CUSTOM and c.results.model is STORE.source(small_source, "auto")
    old = c.results
    t0 = time.perf_counter()
    c.hidden_dim = 96  # a new orthogonalized dictionary, built in the worker thread
    took = time.perf_counter() - t0
    assert took < 0.2, took
    assert c.results is old and not c.idle
    ready(c)
    assert c.results.cards["D"] == 96 and c.results.superposition.hidden_dim == 96
    c.close()


def test_a_newer_setting_cancels_a_running_build(small_source, tmp_path, monkeypatch):
    """Moving the hidden-dim slider again stops the dictionary build the first move started;
    a second session that was waiting for that same build builds it itself instead."""
    import synthviz.builds as builds
    import synthviz.orthogonalize as ortho
    monkeypatch.setenv("SYNTHVIZ_CACHE", str(tmp_path))  # builds really run
    real = ortho.orthogonalize
    runs: dict[int, list[int]] = {}  # hidden dim -> steps done by each build of it

    def slow(vectors, num_steps, lr, progress=None):  # 200 observable steps, ~2 s
        mine = runs.setdefault(vectors.shape[1], [])
        mine.append(0)
        for i in range(200):
            time.sleep(0.01)
            if progress is not None:
                progress(i + 1, 200)
            mine[-1] += 1
        return real(vectors, num_steps, lr)
    monkeypatch.setattr(builds, "orthogonalize", slow)  # where dictionary builds look it up
    a = ready(Controller(source=small_source, samples=1024))
    b = ready(Controller(source=small_source, samples=1024))
    a.hidden_dim = 80
    deadline = time.monotonic() + 30
    while not runs.get(80) or runs[80][0] < 5:
        assert time.monotonic() < deadline, "the build did not start"
        time.sleep(0.01)
    b.hidden_dim = 80  # waits for a's build (single flight)
    time.sleep(0.1)
    a.hidden_dim = 112  # a moves on: its running build is cancelled
    ready(a)
    ready(b)
    assert a.results.cards["D"] == 112 and b.results.cards["D"] == 80
    # a's build of 80 stopped early; b then built 80 in full; 112 was built once, in full
    assert runs[112] == [200], runs
    assert len(runs[80]) == 2 and runs[80][0] < 200 and runs[80][1] == 200, runs
    a.close()
    b.close()


def test_bad_source_keeps_the_previous_model(small_source, tmp_path):
    c = ready(Controller(source=small_source, samples=1024))
    good = c.results
    c.source = str(tmp_path / "missing-folder")
    c.wait(WAIT)
    assert c.error and "missing-folder" in c.error and "Traceback" not in c.error
    assert c.results is good
    c.close()


def test_sessions_share_the_loaded_model(small_source):
    a = ready(Controller(source=small_source, samples=1024))
    b = ready(Controller(source=small_source, samples=1024, rel_p=0.5))
    assert a.results.model is STORE.source(small_source, "auto")
    # a cheap variation shares the source's dictionary tensor (no copy per session)
    assert b.results.model.feature_vectors.data_ptr() == a.results.model.feature_vectors.data_ptr()
    a.close()
    b.close()


def test_controller_renders_inline_like_in_a_notebook(small_source):
    """`controller` in a notebook cell: the same Explorer components, as a Bokeh model."""
    import panel as pn
    c = ready(Controller(source=small_source, samples=1024))
    layout = pn.panel(Explorer(controller=c))
    assert isinstance(layout, pn.Row)  # Explorer.__panel__: sidebar and main
    tabs = [o for o in layout.select(pn.Tabs)]
    assert tabs and "L0" in tabs[0]._names
    assert layout.get_root() is not None
    explorer = Explorer(controller=c)
    assert explorer.cards["N"].object and "2,048" in explorer.cards["N"].object
    c.close()


def test_one_model_picker_takes_presets_folders_and_hub_ids():
    """`choose_model` is the picker: a v2/ or a v1 preset name applies that preset (its source
    with its variation, whether chosen or typed), anything else is a source; `model_choice` is
    what the picker shows."""
    c = Controller(start=False)
    c.choose_model("v2/d-512")
    assert (c.preset, c.source, c.hidden_dim) == ("v2/d-512", "base", 512)
    assert c.model_choice() == "v2/d-512"
    c.choose_model(" d-512 ")  # v1: the same variation on base-v1
    assert (c.preset, c.source, c.hidden_dim) == ("d-512", "base-v1", 512)
    c.rel_p = 0.5  # sliders moved: no preset any more, the picker shows the source
    assert c.preset == CUSTOM and c.model_choice() == "base-v1"
    c.choose_model("d-512")  # chosen again: back to the preset's own settings
    assert c.preset == "d-512" and c.rel_p == 1.0
    c.choose_model("owner/name")
    assert (c.preset, c.source, c.model_choice()) == (CUSTOM, "owner/name", "owner/name")
    c.choose_model("")  # nothing typed: nothing changes
    assert c.source == "owner/name"
    # a preset typed as a source (e.g. from an old link) is that preset too
    c.source = "v2/rel-p-0.5"
    assert (c.preset, c.source, c.rel_p) == ("v2/rel-p-0.5", "base", 0.5)


def test_a_v1_preset_stays_itself_once_its_source_has_loaded(monkeypatch):
    """A v1 preset's source is base-v1 (rescale off): when it loads, the sliders follow its own
    values, which changes no variation, so the preset is still named (it said "custom")."""
    from synthviz.app.variation_bridge import base_facts
    c = Controller(start=False)
    monkeypatch.setattr(c, "request", lambda: None)
    c.choose_model("rel-p-0.5")
    facts = base_facts()
    c._source_facts = {**facts, "hierarchy": {**facts["hierarchy"], "rescale": False}}
    c._reset_to_source({"rescale": False})  # what the worker does once base-v1 has loaded
    assert (c.preset, c.source, c.rescale, c.model_choice()) == \
        ("rel-p-0.5", "base-v1", False, "rel-p-0.5")
    c._reset_to_source({"rel_p": 0.25})  # a value that does change the variation
    assert c.preset == "rel-p-0.25"
    c._reset_to_source({"hidden_dim": 700})
    assert c.preset == CUSTOM


def test_status_times_are_this_runs_own(small_source):
    """The status once read "took 5.6 s (sampling 7.6 s)": the sampling time was the cached
    statistics' own `seconds`, from the run (maybe another session's) that computed them, not
    the time this run spent. A run that finds them cached must not report their old time."""
    import dataclasses
    import re

    c = ready(Controller(source=small_source, samples=1024, sample_seed=7))
    try:
        items = STORE._stats.items
        keys = [k for k in items if k[0] == "stats" and k[2].seed == 7 and k[2].samples == 1024]
        assert keys
        for k in keys:  # as if another, slower run had computed them
            items[k] = dataclasses.replace(items[k], seconds=100.0)
        c.request()
        ready(c)
        assert "100" not in c.status, c.status
        m = re.search(r"in ([\d.]+) s$", c.status) or re.search(r"took ([\d.]+) s \((.*)\)",
                                                                c.status)
        assert m, c.status
        if m.re.pattern.startswith("took"):  # no part is longer than the whole
            total = float(m.group(1))
            parts = [float(x) for x in re.findall(r"([\d.]+) s", m.group(2))]
            assert all(p <= total for p in parts), c.status
    finally:
        c.close()


def test_a_slow_update_says_where_its_time_went(small_source):
    """After an update that took long, the status's parts account for most of its time (it once
    read "took 4.7 s (sampling 0.9 s, applying the variation 0.3 s)")."""
    import synthviz.app.pipeline as pipeline_module
    from synthviz.app.model_text import ready_status
    c = ready(Controller(source=small_source, samples=4 * PREVIEW_SAMPLES, compare_base=True))
    took = {}
    real = ready_status
    pipeline_module.ready_status = lambda m, n, total, parts: (took.update(parts, total=total)
                                                                 or real(m, n, total, parts))
    try:
        c.attach_page()  # nobody draws: the first look waits PAGE_DRAW_WAIT_S, which must count
        c.rel_p = 0.6
        ready(c)
    finally:
        pipeline_module.ready_status = real
        c.close()
    total = took.pop("total")
    assert {"the first look", "sampling", "expected rates and interference"} <= set(took), took
    assert took["the first look"] >= PAGE_DRAW_WAIT_S
    assert sum(took.values()) <= total and sum(took.values()) > 0.8 * total, (took, total)


# ------------------------------------------------------------------ single flight, with threads

def _in_thread(fn):
    import threading
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            out["error"] = exc
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_single_flight_waiter_stops_when_its_own_request_moves_on():
    """The stall: a second session waiting for the first one's computation waited on
    `fut.result()` with no way out, however long that took and even after its own request was
    superseded. Now it checks its own progress callback while waiting."""
    import threading

    from synthviz.app.store import Store
    from synthviz.errors import Cancelled

    store, started, release = Store(), threading.Event(), threading.Event()

    def slow():
        started.set()
        release.wait(30)
        return "value"
    owner, _ = _in_thread(lambda: store._once(store._models, "k", slow))
    assert started.wait(10)
    superseded = threading.Event()

    def progress(done, total):
        if superseded.is_set():
            raise Cancelled("sampling")
    waiter, out = _in_thread(lambda: store._once(store._models, "k", lambda: "other", progress))
    time.sleep(0.5)
    assert waiter.is_alive()  # waits for the owner meanwhile
    superseded.set()
    waiter.join(5)
    try:
        assert not waiter.is_alive(), "the waiter still waits after its request moved on"
        assert isinstance(out.get("error"), Cancelled)
    finally:
        release.set()
        owner.join(10)
    assert store._once(store._models, "k", lambda: "again") == "value"  # the owner's result


def test_single_flight_waiter_computes_what_a_cancelled_owner_dropped():
    """The first caller's session moved on (its computation raised Cancelled): a waiter that
    still wants the value computes it, instead of failing with another session's cancellation."""
    import threading

    from synthviz.app.store import Store
    from synthviz.errors import Cancelled

    store, started, release = Store(), threading.Event(), threading.Event()

    def cancelled():
        started.set()
        release.wait(30)
        raise Cancelled("building")
    owner, owner_out = _in_thread(lambda: store._once(store._models, "k", cancelled))
    assert started.wait(10)
    waiter, out = _in_thread(lambda: store._once(store._models, "k", lambda: "mine"))
    time.sleep(0.5)
    release.set()
    owner.join(10)
    waiter.join(10)
    assert isinstance(owner_out.get("error"), Cancelled)  # the owner still hears its own
    assert out == {"value": "mine"}, out
    assert store._once(store._models, "k", lambda: "again") == "mine"


@pytest.mark.parametrize("draws", [True, False])
def test_worker_lets_a_served_page_draw_the_first_look(small_source, draws):
    """With a served page attached, the worker waits (at most PAGE_DRAW_WAIT_S) for the page to
    draw the first look before sampling the full count, which would compete for the CPU."""
    c = ready(Controller(source=small_source, samples=4 * PREVIEW_SAMPLES))
    c.attach_page()
    waits, real_wait = [], c._drawn.wait
    c._drawn.wait = lambda timeout: waits.append((timeout, real_wait(timeout))) or waits[-1][1]
    if draws:  # what the page's `_apply` does once it has drawn a first look
        c.param.watch(lambda e: e.new.preview and c.page_drawn(), ["results"])
    with publications(c) as published:
        c.rel_p = 0.7 if draws else 0.65  # not cached by the other case
        ready(c)
    assert [r.preview for r in published] == [True, False]
    assert waits == [(PAGE_DRAW_WAIT_S, draws)]  # drawn: the worker went on at once
    c.close()


def test_full_collections_wait_for_a_pause_between_updates(small_source, monkeypatch):
    """A served app defers Python's full garbage collections (0.1 s with a page's objects) to
    a pause after an update: none runs while an update computes, one runs once it has ended."""
    import gc

    from synthviz.app import controller as controller_module
    compute = controller_module.pipeline.compute

    def allocating(host, snap):  # objects that outlive young collections call for a full one
        kept = [[] for _ in range(100_000)]  # (about 14 younger collections)
        compute(host, snap)
        return kept and None

    monkeypatch.setattr(controller_module.pipeline, "compute", allocating)
    c = Controller(source=small_source, samples=1024)
    assert c.wait(WAIT) and c.error == "", c.error
    saved = gc.get_threshold()
    during: list[bool] = []

    def seen(phase, info):
        if phase == "start" and info["generation"] == 2:
            during.append(c._running is not None)

    gc.set_threshold(700, 10, 2)  # without the deferral: a full collection in every update
    controller_module.defer_full_collections()
    gc.callbacks.append(seen)
    try:
        for n in (1536, 1024, 2048):
            c.num_features = n
            assert c.wait(WAIT) and c.error == "", c.error
        deadline = time.monotonic() + controller_module.IDLE_COLLECT_AFTER_S + 10
        while not during and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        gc.callbacks.remove(seen)
        controller_module.defer_full_collections(False)
        gc.set_threshold(*saved)
        c.close()
    assert gc.get_threshold() == saved
    assert during and not any(during), during
