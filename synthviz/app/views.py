"""The explorer page of a `Controller`: sidebar widgets, status, headline cards and the tabs
(plot tabs from `plot_tabs.TAB_VIEWS`, then `export_panel.ExportPanel`).

`Explorer(controller)` is one session's page. `create_app()` wraps it in a FastListTemplate for
`panel serve app`; in a notebook `Explorer.__panel__` gives the same components in a Row.

Threading: the controller's worker computes and sets `results` / `status` / `progress` from its
own thread. Everything that touches Panel objects is handed to the session's event loop (a
next-tick callback under that session's document): there the tab views (`plot_tabs.TAB_VIEWS`,
one `pn.viewable.Viewer` each) get the new `results` and update their figures in place.
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from functools import partial
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param

from synthviz.app.cards import CARD_CSS, CARDS, card_classes, card_html, card_values
from synthviz.app.controller import (CUSTOM, URL_PARAMS, Controller, defer_full_collections,
                                     preset_names)
from synthviz.app.export_panel import ExportPanel, export_check_or_none
from synthviz.app.model_text import describe_model, model_warnings, preset_note
from synthviz.app.plot_tabs import TAB_VIEWS
from synthviz.app.results import Results
from synthviz.app.session import PaintAck, SessionLoop
from synthviz.fidelity import ExportCheck

log = logging.getLogger(__name__)

MODEL_LABEL = "model: preset, folder or Hub id"  # fits the sidebar; the tooltip says more
MODEL_HELP = ("A preset name (v1 names are built on base-v1, v2/NAME on the v2 base), a local "
              "model folder, or a Hub id owner/name[:subfolder].")
SAMPLE_OPTIONS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]
# work shorter than this shows no progress bar: showing and hiding one costs the browser a
# relayout and its animation a share of the CPU that the server's sampling needs
PROGRESS_AFTER_S = 0.6
# Panel holds a change from the browser for 50 ms (`Syncable._debounce`) to merge bursts such as
# typing. These controls send one change per key, release or click (sliders are throttled) and
# the latest request wins, so the wait only delayed every update; the tabs do the same
BROWSER_CHANGE_DELAY_MS = 0
# the progress bar is drawn inside the status line, and only its HTML changes: a Panel widget
# shown and hidden made the browser lay out the whole page (and repaint every plot) each time.
# For the same reason the lines above the plots keep their height whatever they say (a status
# of one line, then two, resized the page twice per change)
STATUS_CSS = """
.sv-line { display: flex; align-items: center; gap: 12px; height: 44px; overflow: hidden; }
.sv-line p { margin: 0; max-height: 44px; overflow: hidden; }
.sv-bar { flex: 0 0 240px; height: 8px; border-radius: 4px; background: #e6e8eb;
          overflow: hidden; visibility: hidden; }
