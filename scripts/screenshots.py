"""Retake the README's app screenshots in docs/ (headless Chromium, the served app).

    python scripts/screenshots.py            # all of them
    python scripts/screenshots.py overview   # one

Each shot opens a link (the URL carries the settings and the tab), waits until the status says
ready and the tab's plots are drawn, and saves docs/app-NAME.png at 1600x1000.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.app_latency import serve  # noqa: E402  (one way to serve the app for Chromium)
SHOTS = {  # name: (query, seconds the page may need)
    "overview": ("", 600),
    "compare-rel-p": ("?rel_p=0.5&compare_base=true", 300),
    "superposition-d512": ("?hidden_dim=512&compare_base=true&tab=4", 900),
    "hierarchy": ("?tab=3", 300),
    "cooccurrence": ("?tab=2", 300),
    "frequencies": ("?tab=1", 300),
}


def main(names: list[str]) -> int:
    from playwright.sync_api import sync_playwright
    proc, url = serve(Path(tempfile.mkdtemp()) / "panel-serve.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu"])
            for name in names or list(SHOTS):
                query, limit = SHOTS[name]
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.goto(url + query)
                deadline = time.monotonic() + limit
                while time.monotonic() < deadline:
                    try:
                        status = page.locator(".sv-status").first.evaluate(
                            "el => (el.shadowRoot || el).textContent", timeout=2000)
                        rho = page.locator(".sv-card-rho_mm .sv-value").first.text_content(
                            timeout=2000)
                        if "ready" in (status or "") and "…" not in (rho or "…"):
                            break
                    except Exception:  # not rendered yet
                        pass
                    page.wait_for_timeout(500)
                page.wait_for_timeout(3000)  # the canvas paints
                out = REPO / "docs" / f"app-{name}.png"
                page.screenshot(path=str(out))
                print("wrote", out.relative_to(REPO), flush=True)
                page.close()
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
