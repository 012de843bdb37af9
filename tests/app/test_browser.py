"""The served app in headless Chromium: every plot renders data, live sliders, an expensive preset
with a progress bar, links that reopen a configuration, export, and two sessions at once.

Screenshots of every tab go to test-artifacts/ (gitignored). Plot data is read from the page's
Bokeh documents (window.Bokeh.documents[...].all_models), i.e. what the browser actually draws.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import psutil
import pytest

from tests.app.bokeh_page import visible_plots

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
READY = 300_000  # ms: a cold machine builds the 16k base (and its statistics) on first use

# a column that only that tab's plots have, so its data sources can be told apart
TAB_COLUMNS = {
    "L0": ["fraction"],
    "Frequencies": ["expected", "stored_p"],
    "Co-occurrence": ["lift", "count"],
    "Hierarchy": ["log10_rate", "nodes"],
    "Superposition": ["pairs", "max_abs_cos", "error"],
    "Magnitudes": ["magnitude", "relative"],
}

SOURCES_JS = """
() => {
  const out = [];
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.data === undefined || !String(m.type).endsWith('ColumnDataSource')) continue;
      const cols = Object.keys(m.data);
      let n = 0, sum = 0;
      for (const c of cols) {
        const v = m.data[c];
        n = Math.max(n, v.length || 0);
        if (v.length && typeof v[0] === 'number') {
          for (let i = 0; i < v.length; i++) if (Number.isFinite(v[i])) sum += v[i] * (i + 1);
        }
      }
      out.push({id: m.id, cols: cols, n: n, sum: sum});
    }
  }
  return out;
}
"""


def open_app(page, url: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    page.goto(url)
    wait_card(page, "l0", lambda v: v != "…", READY)
    return errors


def choose_model(page, text: str) -> None:
    """Type into the one model picker (a preset name, a folder or a Hub id) and press Enter."""
    box = page.locator(".sv-w-model input").first
    box.fill(text)
    box.press("Enter")


def model_line(page) -> str:
    return text_of(page.locator(".sv-model"))


def card(page, name: str) -> str:
    return page.locator(f".sv-card-{name} .sv-value").first.inner_text()


def wait_card(page, name: str, ok, timeout_ms: int = 120_000) -> str:
    deadline = time.monotonic() + timeout_ms / 1000
    last = None
    while time.monotonic() < deadline:
        try:
            last = card(page, name)
            if ok(last):
                return last
        except Exception:  # not rendered yet
            pass
        page.wait_for_timeout(200)
    raise AssertionError(f"card {name} never satisfied the condition; last value {last!r}")


def text_of(locator) -> str:
    """Text of a Panel component, whose content lives in its shadow root."""
    return locator.first.evaluate("el => (el.shadowRoot || el).textContent")


def sources(page, column: str) -> list[dict]:
    return [s for s in page.evaluate(SOURCES_JS) if column in s["cols"]]


def wait_sources(page, column: str, timeout_ms: int = 60_000) -> list[dict]:
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        found = [s for s in sources(page, column) if s["n"] > 0]
        if found:
            return found
        page.wait_for_timeout(250)
    raise AssertionError(f"no plot data source with column {column!r} rendered")


def show_tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def as_float(text: str) -> float:
    return float(text.replace(",", ""))


def test_page_renders_every_plot_with_data(served_app, page):
    url, _ = served_app
    errors = open_app(page, url)
    wait_card(page, "rho_mm", lambda v: v != "…", READY)
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1500, "height": 1900})  # tall: stacked plots fit
    for tab, columns in TAB_COLUMNS.items():
        show_tab(page, tab)
        for col in columns:
            found = wait_sources(page, col)
            assert max(s["n"] for s in found) > 0, (tab, col)
        page.wait_for_timeout(500)  # let the canvas paint before the screenshot
        page.screenshot(path=str(ARTIFACTS / f"app-{tab.lower()}.png"), full_page=True)
    # the headline cards hold numbers
    assert as_float(card(page, "n")) == 16384 and as_float(card(page, "d")) == 768
    assert 20 < as_float(card(page, "l0")) < 50 and 0.1 < as_float(card(page, "rho_mm")) < 0.2
    assert as_float(card(page, "me-violations")) == 0
    assert errors == []


def test_rel_p_slider_changes_the_l0_card_and_histogram(served_app, page):
    url, _ = served_app
    errors = open_app(page, url)
    before_card = as_float(card(page, "l0"))
    before = {s["id"]: s["sum"] for s in wait_sources(page, "fraction")}
    handle = page.locator(".sv-w-rel-p .noUi-handle").first
    handle.focus()
    for _ in range(10):  # 10 steps of 0.05: rel_p 1.0 -> 0.5
        handle.press("ArrowLeft")
    # Key presses land as several throttled updates, so the card may pass through an
    # intermediate rel_p (e.g. 0.65) first: wait for the final one, or time out and fail.
    after_card = as_float(wait_card(page, "l0", lambda v: v != "…" and 0.4 < as_float(
        v) / before_card < 0.6, timeout_ms=60_000))
    assert 0.4 < after_card / before_card < 0.6, (before_card, after_card)
    # the histogram's data changed too (new data sources, or new values in the old ones)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = {s["id"]: s["sum"] for s in sources(page, "fraction") if s["n"] > 0}
        if now and now != before:
            break
        page.wait_for_timeout(250)
    assert now and now != before
    assert "rel_p=0.5" in page.url  # the link now carries the setting
    # the page told the server when it had painted the first look (the server waits for that,
    # not a fixed time, before it samples the full count)
    ack = page.evaluate("""() => {
      const out = {}, seen = new Set();
      const walk = (v) => {
        if (!v || seen.has(v)) return; seen.add(v);
        for (const c of v.model.css_classes ?? [])
          if (c.startsWith('sv-ack-')) out[c] = v.model.value;
        for (const k of Array.from(v.child_views ?? [])) walk(k);
      };
      for (const r of Object.values(Bokeh.index)) walk(r);
      return out;
    }""")
    assert ack.get("sv-ack-sent", 0) > 0 and ack.get("sv-ack-seen") == ack["sv-ack-sent"], ack
    assert errors == []


def test_url_query_reopens_a_configuration(served_app, page):
    url, _ = served_app
    errors = open_app(page, url + "?rel_p=0.5&std_mode=constant&std=0.1&samples=4096")
    sub = page.locator(".sv-card-samples-per-s .sv-sub").first
    deadline = time.monotonic() + READY / 1000
    while "4,096 samples" not in sub.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(200)  # a first look from 1,024 samples comes before the 4,096
    assert "4,096 samples" in sub.inner_text()
    l0 = as_float(wait_card(page, "l0", lambda v: v != "…" and as_float(v) < 25))
    assert 14 < l0 < 21  # about half the base's 34.5
    body = page.locator(".sv-w-rel-p .bk-slider-title").first.inner_text()
    assert "0.5" in body
    assert errors == []


def test_d512_preset_shows_progress_and_updates_rho_mm(served_app, page):
    url, _ = served_app
    errors = open_app(page, url)
    base_rho = as_float(wait_card(page, "rho_mm", lambda v: v != "…", READY))
    # record, inside the page, whether the progress bar was ever shown and every status line
    page.evaluate("""() => {
      window.__sv = {progress: false, status: new Set()};
      setInterval(() => {
        const find = (sel, root = document) => {
          const hit = root.querySelector(sel);
          if (hit) return hit;
          for (const el of root.querySelectorAll('*')) {
            if (el.shadowRoot) { const h = find(sel, el.shadowRoot); if (h) return h; }
          }
          return null;
        };
        const bar = find('.sv-bar.sv-bar-on');
        if (bar && getComputedStyle(bar).visibility === 'visible' &&
            bar.getBoundingClientRect().height > 0)
          window.__sv.progress = true;
        const st = find('.sv-status');
        if (st) window.__sv.status.add((st.shadowRoot || st).textContent);
      }, 50);
    }""")
    choose_model(page, "d-512")
    rho = as_float(wait_card(page, "rho_mm", lambda v: v != "…" and abs(
        as_float(v) - base_rho) > 1e-3, READY))
    assert rho > base_rho  # fewer dimensions: more overlap between features
    assert as_float(card(page, "d")) == 512
    assert page.evaluate("() => window.__sv.progress")
    statuses = page.evaluate("() => Array.from(window.__sv.status)")
    assert any("ready" in s for s in statuses), statuses
    assert errors == []


def test_export_writes_a_folder_sae_lens_loads(served_app, page, export_root):
    from sae_lens.synthetic import SyntheticModel
    url, _ = served_app
    errors = open_app(page, url + "?num_features=4096")
    wait_card(page, "n", lambda v: v == "4,096")
    show_tab(page, "Share & export")
    page.locator(".sv-export-name input").first.fill("browser-export")
    page.locator(".sv-export-samples input").first.fill("2000")
    page.locator(".sv-export-button button").first.click()
    alert = page.locator(".sv-export-alert")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and "exported to" not in text_of(alert):
        assert "failed" not in text_of(alert), text_of(alert)
        page.wait_for_timeout(300)
    assert "exported to" in text_of(alert)
    folder = export_root / "browser-export"
    model = SyntheticModel.load_from_disk(str(folder))
    assert model.feature_dict.feature_vectors.shape == (4096, 768)
    assert "load_from_disk" in text_of(page.locator(".sv-snippet"))
    # a name that escapes the export root is refused with a message, nothing is written
    page.locator(".sv-export-name input").first.fill("../escape")
    page.locator(".sv-export-button button").first.click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and "exported to" in text_of(alert):
        page.wait_for_timeout(200)
    assert "export" in text_of(alert) and "exported to" not in text_of(alert), text_of(alert)
    assert not (export_root.parent / "escape").exists()
    assert errors == []


def test_two_sessions_share_one_model(served_app, browser):
    url, proc = served_app
    server = psutil.Process(proc.pid)
    first = browser.new_page()
    open_app(first, url)
    wait_card(first, "rho_mm", lambda v: v != "…", READY)
    time.sleep(1)
    rss0 = server.memory_info().rss
    pages = [browser.new_page() for _ in range(2)]
    errors = []
    for p in pages:
        p.on("pageerror", lambda exc: errors.append(str(exc)))
        p.goto(url)
    for p in pages:
        wait_card(p, "l0", lambda v: v != "…", READY)
        assert as_float(card(p, "n")) == 16384
    time.sleep(1)
    grown = server.memory_info().rss - rss0
    print(f"server RSS {rss0 / 2**20:.0f} MiB with one session, +{grown / 2**20:.1f} MiB for two more")
    model_bytes = 16384 * 768 * 4  # the dictionary alone; a copy per session would add this
    assert grown / 2 < 0.6 * model_bytes, f"server RSS grew {grown / 2**20:.1f} MiB for 2 sessions"
    assert errors == []
    for p in (first, *pages):
        p.close()


def enter_missing_folder(page):
    """Type a folder that does not exist as the source; the error alert once it names it."""
    choose_model(page, "/nonexistent/model-folder")
    alert = page.locator(".sv-error")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "model-folder" not in text_of(alert):
        page.wait_for_timeout(200)
    return alert


def test_errors_show_as_messages_and_keep_the_model(served_app, page):
    url, _ = served_app
    errors = open_app(page, url)
    alert = enter_missing_folder(page)
    message = text_of(alert)
    assert "model-folder" in message and "Traceback" not in message
    assert as_float(card(page, "n")) == 16384  # the previous model and plots stay
    assert sources(page, "fraction")
    assert errors == []


def test_page_requests_nothing_outside_the_machine(served_app, page):
    """Offline use: every request the page makes goes to the app's own server."""
    url, _ = served_app
    outside: list[str] = []
    page.on("request", lambda r: outside.append(r.url)
            if not r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
            else None)
    errors = open_app(page, url)
    page.wait_for_timeout(1000)
    assert outside == [], outside
    assert errors == []