.sv-bar.sv-bar-on { visibility: visible; }
.sv-bar div { height: 100%; background: #0072b5; }
.sv-bar.sv-bar-busy div { width: 100%; opacity: 0.35; }  /* no animation: it costs CPU */
"""


def status_html(status: str, bar: bool, pct: int) -> str:
    """The status line: the text, and a bar (pct done, or pale while a step reports no
    progress of its own) when shown."""
    known = 0 < pct < 100
    cls = "sv-bar" + (" sv-bar-on" if bar else "") + (" sv-bar-busy" if bar and not known else "")
    width = f' style="width: {pct}%"' if known else ""
    return (f'<div class="sv-line"><p><b>status:</b> {html.escape(status)}</p>'
            f'<div class="{cls}"><div{width}></div></div></div>')

class Explorer(pn.viewable.Viewer):
    """One session's page: controls, status, cards, plot tabs and export."""

    controller = param.ClassSelector(class_=Controller)
    location = param.Parameter(default=None, doc="the served page's pn.state.location")

    def __init__(self, **params):
        if params.get("controller") is None:
            params["controller"] = Controller()
        super().__init__(**params)
        c = self.controller
        self.loop = SessionLoop()
        if self.loop.doc is not None:
            c.attach_page()  # served: the worker lets this page draw a first look
        self._seq_lock = threading.Lock()
        self._seq = self._applied_seq = 0
        self._status_queued = False  # one status update waits on the loop at a time
        self._busy_since: float | None = None
        self._shown_error = ""
        # served: the page says when it has painted a first look (see `PaintAck`)
        self.ack = PaintAck(self._painted)
        self._build_widgets()
        self._build_main()
        self.export = ExportPanel(controller=c, loop=self.loop)
        self.tabs.append(("Share & export", self.export))
        c.param.watch(self._on_results, ["results"])
        c.param.watch(self._on_status, ["status", "progress", "busy", "error"])
        c.param.watch(self._on_view_param, ["tree_root", "cooc_measure"])
        if c.results is not None:
            self._on_results(None)
        self._on_status()

    def _dispatch(self, fn) -> None:
        self.loop.dispatch(fn)

    # -------------------------------------------------------------- widgets
    def _build_widgets(self) -> None:
        p = self.controller.param
        W = pn.widgets
        slider = dict(throttled=True, sizing_mode="stretch_width")
        self.w = w = {
            # one model picker: a preset name, a model folder or a Hub id, typed or chosen
            "model": W.AutocompleteInput(
                label=MODEL_LABEL, description=MODEL_HELP, options=preset_names(), restrict=False, case_sensitive=False,
                search_strategy="starts_with", min_characters=1,
                value=self.controller.model_choice(),
                placeholder="a preset, a model folder or owner/name", sizing_mode="stretch_width"),
            "device": W.Select.from_param(p.device),
            # primary + outline: the active choice is filled, the other outlined
            "std_mode": W.RadioButtonGroup.from_param(p.std_mode, color="primary",
                                                      variant="outline"),
            "std": W.FloatSlider.from_param(p.std, **slider),
            "hidden_dim": W.IntSlider.from_param(p.hidden_dim, **slider),
            "rel_p": W.FloatSlider.from_param(p.rel_p, **slider),
            "num_features": W.IntSlider.from_param(p.num_features, **slider),
            "seed": W.IntInput.from_param(p.seed),
            "hierarchy_mode": W.RadioButtonGroup.from_param(p.hierarchy_mode, color="primary",
                                                            variant="outline"),
            "roots": W.IntInput.from_param(p.roots),
            "branching_random": W.Checkbox.from_param(p.branching_random),
            "branching_min": W.IntInput.from_param(p.branching_min),
            "branching_max": W.IntInput.from_param(p.branching_max),
            "depth": W.IntSlider.from_param(p.depth, **slider),
            "me_portion": W.FloatSlider.from_param(p.me_portion, **slider),
            "me_min_depth": W.IntInput.from_param(p.me_min_depth),
            "me_max_depth": W.IntInput.from_param(p.me_max_depth, label="ME max depth (12 = none)"),
            "compensate": W.Checkbox.from_param(p.compensate),
            "rescale": W.Checkbox.from_param(p.rescale),
            "use_target_l0": W.Checkbox.from_param(p.use_target_l0),
            "target_l0": W.FloatInput.from_param(p.target_l0),
            "target_l0_first_k": W.FloatInput.from_param(p.target_l0_first_k),
            "samples": W.DiscreteSlider.from_param(p.samples, options=SAMPLE_OPTIONS, **slider),
            "first_k": W.IntInput.from_param(p.first_k),
            "sample_seed": W.IntInput.from_param(p.sample_seed),
            "cooc_how": W.Select.from_param(p.cooc_how),
            "cooc_k": W.IntSlider.from_param(p.cooc_k, **slider),
            "cooc_root": W.IntInput.from_param(p.cooc_root),
            "cooc_ids": W.TextInput.from_param(p.cooc_ids),
            "cooc_measure": W.RadioButtonGroup.from_param(p.cooc_measure, width=300,
                                                          sizing_mode="fixed"),
            "tree_root": W.IntInput.from_param(p.tree_root, width=220,
                                               sizing_mode="fixed"),
            "compare_base": W.Toggle.from_param(p.compare_base, color="primary",
                                                variant="outline"),
        }
        for name, widget in w.items():
            widget.css_classes = [*widget.css_classes, f"sv-w-{name.replace('_', '-')}"]
            widget._debounce = BROWSER_CHANGE_DELAY_MS
        c = self.controller
        w["model"].param.watch(self._on_pick, ["value"])
        c.param.watch(lambda *_: self._dispatch(self._show_choice), ["preset", "source"])
        self._sample_options(c.samples)
        c.param.watch(lambda e: self._dispatch(partial(self._sample_options, e.new)), ["samples"])
        # widgets that only matter in one mode are disabled in the other
        w["std"].disabled = c.std_mode == "base"
        hier = [w[k] for k in ("roots", "branching_random", "branching_min", "branching_max",
                                "depth", "me_portion", "me_min_depth", "me_max_depth",
                                "compensate", "rescale")]
        # (disabled when, widgets, why): a disabled control says why in its label
        self._mode_links = [
            (lambda: c.std_mode == "base", [w["std"]], "choose 'constant' above to use it"),
            (lambda: c.hierarchy_mode == "base", hier, "choose hierarchy 'custom' to use it"),
            (lambda: c.hierarchy_mode == "custom" and not c.branching_random,
             [w["branching_max"]], "used with random branching only"),
            (lambda: not c.use_target_l0, [w["target_l0"], w["target_l0_first_k"]],
             "tick 'solve for target L0' to use it"),
            (lambda: c.use_target_l0, [w["rel_p"]], "off while solving for a target L0"),
        ]
        self._labels = {id(wd): wd.name for _, ws, _ in self._mode_links for wd in ws}
        c.param.watch(lambda *_: self._dispatch(self._sync_modes),
                      ["std_mode", "hierarchy_mode", "use_target_l0", "branching_random"])
        self._sync_modes()

        acc = dict(collapsed=True, sizing_mode="stretch_width", margin=(5, 0))
        self.sidebar = pn.Column(
            pn.pane.Markdown("**Model**", margin=(5, 10, 0, 10)), w["model"],
            pn.pane.Markdown("**Magnitude std**", margin=(5, 10, 0, 10)), w["std_mode"], w["std"],
            w["rel_p"], w["num_features"], w["hidden_dim"], w["seed"],
            pn.Card(w["hierarchy_mode"], w["roots"], w["branching_random"], w["branching_min"],
                    w["branching_max"], w["depth"], w["me_portion"], w["me_min_depth"],
                    w["me_max_depth"], w["compensate"], w["rescale"], title="Hierarchy", **acc),
            pn.Card(w["use_target_l0"], w["target_l0"], w["target_l0_first_k"],
                    title="L0 target", **acc),
            pn.Card(w["samples"], w["first_k"], w["sample_seed"], w["device"],
                    title="Sampling", collapsed=False, sizing_mode="stretch_width", margin=(5, 0)),
            pn.Card(w["cooc_how"], w["cooc_k"], w["cooc_root"], w["cooc_ids"],
                    title="Co-occurrence set", **acc),
            w["compare_base"],
            sizing_mode="stretch_width",
        )

    def _on_pick(self, event) -> None:
        if event.new != self.controller.model_choice():
            with pn.io.hold():  # a preset moves many sliders: one message to the page, not one each
                self.controller.choose_model(event.new or "")

    def _show_choice(self) -> None:
        """The picker shows the preset, or (once sliders differ from it) the source."""
        self.w["model"].value = self.controller.model_choice()

    def _sample_options(self, n: int) -> None:
        """A sample count from a link or the API that is not a slider stop becomes one."""
        w = self.w["samples"]
        if n not in w.options:
            w.options = sorted({*w.options, int(n)})
            w.value = n

    def _sync_modes(self) -> None:
        reasons: dict[int, str] = {}
        for disabled, widgets, why in self._mode_links:
            if disabled():
                for wd in widgets:
                    reasons.setdefault(id(wd), why)
        for _, widgets, _ in self._mode_links:
            for wd in widgets:
                why = reasons.get(id(wd))
                wd.disabled = why is not None
                label = self._labels[id(wd)]
                wd.name = f"{label} (off: {why})" if why else label

    # -------------------------------------------------------------- main area
    def _build_main(self) -> None:
        self.bar_shown = False  # whether the status line shows its progress bar
        self.status = pn.pane.HTML(status_html("starting", False, 0), css_classes=["sv-status"],
                                   stylesheets=[STATUS_CSS], margin=(0, 10),
                                   sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False,
                                   css_classes=["sv-error"], sizing_mode="stretch_width")
        self.model_line = pn.pane.Markdown("", css_classes=["sv-model"], margin=(0, 10),
                                           sizing_mode="stretch_width", height=48,
                                           stylesheets=[":host { overflow: hidden; } "
                                                        "p { margin: 2px 0; line-height: 21px; }"])
        self.warnings = pn.pane.Alert("", alert_type="warning", visible=False,
                                      css_classes=["sv-warnings"], sizing_mode="stretch_width")
        self.cards = {k: pn.pane.HTML("", stylesheets=[CARD_CSS], css_classes=card_classes(k))
                      for k in CARDS}
        self.card_row = pn.Row(*self.cards.values(), sizing_mode="stretch_width")
        w = self.w
        # one Viewer per tab, from the TAB_VIEWS registry; each follows `results` in place
        headers = {"Co-occurrence": [w["cooc_measure"]], "Hierarchy": [w["tree_root"]]}
        self.views: dict[str, Any] = {}
        for title, cls in TAB_VIEWS:
            kw = {"controller": self.controller} if "controller" in cls.param else {}
            if title in headers:
                kw["header"] = headers[title]
            self.views[title] = cls(**kw)
        self._sync_view_params()
        # dynamic: only the shown tab is in the page; each tab's child is its view's own
        # Column, which keeps its figures while hidden and is put back as it is when shown
        self.tabs = pn.Tabs(*self.views.items(), dynamic=True, sizing_mode="stretch_width",
                            css_classes=["sv-tabs"])
        self.tabs._debounce = BROWSER_CHANGE_DELAY_MS
        self.tabs.param.watch(lambda e: self._on_tab(), ["active"])
        self._on_tab()
        self.main = pn.Column(self.status,
                              self.model_line, self.alert, self.warnings, self.card_row,
                              self.tabs, *self.ack.widgets, sizing_mode="stretch_width")

    # -------------------------------------------------------------- updates
    def _on_results(self, event) -> None:
        res = self.controller.results
        if res is None:
            return
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        cards = card_values(res, res.settings["first_k"])  # in the worker thread when served
        words = describe_model(res.settings, self.controller._source_facts)
        preset = self.controller.preset
        if preset != CUSTOM:
            assumed = preset_note(preset)
            words = f"{words}. Preset {preset}" + (f": {assumed}" if assumed else "")
        warns = model_warnings(res.model)
        self._dispatch(partial(self._apply, res, cards, seq, words, warns))
        # after the plots are on their way: the check takes a new model 0.03 s (then it is
        # memoized on the model), and it shows on the export tab only
        self._dispatch(partial(self._apply_check, seq, export_check_or_none(res.model)))

    def _on_view_param(self, *events) -> None:
        self._dispatch(self._sync_view_params)

    def _sync_view_params(self) -> None:
        c = self.controller
        for view in self.views.values():
            if "measure" in view.param:
                view.measure = c.cooc_measure
            if "tree_root" in view.param and "results" in view.param:
                view.tree_root = c.tree_root

    def _on_tab(self) -> None:
        """Only the shown tab draws; a tab shown later draws the latest results then."""
        for i, view in enumerate(self.views.values()):
            if "active" in view.param:
                view.active = i == self.tabs.active

    def _apply(self, res: Results, cards: dict[str, tuple[str, str]], seq: int = 0,
               words: str = "", warns: list[str] | None = None) -> None:
        # callbacks queued while a session is still being created can run out of order
        # (Bokeh keeps them in a set until then): never let older results replace newer ones
        if seq and seq < self._applied_seq:
            return
        self._applied_seq = seq
        with pn.io.hold():
            self._write_url(res.settings)
            if words:
                self.model_line.object = f"**{html.escape(words)}**"
            self.warnings.object = "<br>".join(html.escape(f"model warning: {w}")
                                               for w in warns or [])
            self.warnings.visible = bool(warns)
            for view in self.views.values():
                if "results" in view.param:
                    view.results = res
            for name, (value, sub) in cards.items():
                self.cards[name].object = card_html(name, value, sub)
            if res.preview and self.loop.doc is not None:
                self.ack.expect(seq)
            self._apply_status(with_results=True)
        if res.preview and self.loop.doc is None:
            self.controller.page_drawn()  # no browser: drawn once applied

    def _apply_check(self, seq: int, check: ExportCheck | None) -> None:
        if seq == self._applied_seq:  # still the model shown
            self.export.show_check(check)

    def _painted(self, seq: int) -> None:
        if seq and seq == self._applied_seq:  # an older update's echo says nothing of this one
            self.controller.page_drawn()

    def _write_url(self, settings: dict[str, Any]) -> None:
        """The page's URL: the settings of the results shown (so never settings that failed),
        where they differ from the defaults, and the active tab."""
        loc = self.location
        if loc is None:
            return
        c = self.controller
        values = {**settings, "tree_root": c.tree_root, "cooc_measure": c.cooc_measure}
        query = {}
        for k in URL_PARAMS:
            v = values.get(k)
            if v is None or v == c.param[k].default:
                continue
            try:
                v = c.param[k].serialize(v)
            except Exception:
                pass
            query[k] = v if isinstance(v, str) else json.dumps(v)
        if self.tabs.active:
            query["tab"] = json.dumps(self.tabs.active)
        search = "?" + urlencode(query) if query else ""
        if loc.search != search:
            loc.search = search

    def _on_status(self, *events) -> None:
        with self._seq_lock:  # the queued update shows the latest values: one is enough
            if self._status_queued:
                return
            self._status_queued = True
        self._dispatch(self._apply_status)

    def _apply_status(self, with_results: bool = False) -> None:
        """Shows the controller's current status when it runs (not the one that queued it), so
        callbacks run out of order still end at the latest (see `_apply`). Work that has not
        lasted `PROGRESS_AFTER_S` changes the line only with new results (`with_results`, the
        same update), an error or its end; then the bar appears. A cheap change's first look
        arrives within that time, and each stage shown before it cost the browser a repaint
        while the server computed: about 0.1 s later to the first look."""
        with self._seq_lock:
            self._status_queued = False
        c = self.controller
        status, busy, pct, err = c.status, c.busy, c.progress, c.error
        now = time.monotonic()
        if not busy:
            self._busy_since = None
        else:
            if self._busy_since is None:
                self._busy_since = now
                self.loop.later(PROGRESS_AFTER_S, self._on_status)  # still busy then: the bar
            if now - self._busy_since < PROGRESS_AFTER_S - 0.02 and err == self._shown_error \
                    and not with_results:
                return  # shown once the work has lasted PROGRESS_AFTER_S (or has ended)
        self._shown_error = err
        self.bar_shown = busy and now - self._busy_since >= PROGRESS_AFTER_S - 0.02
        self.status.object = status_html(status, self.bar_shown, pct if busy else 0)
        self.alert.object = html.escape(err)
        self.alert.visible = bool(err)

    # -------------------------------------------------------------- layout
    def __panel__(self):
        return pn.Row(pn.Column(self.sidebar, width=320), self.main, sizing_mode="stretch_width")


def create_app(controller: Controller | None = None) -> pn.template.FastListTemplate:
    """The served page: the URL carries the settings, the sidebar the controls."""
    c = controller or Controller(start=False)
    served = bool(pn.state.curdoc and pn.state.curdoc.session_context)
    if served:
        defer_full_collections()  # a server's collections wait for a pause between updates
    loc = pn.state.location if served else None
    if loc is not None:
        explorer_error: list[str] = []
        # read the link's settings once; the URL is then written from settings that worked
        loc.sync(c, {p: p for p in URL_PARAMS}, on_error=lambda bad: explorer_error.append(
            f"ignored invalid URL settings: {sorted(bad)}"))
        query = dict(loc.query_params)
        loc.unsync(c)
        loc.search = "?" + urlencode(query) if query else ""
        if explorer_error:
            c.error = explorer_error[0]
    explorer = Explorer(controller=c)
    if loc is not None:
        loc.sync(explorer.tabs, {"active": "tab"})  # a link reopens the tab
        explorer.location = loc
    c.request()
    if served:
        pn.state.on_session_destroyed(lambda ctx: c.close())
    _offline_fast()
    template = pn.template.FastListTemplate(
        title="synthviz: SynthSAEBench-16k explorer", sidebar=[explorer.sidebar],
        main=[explorer.main], sidebar_width=330, accent="#1f77b4", theme_toggle=False,
        font_url="")  # no Google font: the page needs nothing from outside the machine
    template.explorer = explorer  # tests and notebooks reach the components through it
    return template


def _offline_fast() -> None:
    """Panel's Fast design lists a Google web font among its resources; this process serves
    pages that must need nothing from outside the machine, so the design goes without it."""
    fast = pn.theme.Fast
    if fast._resources.get("font"):
        fast._resources = {**fast._resources, "font": {}}
