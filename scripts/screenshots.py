"""Retake the README's app screenshots in docs/ (headless Chromium, the served app).

    python scripts/screenshots.py            # all of them
    python scripts/screenshots.py overview   # one

Each shot opens a link (the URL carries the settings and the tab), waits until the status says
ready and the tab's plots are drawn, and saves docs/app-NAME.png at 1600x1000.

The "sae" shot evaluates an SAE in the SAE tab: the first SAE folder under SYNTHVIZ_SAE_ROOT, or
(unset) a BatchTopK SAE (4096 latents, k=25) trained on the base for the shot with
`synthviz.sae.training.train_toy_sae` (needs sae_lens; a few minutes on a CPU).
"""

from __future__ import annotations

import os
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
    "sae": ("?tab=6", 300),
}
SAE_VIEWPORT = {"width": 1600, "height": 1250}  # the cards, the recovery plot and the tree


def sae_root() -> None:
    """Point SYNTHVIZ_SAE_ROOT at a folder holding an SAE for the base (trained if unset)."""
    if os.environ.get("SYNTHVIZ_SAE_ROOT"):
        return
    import synthviz
    from synthviz.sae.training import train_toy_sae

    root = Path(tempfile.mkdtemp(prefix="synthviz-shot-saes-"))
    print("training an SAE on the base for the SAE tab's screenshot", flush=True)
    train_toy_sae(synthviz.load("base", device="cpu"), 4096, 25, training_samples=60_000,
                  out=root / "batchtopk-4096-k25")
    os.environ["SYNTHVIZ_SAE_ROOT"] = str(root)


def evaluate_sae(page, limit: float) -> None:
    """Press the SAE tab's Evaluate and wait for its cards and recovery plot."""
    page.get_by_role("button", name="Evaluate").first.click()
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if page.get_by_text("Best-latent f1 per feature").count() or page.evaluate(
                "() => [...Bokeh.documents].some(d => [...d.all_models].some("
                "m => m.title && m.title.text && m.title.text.startsWith('Best-latent')))"):
            return
        page.wait_for_timeout(1000)
    raise RuntimeError("the SAE evaluation did not finish in time")


def main(names: list[str]) -> int:
    from playwright.sync_api import sync_playwright
    names = names or list(SHOTS)
    if "sae" in names:
        sae_root()
    proc, url = serve(Path(tempfile.mkdtemp()) / "panel-serve.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--no-sandbox", "--disable-gpu"])
            for name in names:
                query, limit = SHOTS[name]
                page = browser.new_page(viewport=SAE_VIEWPORT if name == "sae" else
                                        {"width": 1600, "height": 1000})
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
                if name == "sae":
                    evaluate_sae(page, 900)
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
