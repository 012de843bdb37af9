"""App latency as a user sees it: from a cheap change in the browser until every plot on the
shown tab shows the new model (16k base, headless Chromium).

    python benchmarks/app_latency.py                 # 5 fresh values per kind of change
    python benchmarks/app_latency.py --repeats 3

Serves the app (`panel serve app`), opens it in /usr/bin/chromium at 1600x1000 and, for each
kind of cheap change (relative p, a constant std, truncation, compare to base, a preset that
shares the base's dictionary), makes the change with the page's own widgets while a tab is shown
and times until every visible plot on that tab shows the new model, read from the page's Bokeh
models and compared with the headline cards (the same checks as tests/app/test_matrix.py): first
the first look (the app draws a change from 1,024 samples while it samples the full count, and
the cards and titles say so), then the same from the full 8,192 samples.
Each change goes to a value not seen before (no cached result), except compare to base, whose
base statistics are cached after the first toggle (as in use).
A change is timed from the user's input event (the key or pointer press, on the page's clock;
not from when the harness starts looking for the widget) to the frame that paints the new state.
The page is polled about every 0.05 s: a cheap read of the cards, titles and legends, followed
by the next frame; the full check runs when that read changes, and a change counts as shown at
the frame after the poll that first read it (not at the end of the check, whose own page walks
and data copies are not the app's latency), so times are within ~0.07 s. Prints a Markdown
table: medians and maxima, with the load average before and after each kind.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FULL_SAMPLES = 8192  # the app's default sample count
sys.path.insert(0, str(REPO))

from tests.app.bokeh_page import (page_signature, painted_at, start_timeline,  # noqa: E402
                                  visible_plots)
from tests.app.test_matrix import _rates, check_tab, compare_on, facts  # noqa: E402
from tests.app.test_browser import card, show_tab  # noqa: E402


def serve(log_path: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SYNTHVIZ_EXPORT_ROOT": tempfile.mkdtemp(), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "panel", "serve", "app", "--address", "127.0.0.1", "--port",
         str(port), "--allow-websocket-origin", f"127.0.0.1:{port}"],
        cwd=REPO, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/app"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=300):
                return proc, url
        except OSError:
            time.sleep(1)
    proc.kill()
    raise RuntimeError("panel serve did not start")


def shows_new_model(page, tab: str, before: dict, want_base: bool) -> bool:
    """Every visible plot on `tab` agrees with the cards, and the cards show the change."""
    f = facts(page)
    if f == before["facts"] and not want_base and tab != "Magnitudes":
        return False  # the cards do not show the change yet
    plots = visible_plots(page)
    freq = {}
    if tab in ("Frequencies",):
        p = next((p for p in plots if p["title"].startswith("Firing")), None)
        freq = _rates(p, "feature", "rate") if p else {}
    if check_tab(tab, plots, f, want_base, freq, {}):
        return False
    if tab == "Magnitudes":  # a new std changes no card: the histogram's data must change
        return _magnitude_data(plots) != before["magnitude_data"]
    return True


def _magnitude_data(plots) -> str | None:
    p = next((p for p in plots if p["title"].startswith("Magnitudes")), None)
    return None if p is None else repr([sorted(d["sums"].items()) for d in p["data"]])


def snapshot(page) -> dict:
    return {"facts": facts(page), "base": compare_on(page),
            "magnitude_data": _magnitude_data(visible_plots(page))}


# the page's clock at the user's input (a key or a pointer press), kept from the first such event
# after `INPUT_RESET_JS`: the latency starts there, not where the harness starts finding the
# widget and focusing it
INPUT_RESET_JS = """
() => {
  if (!window.__svInput) {
    window.__svInput = {at: null};
    const seen = () => { if (window.__svInput.at === null) window.__svInput.at = Date.now() / 1000; };
    for (const t of ['keydown', 'pointerdown']) window.addEventListener(t, seen, true);
  }
  window.__svInput.at = null;
}
"""


def timed(page, tab: str, act, want_base: bool = False, timeout: float = 120.0
          ) -> tuple[float, float]:
    """(seconds until every visible plot shows the new model, seconds until they show it from
    the full sample count): the first look comes from fewer samples (the cards say how many).
    Both run from the user's input event to the frame that paints the new state, as the
    page's own timeline records it (`bokeh_page.start_timeline`): this harness reads the page
    late when the server's sampling starves it of CPU, the page's drawing does not wait for it."""
    show_tab(page, tab)
    page.wait_for_timeout(2500)  # the tab has drawn the current model, from its full count
    before = snapshot(page)
    was = start_timeline(page)
    page.evaluate(INPUT_RESET_JS)
    start = time.time()  # wall clock, as the page's Date.now() (the same machine)
    act()
    t0 = page.evaluate("() => window.__svInput.at") or start
    first = None
    checked, last_check = None, 0.0
    while time.time() - start < timeout:
        try:
            at, sig = page_signature(page, painted=True)
            # the full check when what is shown changed (or, as a safety net, every 0.5 s)
            if sig != checked or time.time() - last_check > 0.5:
                checked, last_check = sig, time.time()
                if shows_new_model(page, tab, before, want_base):
                    # painted by the frame after the signature was read, if nothing changed
                    # since; the check's own reading time (page walks, data copies) is not the
                    # app's latency
                    again, sig2 = page_signature(page, painted=True)
                    if sig2 != sig:
                        continue  # changed while checked: check again
                    # a state whose signature is new: when the page first painted it
                    first_paint = painted_at(page, sig) if sig != was else None
                    shown = (at if first_paint is None else min(at, first_paint)) - t0
                    first = first or shown
                    if facts(page)["samples"] == FULL_SAMPLES:
                        return first, shown
        except Exception:  # mid-update
            pass
        page.wait_for_timeout(50)
    raise RuntimeError(f"{tab}: the change never showed")


def key(page, widget: str, k: str) -> None:
    h = page.locator(f".sv-w-{widget} .noUi-handle").first
    h.focus()
    h.press(k)


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="time only the kinds of change whose name "
                    "contains this text (e.g. truncation; compare to base needs the changes "
                    "before it, since the base compared with itself shows nothing new)")
    args = ap.parse_args(argv)
    n = args.repeats
    log = Path(tempfile.mkdtemp()) / "serve.log"
    proc, url = serve(log)
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(120_000)
            page.goto(url)
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and (
                    "ready" not in page.locator(".sv-status").first.evaluate(
                        "el => (el.shadowRoot || el).textContent")
                    or card(page, "rho_mm") == "…"):
                page.wait_for_timeout(500)
            def pick(page, name):  # the one model picker: type the preset, Enter
                box = page.locator(".sv-w-model input").first
                box.fill(name)
                box.press("Enter")

            # v2 presets: the base's own dictionary (the seed's names are built on base-v1); each
            # changes the cards (the base after std-0.1 would not: the same rates), none cached
            presets = ["v2/rel-p-0.5", "v2/rel-p-0.25", "v2/rel-p-1.5", "v2/std-0.1",
                       "v2/rel-p-0.75", "v2/rel-p-1.25", "v2/std-0.5"]
            kinds = [
                ("relative p (L0 tab)", "L0", lambda i: key(page, "rel-p", "ArrowLeft"), False),
                ("constant std (Magnitudes tab)", "Magnitudes",
                 lambda i: (page.locator(".sv-w-std-mode button", has_text="constant").first
                            .click() if i == 0 else key(page, "std", "ArrowRight")), False),
                ("truncation (Superposition tab)", "Superposition",
                 lambda i: key(page, "num-features", "ArrowLeft"), False),
                ("compare to base on (L0 tab)", "L0",
                 lambda i: page.locator(".sv-w-compare-base button").first.click(), True),
                ("preset sharing the base's dictionary (Frequencies tab)", "Frequencies",
                 lambda i: pick(page, presets[i % len(presets)]), False),
            ]
            for name, tab, act, base in kinds:
                if args.only not in name:
                    continue
                load0 = os.getloadavg()[0]
                firsts, fulls = [], []
                for i in range(n):
                    first, full = timed(page, tab, lambda: act(i), want_base=base)
                    firsts.append(first)
                    fulls.append(full)
                    if base:  # back off, untimed
                        page.locator(".sv-w-compare-base button").first.click()
                        page.wait_for_timeout(2000)
                rows.append((name, statistics.median(firsts), max(firsts),
                             statistics.median(fulls), max(fulls), load0, os.getloadavg()[0]))
                print(f"{name}: first look median {rows[-1][1]:.2f} s (max {rows[-1][2]:.2f}), "
                      f"full count median {rows[-1][3]:.2f} s (max {rows[-1][4]:.2f})",
                      flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print(f"\n16k base, 8,192 samples per update, headless Chromium 1600x1000, {n} changes per "
          f"kind; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{os.cpu_count()} CPUs, no GPU.\n")
    print("| change (tab shown) | first look: median (s) | max (s) | full count: median (s) "
          "| max (s) | load |")
    print("|---|---|---|---|---|---|")
    for name, med, mx, fmed, fmx, l0, l1 in rows:
        print(f"| {name} | {med:.2f} | {mx:.2f} | {fmed:.2f} | {fmx:.2f} | {l0:.1f} -> {l1:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
