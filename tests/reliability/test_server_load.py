"""Issue 8.5: load and soak of one `panel serve app` server (slow; headless Chromium).

- 5 concurrent sessions each reach a ready page with sane numbers;
- server RSS grows by < 300 MB over the first session;
- 200 slider changes in one session, after a warm-up until RSS levels off (100-300 changes),
  end with the UI responsive and consistent, and RSS flat (< 50 MB growth over the 200);
- the status line of sessions opened together ends at "ready" (page updates queued while Bokeh
  creates a session used to run out of order, leaving an intermediate status);
- closed sessions are cleaned up: Bokeh's own session count (its stats log) drops to 0 and the
  per-session worker threads exit.

The figures are printed (`-s`) and written to test-artifacts/server-memory.json; the measured
numbers are recorded in benchmarks/RESULTS.md ("Server memory (sessions)").
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")
pytest.importorskip("pytest_playwright")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
READY_S = 240  # a cold machine builds the 16k base (about a minute) on first use
MB = 2**20
FIGURES: dict = {}


class Server:
    def __init__(self, tmp: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log_path = tmp / "panel-serve.log"
        self.log = open(self.log_path, "w")
        # debug logging makes Bokeh report its session count every second; closed sessions
        # are looked for every second (the 15 s lifetime stays: a page that is slow to open
        # its websocket must not lose its session)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", "app", "--address", "127.0.0.1",
             "--port", str(self.port), "--allow-websocket-origin", f"127.0.0.1:{self.port}",
             "--log-level", "debug", "--stats-log-frequency", "1000",
             "--check-unused-sessions", "1000"],
            cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "SYNTHVIZ_EXPORT_ROOT": str(tmp / "exports"),
                 "PYTHONUNBUFFERED": "1"})
        self.url = f"http://127.0.0.1:{self.port}/app"
        self.ps = psutil.Process(self.proc.pid)

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=60) as r:  # a loaded machine is slow
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"panel serve did not start; see {self.log_path}")
            time.sleep(0.5)

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def sessions(self) -> int | None:
        """The latest session count Bokeh logged."""
        found = re.findall(r"/app has (\d+) sessions", self.log_path.read_text(errors="replace"))
        return int(found[-1]) if found else None

    def wait_sessions(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.sessions() != n:
            assert time.monotonic() < deadline, f"server reports {self.sessions()} sessions, not {n}"
            time.sleep(0.5)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("serve"))
    try:
        srv.wait_up()
        # the first GET creates (and soon drops) a session; let the server settle first
        srv.wait_sessions(0)
        yield srv
    finally:
        srv.stop()
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "server-memory.json").write_text(json.dumps(FIGURES, indent=2))
        print("\nserver figures:", json.dumps(FIGURES, indent=2))


# ---------------------------------------------------------------------------- page helpers

def open_page(browser, url: str):
    page = browser.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.set_default_timeout(60_000)
    page.goto(url)
    return page


def text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text(timeout=5_000)


def card(page, name: str) -> str:
    return text(page, f".sv-card-{name} .sv-value")


def as_float(s: str) -> float:
    return float(s.replace(",", ""))


def wait_ready(page, timeout_s: float = READY_S, also=lambda page: True,
               status: bool = True) -> None:
    """Until the L0 and rho_mm cards hold numbers, `also` holds, and (with `status`) the status
    line says ready."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = text(page, ".sv-status p")
            if ((not status or "ready" in last) and card(page, "l0") != "…"
                    and card(page, "rho_mm") != "…" and also(page)):
                return
        except Exception as exc:  # not rendered yet
            last = f"{last} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        page.wait_for_timeout(250)
    raise AssertionError(f"page never became ready; last status {last!r}")


def url_value(page, name: str) -> float | None:
    m = re.search(rf"[?&]{name}=([0-9.eE+-]+)", page.url)
    return float(m.group(1)) if m else None


def url_is(page, name: str, value: float | None) -> bool:
    """The page's link carries `name`=value (None: absent, i.e. the default)."""
    got = url_value(page, name)
    return got is None if value is None else got is not None and abs(got - value) < 1e-6


def check_base_page(page) -> None:
    assert as_float(card(page, "n")) == 16384 and as_float(card(page, "d")) == 768
    assert 20 < as_float(card(page, "l0")) < 50
    assert as_float(card(page, "me-violations")) == 0
    assert page.errors == []


# ---------------------------------------------------------------------------- the tests