def test_toggles_show_the_active_choice(served_app, page):
    """The std and hierarchy toggles: the active button differs clearly from the other."""
    url, _ = served_app
    open_app(page, url)
    for widget in ("std-mode", "hierarchy-mode"):
        colours = page.locator(f".sv-w-{widget} button").evaluate_all(
            "els => els.map(e => [e.classList.contains('bk-active'), "
            "getComputedStyle(e).backgroundColor])")
        active = [c for a, c in colours if a]
        other = [c for a, c in colours if not a]
        assert len(active) == 1 and other, colours

        def rgb(c):
            return [int(x) for x in re.findall(r"\d+", c)[:3]]
        gap = max(abs(a - b) for a, b in zip(rgb(active[0]), rgb(other[0])))
        assert gap > 60, f"{widget}: active {active[0]} vs {other[0]}"


def test_url_keeps_only_settings_that_worked_and_the_tab(served_app, page):
    url, _ = served_app
    errors = open_app(page, url + "?rel_p=0.5")
    wait_card(page, "l0", lambda v: v != "…" and as_float(v) < 25)
    show_tab(page, "Magnitudes")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and "tab=5" not in page.url:
        page.wait_for_timeout(200)
    assert "tab=5" in page.url and "rel_p=0.5" in page.url, page.url
    alert = enter_missing_folder(page)
    assert "model-folder" in text_of(alert)
    page.wait_for_timeout(1000)
    assert "nonexistent" not in page.url and "rel_p=0.5" in page.url, page.url
    # the copied link reopens the working model on the same tab
    other = page.context.new_page()
    other.goto(page.url)
    wait_card(other, "l0", lambda v: v != "…", READY)
    active = other.locator(".bk-tab.bk-active").first.inner_text()
    assert active == "Magnitudes", active
    assert text_of(other.locator(".sv-error")).strip() == "" or not other.locator(
        ".sv-error").first.is_visible()
    other.close()
    assert errors == []


