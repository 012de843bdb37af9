"""What the page's Bokeh figures show, read in the browser: for each figure reachable from the
page's root views, whether it is on screen, its title, legend labels, data columns (the feature
and rate columns in full, the sums of numeric ones) and, on request, how many pixels of its
canvas are painted in a clear colour. Used by the browser tests and benchmarks/app_latency.py."""

from __future__ import annotations

# JavaScript: `views`, every Bokeh view reachable from the page's roots, parents first
_ALL_VIEWS = """
  const views = [], seen = new Set();
  const walk = (v) => {
    if (!v || seen.has(v)) return; seen.add(v); views.push(v);
    let kids = [];
    try { kids = Array.from(v.child_views ?? []); } catch (e) {}
    for (const c of kids) walk(c);
  };
  for (const r of Object.values(Bokeh.index)) walk(r);
  const isFigure = (m) => m && (m.type === 'Figure' || m.type === 'Plot');
"""

PLOTS_JS = """
(paint) => {
  const FULL = new Set(['feature', 'index', 'rate', 'feature_i', 'feature_j', 'rate_i']);
  const out = [];""" + _ALL_VIEWS + """
  for (const v of views) {
    const m = v.model;
    if (isFigure(m)) {
      const el = v.el;
      const r = el ? el.getBoundingClientRect() : null;
      const visible = !!el && el.isConnected && el.checkVisibility() && r.width > 0 && r.height > 0;
      const legends = [];
      for (const a of [...m.center, ...m.right, ...m.left, ...m.above, ...m.below])
        if (a.type === 'Legend') for (const it of a.items)
          if (it.visible !== false && it.label) legends.push(String(it.label.value ?? ''));
      const data = [];
      for (const g of m.renderers) {
        if (!g.visible) continue;
        const src = g.data_source ?? (g.node_renderer && g.node_renderer.data_source);
        if (!src || !src.data) continue;
        const cols = {}, sums = {};
        let n = 0;
        for (const [k, val] of Object.entries(src.data)) {
          const arr = Array.from(val);
          n = Math.max(n, arr.length);
          if (FULL.has(k)) cols[k] = arr;
          if (arr.length && typeof arr[0] === 'number')
            sums[k] = arr.reduce((s, x) => s + (Number.isFinite(x) ? x : 0), 0);
        }
        data.push({cols, sums, n, names: Object.keys(src.data)});
      }
      let coloured = null;  // with paint: pixels of a clear colour on the figure's canvas
      if (paint && visible) {
        try {
          const c = v.canvas_view.primary.canvas;
          const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          coloured = 0;
          for (let i = 0; i < px.length; i += 4) {
            const hi = Math.max(px[i], px[i + 1], px[i + 2]);
            const lo = Math.min(px[i], px[i + 1], px[i + 2]);
            if (px[i + 3] > 0 && hi - lo > 60) coloured++;
          }
        } catch (e) { coloured = -2; }
      }
      out.push({id: m.id, visible, title: m.title ? (m.title.text || '') : '', legends, data,
                coloured});
    }
  }
  return out;
}
"""

# What the page shows, cheaply: the cards' HTML and every figure's title and legend, read from
# the Bokeh models (no DOM queries, no data copies, no layout): cheap enough to poll every 50 ms
# without slowing the drawing it watches.
_SIGNATURE_BODY = """
  const out = [];""" + _ALL_VIEWS + """
  for (const v of views) {
    const m = v.model;
    if (isFigure(m)) {
      const labels = [];
      for (const a of m.center) if (a.type === 'Legend')
        for (const it of a.items) labels.push(String(it.label && it.label.value));
      out.push((m.title ? m.title.text : '') + ' | ' + labels.join(' ; '));
    } else if (m && m.css_classes && m.css_classes.some((c) => c.startsWith('sv-card'))) {
      out.push(m.text);
    }
  }
  return out.join('\\n');
"""

SIGNATURE_JS = """
async (painted) => {
  const sig = (() => {""" + _SIGNATURE_BODY + """})();
  // painted: the time after the next frame, i.e. once what was read has been painted
  if (painted) await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return [Date.now() / 1000, sig];
}
"""

# The page keeps a timeline of what it painted: after each batch of document changes, once the
# next frame has painted them, the time and the signature. A harness that reads the page late
# (its own process starved of CPU) still learns when the page first showed a state.
TIMELINE_JS = """
() => {
  const sig = () => {""" + _SIGNATURE_BODY + """};
  if (!window.__svTimeline) {
    let pending = false;
    const note = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => setTimeout(() => {
        pending = false;
        window.__svTimeline.push([Date.now() / 1000, sig()]);
      }, 0));
    };
    for (const d of Bokeh.documents) d.on_change(note);
  }
  window.__svTimeline = [[Date.now() / 1000, sig()]];
}
"""


def start_timeline(page) -> str:
    """From now on the page notes when it painted each new state (see `painted_at`); returns
    the signature of the state shown now."""
    page.evaluate(TIMELINE_JS)
    return page.evaluate("() => window.__svTimeline[0][1]")


def painted_at(page, sig: str) -> float | None:
    """The page's clock when it first painted a new state with signature `sig` (after
    `start_timeline`), or None."""
    return page.evaluate("(s) => { const e = window.__svTimeline.slice(1).find("
                         "(x) => x[1] === s); return e ? e[0] : null; }", sig)


def page_plots(page, paint: bool = False) -> list[dict]:
    """Every figure on the page (`visible` says whether it is on screen)."""
    return page.evaluate(PLOTS_JS, paint)


def visible_plots(page, paint: bool = False) -> list[dict]:
    return [p for p in page_plots(page, paint) if p["visible"]]


def page_signature(page, painted: bool = False) -> tuple[float, str]:
    """(the page's clock in seconds, a text that changes when the cards, a title or a legend
    does); painted: the clock after the next frame, which paints what was read."""
    at, text = page.evaluate(SIGNATURE_JS, painted)
    return at, text