def test_five_concurrent_sessions_and_first_session_memory(server, browser):
    rss0 = server.rss()
    first = open_page(browser, server.url)
    wait_ready(first)
    time.sleep(2)  # let the last updates of the page land
    rss1 = server.rss()
    FIGURES["rss_before_first_session_mib"] = round(rss0 / MB, 1)
    FIGURES["rss_after_first_session_mib"] = round(rss1 / MB, 1)
    FIGURES["first_session_growth_mib"] = round((rss1 - rss0) / MB, 1)
    check_base_page(first)
    assert rss1 - rss0 < 300 * MB, FIGURES

    others = [open_page(browser, server.url) for _ in range(4)]  # opened at once
    t0 = time.monotonic()
    for p in others:
        wait_ready(p, 240, status=False)
    FIGURES["four_more_sessions_ready_s"] = round(time.monotonic() - t0, 1)
    server.wait_sessions(5)
    time.sleep(1)
    FIGURES["rss_with_5_sessions_mib"] = round(server.rss() / MB, 1)
    FIGURES["growth_per_extra_session_mib"] = round((server.rss() - rss1) / 4 / MB, 1)
    # sessions share the loaded model: four more sessions add less than 300 MB in all
    assert server.rss() - rss1 < 300 * MB, FIGURES
    stale = [text(p, ".sv-status p") for p in others if "ready" not in text(p, ".sv-status p")]
    FIGURES["sessions_with_stale_initial_status"] = len(stale)
    # every session works: the base's numbers, then its own answer to its own slider
    for i, p in enumerate((first, *others)):
        check_base_page(p)
        l0 = as_float(card(p, "l0"))
        handle = p.locator(".sv-w-rel-p .noUi-handle").first
        handle.focus()
        press(handle, "ArrowLeft", 2 * i + 2)  # rel_p 0.9, 0.8, ... 0.5: a different answer each
        rel_p = round(1.0 - 0.05 * (2 * i + 2), 2)
        wait_ready(p, 120, also=lambda q: url_is(q, "rel_p", rel_p)
                   and as_float(card(q, "l0")) < l0 * (rel_p + 0.05))
        assert abs(as_float(card(p, "l0")) / l0 - rel_p) < 0.06, (i, rel_p, card(p, "l0"), l0)
        assert p.errors == []
    for p in (first, *others):
        p.close()
    server.wait_sessions(0)


def test_initial_status_reaches_ready_in_every_concurrent_session(server, browser):
    pages = [open_page(browser, server.url) for _ in range(4)]
    try:
        for p in pages:
            wait_ready(p, 240, status=False)
        time.sleep(3)
        statuses = [text(p, ".sv-status p") for p in pages]
        assert all("ready" in s for s in statuses), statuses
    finally:
        for p in pages:
            p.close()
        server.wait_sessions(0)


def press(handle, key: str, times: int) -> None:
    for _ in range(times):
        handle.press(key)
        handle.page.wait_for_timeout(30)  # a person moving a slider, not a burst of one event


def test_soak_200_slider_changes(server, browser):
    page = open_page(browser, server.url)
    wait_ready(page)
    l0_at_1 = as_float(card(page, "l0"))
    handle = page.locator(".sv-w-rel-p .noUi-handle").first
    handle.focus()
    t0 = time.monotonic()

    def cycle() -> int:  # 20 changes, rel_p 1.0 -> 1.5 -> 1.0; the server's RSS afterwards
        press(handle, "ArrowRight", 10)
        press(handle, "ArrowLeft", 10)
        wait_ready(page, 120, also=lambda p: url_is(p, "rel_p", None) or url_is(p, "rel_p", 1.0))
        time.sleep(1)
        return server.rss()

    try:
        # warm-up: the caches (6 derived models, 24 sets of statistics) and the worker threads'
        # allocator pools fill over the first 100-250 changes, then RSS levels off. At least
        # 100 changes, until three readings in a row lie within 10 MB (at most 300: a leak
        # never levels off and then shows in the measured changes)
        warm = [cycle() for _ in range(5)]
        while len(warm) < 15 and max(warm[-3:]) - min(warm[-3:]) >= 10 * MB:
            warm.append(cycle())
        rss = [warm[-1]] + [cycle() for _ in range(10)]  # the 200 measured changes
        FIGURES["soak_changes"] = f"{20 * len(warm)} warm-up + 200 measured"
        FIGURES["soak_seconds"] = round(time.monotonic() - t0, 1)
        FIGURES["soak_rss_during_warmup_mib"] = [round(x / MB, 1) for x in warm]
        FIGURES["soak_rss_every_20_changes_mib"] = [round(x / MB, 1) for x in rss[1:]]
        FIGURES["soak_growth_after_warmup_mib"] = round((rss[-1] - rss[0]) / MB, 1)
        FIGURES["soak_max_growth_after_warmup_mib"] = round((max(rss) - rss[0]) / MB, 1)
        assert rss[-1] - rss[0] < 50 * MB, FIGURES
        # back where it started, the page shows the same L0 (within sampling noise)
        assert abs(as_float(card(page, "l0")) - l0_at_1) < 0.05 * l0_at_1
        # still responsive: one more change updates the page within seconds
        t1 = time.monotonic()
        press(handle, "ArrowLeft", 10)  # rel_p 0.5: L0 about halves
        wait_ready(page, 120, also=lambda p: url_is(p, "rel_p", 0.5)
                   and as_float(card(p, "l0")) < 0.7 * l0_at_1)
        FIGURES["response_after_soak_s"] = round(time.monotonic() - t1, 1)
        assert 0.4 < as_float(card(page, "l0")) / l0_at_1 < 0.6
        assert page.errors == []
    finally:  # a failure here must not leave a session open for the tests after it
        page.close()
    server.wait_sessions(0)


def test_sessions_clean_up_when_closed(server, browser):
    server.wait_sessions(0)
    threads0 = server.ps.num_threads()
    pages = [open_page(browser, server.url) for _ in range(3)]
    for p in pages:
        wait_ready(p, 240, status=False)
    server.wait_sessions(3)
    busy_threads = server.ps.num_threads()
    for p in pages:
        p.close()
    server.wait_sessions(0)  # Bokeh destroyed them, which runs on_session_destroyed
    deadline = time.monotonic() + 30
    while server.ps.num_threads() > threads0 and time.monotonic() < deadline:
        time.sleep(0.5)  # each session's worker thread ends once its controller is closed
    FIGURES["threads_idle_busy_after_close"] = [threads0, busy_threads, server.ps.num_threads()]
    assert server.ps.num_threads() <= threads0, FIGURES
    # and the server still serves a fresh session
    page = open_page(browser, server.url)
    wait_ready(page)
    check_base_page(page)
    page.close()