def test_picker_takes_v2_and_v1_presets(served_app, page):
    """One model picker: a `v2/NAME` preset and a v1 preset name both work from it, each applied
    as its source with its variation, and the page says which model it is in words."""
    url, _ = served_app
    errors = open_app(page, url)
    base_l0 = as_float(card(page, "l0"))
    picker = page.locator(".sv-w-model input").first
    for name, source in (("v2/rel-p-0.5", "SynthSAEBench-16k base"), ("rel-p-0.5", "base-v1")):
        choose_model(page, name)
        l0 = as_float(wait_card(page, "l0", lambda v: v != "…" and as_float(v) < 0.7 * base_l0,
                                READY))
        assert abs(l0 / base_l0 - 0.5) < 0.1, (name, l0, base_l0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and f"Preset {name}" not in model_line(page):
            page.wait_for_timeout(200)
        line = model_line(page)
        assert f"Preset {name}" in line and source in line and "rel p 0.5" in line, line
        assert picker.input_value() == name
        choose_model(page, "base")  # back, for the next name
        wait_card(page, "l0", lambda v: abs(as_float(v) - base_l0) < 0.05 * base_l0, READY)
    assert errors == []


# Per visible figure: its legend entries, its visible renderers with their row counts, and how
# many strongly coloured pixels its canvas holds (glyphs are coloured; axes and text are grey).
SUPERPOSITION = ("Pairwise |cos|", "Max |cos|")


def _content(p: dict) -> list:
    return [sorted(d["sums"].items()) for d in p["data"]]


def wait_painted(page, before: dict[str, list] | None = None, timeout_s: float = 60
                 ) -> list[dict]:
    """The two superposition figures once each has a base layer, data for every legend entry and
    glyphs painted, and (given `before`, title -> data) the max-cos figure shows new data."""
    deadline = time.monotonic() + timeout_s
    while True:
        plots = [p for p in visible_plots(page, paint=True)
                 if p["title"].startswith(SUPERPOSITION)]
        if len(plots) == 2 and all(
                any(lg.startswith("base") for lg in p["legends"])
                and len(p["data"]) >= len(p["legends"]) and all(d["n"] > 0 for d in p["data"])
                and p["coloured"] > 2000 for p in plots) and (
                before is None or _changed(plots, before)) or time.monotonic() > deadline:
            return plots
        page.wait_for_timeout(500)


def _changed(plots: list[dict], before: dict[str, list]) -> bool:
    """The max-cos figure (x: each feature's expected rate) shows other data than `before`."""
    return any(p["title"].startswith("Max |cos|") and _content(p) != before.get(p["title"])
               for p in plots)


def assert_painted(plots: list[dict], before: dict[str, list] | None = None) -> None:
    assert len(plots) == 2, [p["title"] for p in plots]
    if before is not None:
        assert _changed(plots, before), "the max-cos figure still shows the previous model"
    for p in plots:
        assert any(lg.startswith("base") for lg in p["legends"]), p
        assert len(p["data"]) >= len(p["legends"]) and all(d["n"] > 0 for d in p["data"]), p
        assert p["coloured"] > 2000, f"{p['title']}: nothing painted ({p['coloured']} px)"


def test_superposition_of_a_new_dictionary_paints_every_layer(served_app, page):
    """A link to the Superposition tab of a new dictionary compared with the base: its results
    arrive in passes (the new superposition statistics follow), and each plot must end up with
    a renderer per legend entry, with data, and glyphs actually painted on its canvas (a WebGL
    figure replacing another one kept its legend and data but painted nothing). A hidden dim no
    other test uses, so its statistics are not in the server's memory: they come as a new pass.
    Then a cheap change (relative p) updates the figures (in place): new data, painted again."""
    url, _ = served_app
    errors = open_app(page, url + "?hidden_dim=448&samples=2048&compare_base=true&tab=4")
    wait_card(page, "rho_mm", lambda v: v != "…", READY)
    plots = wait_painted(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-superposition-d448.png"))
    assert_painted(plots)
    shown = {p["title"]: _content(p) for p in plots}
    handle = page.locator(".sv-w-rel-p .noUi-handle").first
    handle.focus()
    for _ in range(2):  # rel_p 1.0 -> 0.9
        handle.press("ArrowLeft")
    plots = wait_painted(page, before=shown)
    assert_painted(plots, before=shown)
    assert errors == []
