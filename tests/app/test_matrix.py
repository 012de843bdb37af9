"""Browser matrix: every plot tab after every kind of change, walking the page as a user does.

One served app and one page. Each step makes one change (a cheap slider, a preset, compare to
base on and off, a new source, a hierarchy control, an L0 target, hidden dim) while some tab is
shown, after every tab has been visited before; then every tab is shown in turn and each plot
that is attached and visible is read from the page's Bokeh models (titles, legend labels, data
columns) and compared with the controller's results as the headline cards show them:

- L0: the "mean L0" legend equals the L0 card, the title's sample count the samples card;
- Frequencies: the empirical rates sum to the mean L0 (sum of rates = mean active count);
- Co-occurrence and Hierarchy: each feature's rate equals its rate in the Frequencies plot
  (one sampling pass feeds all three), the forest title names the current root count;
- Superposition: the rho_mm legends equal the rho_mm card, the histogram counts N features;
- Magnitudes: the number of active values equals mean L0 x samples;
- every tab: base layers exactly when "compare to base" is on for a non-base model, no
  placeholder left once the model is ready.

The server log must have no "could not be replaced" warning, the page no console errors.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.app.bokeh_page import visible_plots
from tests.app.test_browser import READY, as_float, card, show_tab, text_of, wait_card

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TABS = ("L0", "Frequencies", "Co-occurrence", "Hierarchy", "Superposition", "Magnitudes")



def facts(page) -> dict:
    """What the cards (drawn from the controller's current results) say."""
    sub = page.locator(".sv-card-samples-per-s .sv-sub").first.inner_text()
    samples = int(re.search(r"([\d,]+) samples", sub).group(1).replace(",", ""))
    rho = card(page, "rho_mm")
    return {"l0": card(page, "l0"), "n": int(as_float(card(page, "n"))),
            "d": int(as_float(card(page, "d"))), "samples": samples,
            "rho_mm": None if rho == "…" else rho}


def _legend(plot, prefix: str) -> str | None:
    return next((lg for lg in plot["legends"] if lg.startswith(prefix)), None)


def _has_base(plot) -> bool:
    return any(lg.startswith("base") for lg in plot["legends"])


def _rates(plot, feature_col: str, rate_col: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for d in plot["data"]:
        if feature_col in d["cols"] and rate_col in d["cols"]:
            for f, r in zip(d["cols"][feature_col], d["cols"][rate_col]):
                out[int(f)] = float(r)
    return out


def check_tab(tab: str, plots: list[dict], f: dict, want_base: bool, freq: dict[int, float],
              expect: dict) -> list[str]:
    """Problems with what `tab` shows (an empty list when it shows the current model)."""
    bad: list[str] = []
    if not plots:
        return ["no plot visible"]
    for p in plots:
        if not p["title"] and any("text" in d["names"] for d in p["data"]):
            bad.append("a placeholder is shown instead of a plot")
    titled = {p["title"]: p for p in plots if p["title"]}

    def find(pattern):
        return next((p for t, p in titled.items() if re.search(pattern, t)), None)

    def base_ok(p, what):
        if _has_base(p) != want_base:
            bad.append(f"{what}: base layers {'missing' if want_base else 'shown'}")

    if tab == "L0":
        p = find(r"^L0 per sample")
        if p is None:
            return bad + ["no L0 histogram"]
        n = int(re.search(r"\(([\d,]+) samples", p["title"]).group(1).replace(",", ""))
        if n != f["samples"]:
            bad.append(f"title says {n} samples, cards {f['samples']}")
        mean = _legend(p, "mean L0 ")
        if mean is None or mean.split()[-1] != f["l0"]:
            bad.append(f"legend {mean!r} but L0 card {f['l0']}")
        base_ok(p, "L0")
    elif tab == "Frequencies":
        p = find(r"^Firing frequency")
        if p is None:
            return bad + ["no frequency plot"]
        total = sum(freq.values())
        if abs(total - float(f["l0"])) > 0.006:
            bad.append(f"empirical rates sum to {total:.3f}, L0 card {f['l0']}")
        seen = _legend(p, "empirical (")
        if seen is None or not seen.endswith(f"of {f['n']:,} seen)"):
            bad.append(f"legend {seen!r} but N card {f['n']}")
        base_ok(p, "frequencies")
    elif tab == "Co-occurrence":
        p = find(r"^Co-occurrence of")
        if p is None:
            return bad + ["no co-occurrence heatmap"]
        m = re.search(r"([\d,]+) samples", p["title"])
        if m is None or int(m.group(1).replace(",", "")) != f["samples"]:
            bad.append(f"title {p['title']!r} but {f['samples']} samples")
        # HoloViews hands a HeatMap's extra columns to Bokeh as text with 5 significant digits
        rates = _rates(p, "feature_i", "rate_i")
        off = [k for k, r in rates.items() if abs(r - float(f"{freq.get(k, 0.0):.5g}")) > 1e-9]
        if not rates or off:
            bad.append(f"feature rates differ from the frequency plot for {off[:5]}")
        if (find(r"^base model") is not None) != want_base:
            bad.append(f"base heatmap {'missing' if want_base else 'shown'}")
    elif tab == "Hierarchy":
        tree = find(r"^Tree of root")
        forest = find(r"roots, .* ME parents")
        if tree is None or forest is None:
            return bad + ["no tree or forest plot"]
        rates = _rates(tree, "index", "rate")  # a graph's node ids are its "index" column
        off = [k for k, r in rates.items() if abs(r - freq.get(k, 0.0)) > 1e-6]
        if not rates or off:
            bad.append(f"tree rates differ from the frequency plot for {off[:5]}")
        if "roots" in expect and not forest["title"].startswith(f"{expect['roots']} roots"):
            bad.append(f"forest title {forest['title']!r}, want {expect['roots']} roots")
        base_ok(forest, "forest")
    elif tab == "Superposition":
        hist = find(r"^Pairwise \|cos\|")
        scatter = find(r"^Max \|cos\|")
        if hist is None or scatter is None:
            return bad + ["no superposition plots"]
        lg = _legend(scatter, "features (rho_mm ")
        if f["rho_mm"] is None or lg != f"features (rho_mm {f['rho_mm']})":
            bad.append(f"legend {lg!r} but rho_mm card {f['rho_mm']}")
        lg = _legend(hist, f"{f['n']:,} features")
        if lg is None:
            bad.append(f"histogram legends {hist['legends']} do not count {f['n']:,} features")
        base_ok(hist, "cos histogram")
        base_ok(scatter, "max cos")
    elif tab == "Magnitudes":
        p = find(r"^Magnitudes of active features")
        if p is None:
            return bad + ["no magnitude plot"]
        values = int(re.search(r"\(([\d,]+) values", p["title"]).group(1).replace(",", ""))
        want = float(f["l0"]) * f["samples"]
        if abs(values - want) > 0.006 * f["samples"] + 1:
            bad.append(f"{values:,} active values, but L0 x samples = {want:,.0f}")
        base_ok(p, "magnitudes")
    return bad


def status(page) -> str:
    text = text_of(page.locator(".sv-status"))
    return text[text.rfind("status:"):]


def compare_on(page) -> bool:
    return page.locator(".sv-w-compare-base button").first.evaluate(
        "el => el.classList.contains('bk-active')")


def wait_ready(page, settled, timeout_s: float, before: str) -> None:
    """Until the status has left `before` (the status when the change was made), then says
    ready, and `settled(page)` holds. A control that changes on the page at once (a toggle
    button) would otherwise pass with the previous update's "ready", before the server has
    sent the first look, and the walk would start on the old model."""
    deadline = time.monotonic() + timeout_s
    last, moved = "", False
    while time.monotonic() < deadline:
        try:
            last = status(page)
            moved = moved or last != before
            if moved and "ready" in last and settled(page):
                return
        except Exception:  # mid-render
            pass
        page.wait_for_timeout(200)
    raise AssertionError(f"the change never settled; status {last!r}")


def walk_tabs(page, first: str, want_base: bool, expect: dict, settle_s: float = 20.0
              ) -> dict[str, list[str]]:
    """Show every tab (the one shown during the change first) and check it; a tab gets
    `settle_s` to show the current model."""
    order = [first] + [t for t in TABS if t != first]
    # the frequency plot's rates are the reference for the co-occurrence and tree rates
    # (once it shows the current model: a tab may show its last figure until the new one comes)
    show_tab(page, "Frequencies")
    freq: dict[int, float] = {}
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        p = next((p for p in visible_plots(page) if p["title"].startswith("Firing")), None)
        freq = _rates(p, "feature", "rate") if p else {}
        if freq and not check_tab("Frequencies", visible_plots(page), facts(page), want_base,
                                  freq, expect):
            break
        page.wait_for_timeout(200)
    problems: dict[str, list[str]] = {}
    for tab in order:
        show_tab(page, tab)
        deadline = time.monotonic() + settle_s
        while True:
            page.wait_for_timeout(250)
            try:
                bad = check_tab(tab, visible_plots(page), facts(page), want_base, freq, expect)
            except Exception as exc:  # e.g. a title without the expected numbers
                bad = [f"{type(exc).__name__}: {exc}"]
            if not bad or time.monotonic() > deadline:
                break
        if bad:
            problems[tab] = bad
    return problems


def slider_keys(page, widget: str, key: str, times: int) -> None:
    handle = page.locator(f".sv-w-{widget} .noUi-handle").first
    handle.focus()
    for _ in range(times):
        handle.press(key)


def choose_preset(page, name: str) -> None:
    choose_source(page, name)  # one model picker takes presets, folders and Hub ids


def choose_source(page, source: str) -> None:
    box = page.locator(".sv-w-model input").first
    box.fill(source)
    box.press("Enter")


def open_card(page, title: str) -> None:
    """Expand a collapsed sidebar card (its widgets are hidden until then)."""
    page.locator(".card-header", has_text=title).first.click()


def set_input(page, widget: str, value) -> None:
    box = page.locator(f".sv-w-{widget} input").first
    box.fill(str(value))
    box.press("Enter")


def test_every_tab_follows_every_kind_of_change(served_app, page, small_source):
    url, proc = served_app
    console: list[str] = []
    page.on("pageerror", lambda exc: console.append(str(exc)))
    page.on("console", lambda msg: console.append(msg.text) if msg.type == "error" else None)
    page.set_default_timeout(60_000)
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(url)
    wait_card(page, "rho_mm", lambda v: v != "…", READY)
    for tab in TABS:  # every tab visited once before any change
        show_tab(page, tab)
        page.wait_for_timeout(300)

    l0_before = as_float(card(page, "l0"))
    steps = [
        # (kind, tab shown while changing, action, settled, compare base on?, expectations)
        ("relative p slider", "L0", lambda: slider_keys(page, "rel-p", "ArrowLeft", 10),
         lambda p: as_float(card(p, "l0")) < 0.6 * l0_before, False, {}),
        ("preset (n-4096)", "Frequencies", lambda: choose_preset(page, "n-4096"),
         lambda p: card(p, "n") == "4,096", False, {}),
        ("compare to base on", "Co-occurrence",
         lambda: page.locator(".sv-w-compare-base button").first.click(),
         lambda p: compare_on(p) and "compare_base=true" in p.url, True, {}),
        ("compare to base off", "Hierarchy",
         lambda: page.locator(".sv-w-compare-base button").first.click(),
         lambda p: not compare_on(p) and "compare_base" not in p.url, False, {}),
        ("source (small model)", "Superposition", lambda: choose_source(page, small_source),
         lambda p: card(p, "n") == "2,048", False, {}),
        ("hierarchy control", "Magnitudes", lambda: (
            open_card(page, "Hierarchy"),
            page.locator(".sv-w-hierarchy-mode button", has_text="custom").first.click(),
            page.wait_for_timeout(500), set_input(page, "roots", 9)),
         lambda p: "roots=9" in p.url, False, {"roots": 9}),
        ("L0 target", "L0", lambda: (
            open_card(page, "L0 target"),
            page.locator(".sv-w-use-target-l0 input").first.check(),
            page.wait_for_timeout(500), set_input(page, "target-l0", 3)),
         lambda p: abs(as_float(card(p, "l0")) - 3) < 0.6, False, {"roots": 9}),
        ("hidden dim", "Frequencies", lambda: slider_keys(page, "hidden-dim", "ArrowRight", 1),
         lambda p: card(p, "d") == "128", False, {"roots": 9}),
    ]
    matrix: dict[str, dict[str, list[str]]] = {}
    for kind, tab, act, settled, want_base, expect in steps:
        show_tab(page, tab)
        page.wait_for_timeout(300)
        before = status(page)
        act()
        try:
            wait_ready(page, settled, 120, before)
        except AssertionError as exc:
            matrix[kind] = {"(all)": [str(exc)]}
            continue
        matrix[kind] = walk_tabs(page, tab, want_base, expect)
    failures = [f"{kind} / {tab}: {'; '.join(bad)}" for kind, row in matrix.items()
                for tab, bad in row.items()]
    log = Path(proc.log_path).read_text()
    replaced = log.count("could not be replaced")
    assert not failures and replaced == 0 and not console, (
        f"{len(failures)} of {len(steps) * len(TABS)} cells show another model:\n"
        + "\n".join(failures) + f"\nserver log: {replaced} 'could not be replaced' warnings"
        + f"\nconsole errors: {console[:5]}")
