"""The SAE tab in headless Chromium: a toy SAE folder under the allowed root is evaluated from the
page, and the cards and the recovery plot show the numbers `compare_models` computes for the same
SAE, model, samples and seed (read from the page's Bokeh models: what the browser draws). A corrupt
SAE folder gives a one-line message, and the page then still evaluates the good one."""

from __future__ import annotations

import html
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from synthviz.sae import compare_models, load_sae
from tests import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
REPO = Path(__file__).resolve().parents[2]
SAMPLES, SEED = 20_000, 0  # the tab's defaults
RECOVERY = "Best-latent f1 per feature"

# the text a Panel component shows (its shadow root holds style elements too)
VISIBLE_TEXT_JS = """
el => Array.from((el.shadowRoot || el).children)
  .filter(c => !['STYLE', 'LINK'].includes(c.tagName)).map(c => c.innerText).join('')
"""
MODELS_JS = """
() => {
  const out = {texts: [], plots: []};
  for (const doc of window.Bokeh.documents) {
    for (const m of doc.all_models) {
      const t = String(m.type);
      if (typeof m.text === 'string' && (t.endsWith('HTML') || t.endsWith('Markdown')))
        out.texts.push(m.text);
      if ((t === 'Figure' || t === 'Plot') && m.title && m.title.text) {
        const legend = [], sources = [];
        for (const r of m.renderers) {
          if (r.data_source) {
            const d = {};
            for (const [k, v] of Object.entries(r.data_source.data)) d[k] = Array.from(v);
            sources.push(d);
          }
        }
        for (const l of [...m.center, ...m.right, ...m.below])
          if (l.type === 'Legend') for (const it of l.items)
            legend.push(it.label ? String(it.label.value ?? '') : '');
        out.plots.push({title: m.title.text, legend: legend, sources: sources});
      }
    }
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def sae_page(sae_world, tmp_path_factory):
    """(url, model folder, good SAE folder) with the page served; the root holds a corrupt SAE
    folder (sorted first, so the page starts on it) and the good one."""
    _, model, sae_dir = sae_world
    tmp = tmp_path_factory.mktemp("sae_tab")
    model_dir = model.save(tmp / "model")
    root = tmp / "saes"
    shutil.copytree(sae_dir, root / "good")
    (root / "corrupt").mkdir(parents=True)
    shutil.copy(Path(sae_dir) / "cfg.json", root / "corrupt" / "cfg.json")
    (root / "corrupt" / "sae_weights.safetensors").write_bytes(b"\x00not safetensors" * 64)
    url, proc = serving.start("tests/sae/sae_tab_page.py", "sae_tab_page", tmp / "serve.log",
                              args=(str(model_dir), str(root)), timeout=240)
    yield url, model_dir, root / "good"
    serving.stop(proc)


def _cards(texts: list[str]) -> dict[str, str]:
    cards = {}
    for t in texts:  # Panel's Markdown pane sends its HTML escaped
        m = re.search(r"<small>(.*?)</small><br\s*/?><b[^>]*>(.*?)</b>", html.unescape(t))
        if m:
            cards[m.group(1)] = m.group(2)
    return cards


def _wait(page, ok, what: str, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = page.evaluate(MODELS_JS)
        if ok(got):
            return got
        page.wait_for_timeout(300)
    raise AssertionError(f"the page never showed {what}; plot titles "
                         f"{[p['title'] for p in got['plots']]}")


def test_sae_tab_shows_the_evaluated_numbers_and_survives_a_corrupt_folder(sae_page, page):
    url, model_dir, good = sae_page
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(60_000)
    page.goto(url)
    select = page.locator("select").first
    select.wait_for()
    # the corrupt folder: one line naming the problem, no results
    assert select.input_value() == "corrupt"
    page.get_by_role("button", name="Evaluate").click()
    alert = page.locator(".alert-danger").first
    alert.wait_for(state="visible")
    msg = ""
    for _ in range(300):
        msg = alert.evaluate(VISIBLE_TEXT_JS).strip()
        if msg:
            break
        page.wait_for_timeout(200)
    assert "\n" not in msg and "corrupt" in msg and "safetensors" in msg.lower(), msg
    assert "Traceback" not in msg
    assert _cards(page.evaluate(MODELS_JS)["texts"]) == {}
    # the page is still usable: the good folder evaluates
    select.select_option("good")
    page.get_by_role("button", name="Evaluate").click()
    shown = _wait(page, lambda g: "MCC" in _cards(g["texts"]) and any(
        p["title"].startswith(RECOVERY) for p in g["plots"]), "the cards and recovery plot")
    from synthviz.io import load_folder
    model = load_folder(model_dir, device="cpu")
    cur = compare_models(load_sae(good), {"current": model}, SAMPLES, seed=SEED)["current"]
    cards = _cards(shown["texts"])
    c = cur.classification
    assert cards["MCC"] == f"{cur.mcc:.3f}"
    assert cards["F1 (mean over latents)"] == f"{c['f1_score']:.3f}"
    assert cards["recall / precision"] == f"{c['recall']:.2f} / {c['precision']:.2f}"
    assert cards["explained variance"] == f"{cur.explained_variance:.3f}"
    assert cards["L0 SAE / true"] == f"{cur.sae_l0:.1f} / {cur.true_l0:.1f}"
    assert cards["dead latents"] == str(cur.dead_latents)
    assert cards["split features"] == str(cur.summary["splitting"]["split_features"])
    assert not page.locator(".alert-danger").first.is_visible()  # the old message is gone
    # the recovery plot: one point per feature seen, at its best latent's F1
    rate = np.asarray(cur.features["rate"])
    seen = rate > 0
    rec = [p for p in shown["plots"] if p["title"].startswith(RECOVERY)]
    assert len(rec) == 1
    assert rec[0]["title"].endswith(f"({int(seen.sum())} features seen)")
    assert "this model" in rec[0]["legend"]
    pts = [s for s in rec[0]["sources"] if "f1" in s and "log10_rate" in s]
    assert len(pts) == 1
    assert np.allclose(np.sort(pts[0]["f1"]), np.sort(np.asarray(cur.features["f1"])[seen]))
    assert np.allclose(np.sort(pts[0]["log10_rate"]), np.sort(np.log10(rate[seen])))
    assert errors == []
