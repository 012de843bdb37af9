"""Views of a `Controller`: sidebar widgets, headline cards, plot tabs, and the export panel.

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
import os
import threading
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import panel as pn
import param
from panel.io.state import set_curdoc

from synthviz.app.controller import URL_PARAMS, Controller, Results
from synthviz.app.model_text import describe_model, model_warnings, preset_note
from synthviz.app.plot_tabs import TAB_VIEWS
from synthviz.errors import SynthvizError
from synthviz.fidelity import ExportCheck, export_check

log = logging.getLogger(__name__)

SAMPLE_OPTIONS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]

CARD_CSS = """
:host { flex: 1 1 0; min-width: 120px; }
.sv-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 6px 12px; background: #fafbfc; }
.sv-card .sv-label { font-size: 12px; color: #57606a; text-transform: none; }
.sv-card .sv-value { font-size: 22px; font-weight: 600; color: #1f2328; }
.sv-card .sv-sub { font-size: 11px; color: #57606a; }
"""


def export_root() -> Path:
    return Path(os.environ.get("SYNTHVIZ_EXPORT_ROOT", "./exports")).expanduser()


def _fmt(v: Any, spec: str) -> str:
    if v is None:
        return "…"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _export_check(model) -> ExportCheck | None:
    """Whether sae_lens samples an export of `model` alike; None when the check itself failed."""
    try:
        return export_check(model)
    except Exception:  # the page still shows the model; the export reports its own error
        log.exception("export check failed")
        return None


def card_values(res: Results | None, first_k: int) -> dict[str, tuple[str, str]]:
    """(value, subtitle) per headline card."""
    if res is None:
        return {k: ("…", "") for k in ("N", "D", "L0", "first-K L0", "rho_mm", "ME violations",
                                       "samples/s")}
    c = res.cards
    exp = res.expected_l0
    base = res.base_stats
    bsup = res.base_superposition
    sub_l0 = f"expected {exp[0]:.2f}" if exp else ""
    sub_k = f"K={first_k}" + (f", expected {exp[1]:.2f}" if exp else "")
    if base is not None:
        sub_l0 += f" · base {base.l0.mean:.2f}"
        sub_k += f" · base {base.l0.mean_first_k:.2f}"
    return {
        "N": (f"{c['N']:,}", ""),
        "D": (f"{c['D']:,}", ""),
        "L0": (_fmt(c["L0"], ".2f"), sub_l0),
        "first-K L0": (_fmt(c["first-K L0"], ".2f"), sub_k),
        "rho_mm": (_fmt(c["rho_mm"], ".4f"),
                   "computing…" if c["rho_mm"] is None else
                   (f"base {bsup.rho_mm:.4f}" if bsup is not None else "mean max |cos|")),
        "ME violations": (f"{c['ME violations']:,}", f"orphans {res.stats.orphan_children:,}"),
        "samples/s": (f"{c['samples/s']:,.0f}", f"{res.stats.l0.samples:,} samples with stats"),
    }


class Explorer(pn.viewable.Viewer):
    """One session's page: controls, status, cards, plot tabs and export."""

    controller = param.ClassSelector(class_=Controller)
    location = param.Parameter(default=None, doc="the served page's pn.state.location")

    def __init__(self, **params):
        if params.get("controller") is None:
            params["controller"] = Controller()
        super().__init__(**params)
        c = self.controller
        self._doc = pn.state.curdoc if (pn.state.curdoc and pn.state.curdoc.session_context) \
            else None
        self._loop_thread = threading.get_ident()
        self._seq_lock = threading.Lock()
        self._seq = self._applied_seq = 0
        self._build_widgets()
        self._build_main()
        self._build_export()
        c.param.watch(self._on_results, ["results"])
        c.param.watch(self._on_status, ["status", "progress", "busy", "error"])
        c.param.watch(self._on_view_param, ["tree_root", "cooc_measure"])
        if c.results is not None:
            self._on_results(None)
        self._on_status()

    # -------------------------------------------------------------- threading
    def _dispatch(self, fn) -> None:
        """Run `fn` where it may touch Panel objects: directly on the session's own thread (or
        with no server), else as a next-tick callback under the document lock. Next-tick
        callbacks run in order, so a later status never lands before an earlier one."""
        doc = self._doc
        if doc is None or threading.get_ident() == self._loop_thread:
            fn()
            return
        if not doc.session_context:
            return  # the browser session has closed

        def cb():
            with set_curdoc(doc):
                try:
                    fn()
                except Exception:  # a failed redraw is logged; the page keeps the last plots
                    log.exception("page update failed")
        try:
            doc.add_next_tick_callback(cb)
        except Exception as exc:  # the session is gone
            log.debug("page update dropped: %s", exc)

    # -------------------------------------------------------------- widgets
    def _build_widgets(self) -> None:
        p = self.controller.param
        W = pn.widgets
        slider = dict(throttled=True, sizing_mode="stretch_width")
        self.w = w = {
            "source": W.TextInput.from_param(
                p.source, name="…or load a model folder or Hub id (owner/name)"),
            "preset": W.Select.from_param(p.preset, name="model (preset; 'custom' once "
                                          "sliders differ)"),
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
        c = self.controller
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
            pn.pane.Markdown("**Model**", margin=(5, 10, 0, 10)), w["preset"], w["source"],
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
        self.progress = pn.indicators.Progress(value=0, max=100, active=False, bar_color="primary",
                                               sizing_mode="stretch_width", height=14,
                                               css_classes=["sv-progress"], visible=False)
        self.status = pn.pane.Markdown("starting", css_classes=["sv-status"], margin=(0, 10))
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False,
                                   css_classes=["sv-error"], sizing_mode="stretch_width")
        self.model_line = pn.pane.Markdown("", css_classes=["sv-model"], margin=(0, 10),
                                           sizing_mode="stretch_width")
        self.warnings = pn.pane.Alert("", alert_type="warning", visible=False,
                                      css_classes=["sv-warnings"], sizing_mode="stretch_width")
        self.cards = {k: pn.pane.HTML("", stylesheets=[CARD_CSS],
                                      css_classes=["sv-card-pane",
                                                   "sv-card-" + k.lower().replace(" ", "-")
                                                   .replace("/", "-per-")])
                      for k in ("N", "D", "L0", "first-K L0", "rho_mm", "ME violations",
                                "samples/s")}
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
        self.tabs.param.watch(lambda e: self._on_tab(), ["active"])
        self._on_tab()
        self.main = pn.Column(pn.Row(self.status, self.progress, sizing_mode="stretch_width"),
                              self.model_line, self.alert, self.warnings, self.card_row,
                              self.tabs, sizing_mode="stretch_width")

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
        assumed = preset_note(self.controller.preset)
        if assumed:
            words = f"{words}. Preset {self.controller.preset}: {assumed}"
        warns = model_warnings(res.model)
        check = _export_check(res.model)
        self._dispatch(partial(self._apply, res, cards, seq, words, warns, check))

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
               words: str = "", warns: list[str] | None = None,
               check: ExportCheck | None = None) -> None:
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
            if check is not None:  # shown before exporting: does sae_lens sample it alike?
                self.export_check.object = (
                    f"**Exports exactly:** {html.escape(check.message)}" if check.exact else
                    f"**Does not export exactly:** {html.escape(check.message)}")
                self.export_check.visible = True
                self.export_inexact.visible = not check.exact
                if check.exact:
                    self.export_inexact.value = False
            for name, (value, sub) in cards.items():
                self.cards[name].object = (
                    f'<div class="sv-card"><div class="sv-label">{html.escape(name)}</div>'
                    f'<div class="sv-value">{html.escape(value)}</div>'
                    f'<div class="sv-sub">{html.escape(sub)}</div></div>')

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
        self._dispatch(self._apply_status)

    def _apply_status(self) -> None:
        """Shows the controller's current status when it runs (not the one that queued it), so
        callbacks run out of order still end at the latest (see `_apply`)."""
        c = self.controller
        status, busy, pct, err = c.status, c.busy, c.progress, c.error
        self.status.object = f"**status:** {html.escape(status)}"
        self.progress.visible = busy
        self.progress.active = busy
        # -1: an indeterminate bar for steps that report no progress of their own
        self.progress.value = pct if busy and 0 < pct < 100 else (-1 if busy else 100)
        self.alert.object = html.escape(err)
        self.alert.visible = bool(err)

    # -------------------------------------------------------------- export and share
    def _build_export(self) -> None:
        W = pn.widgets
        self.export_name = W.TextInput(label="folder name (under the export root)",
                                       value="my-variation", css_classes=["sv-export-name"])
        self.export_force = W.Checkbox(label="replace an existing folder", value=False)
        self.export_samples = W.IntInput(label="samples for the model card", value=20000,
                                         start=256, step=1000, css_classes=["sv-export-samples"])
        self.export_button = W.Button(label="Export", color="primary",
                                      css_classes=["sv-export-button"])
        self.push_repo = W.TextInput(label="Hub repo id (owner/name)", placeholder="owner/name")
        self.push_path = W.TextInput(label="path in repo (optional)")
        self.push_private = W.Checkbox(label="private repo", value=True)
        self.push_button = W.Button(label="Push to the Hub", color="default",
                                    css_classes=["sv-push-button"])
        self.export_alert = pn.pane.Alert("", alert_type="success", visible=False,
                                          css_classes=["sv-export-alert"],
                                          sizing_mode="stretch_width")
        self.push_alert = pn.pane.Alert("", alert_type="success", visible=False,
                                        css_classes=["sv-push-alert"],
                                        sizing_mode="stretch_width")
        self.export_check = pn.pane.Markdown("", visible=False, css_classes=["sv-export-check"],
                                             sizing_mode="stretch_width")
        self.export_inexact = W.Checkbox(
            label="write it anyway (the model card will say sae_lens samples it differently)",
            value=False, visible=False, css_classes=["sv-export-inexact"])
        self.snippet = pn.pane.Markdown(self._snippet(None), css_classes=["sv-snippet"])
        self._last_export: Path | None = None
        self.export_button.on_click(self._on_export)
        self.push_button.on_click(self._on_push)
        root = html.escape(str(export_root().absolute()))
        self.export_panel = pn.Column(
            pn.pane.Markdown(
                "### Share\nThe page's URL holds every setting: copy it to reopen this "
                f"configuration.\n\n### Export\nWrites the current model in the Hub (sae_lens) "
                f"format under `{root}` (set `SYNTHVIZ_EXPORT_ROOT` to change it)."),
            self.export_name, self.export_force, self.export_samples, self.export_check,
            self.export_inexact, self.export_button, self.export_alert,
            pn.pane.Markdown("### Push (optional)\nUploads the exported folder with your normal "
                             "Hugging Face login; the token is never shown or written."),
            self.push_repo, self.push_path, self.push_private, self.push_button,
            self.push_alert, self.snippet, sizing_mode="stretch_width", max_width=900)
        self.tabs.append(("Share & export", self.export_panel))

    @staticmethod
    def _snippet(folder: Path | None, repo: str | None = None, sub: str | None = None) -> str:
        path = str(folder) if folder else "exports/my-variation"
        code = ("from sae_lens.synthetic import SyntheticModel\n\n"
                f"model = SyntheticModel.load_from_disk({path!r})")
        if repo:
            code += (f"\n# from the Hub:\nmodel = SyntheticModel.from_pretrained({repo!r}"
                     + (f", model_path={sub!r}" if sub else "") + ")")
        return f"### Load it in sae_lens\n```python\n{code}\n```"

    def _export_message(self, text: str, kind: str, where: str = "export") -> None:
        """A message next to the button that caused it (Export or Push)."""
        # the export function speaks CLI; in the app the control is the checkbox
        text = text.replace("pass --force to replace it",
                            f"tick \"{self.export_force.name}\" to replace it")
        alert = self.push_alert if where == "push" else self.export_alert

        def apply():
            alert.alert_type = kind
            alert.object = html.escape(text)
            alert.visible = True
        self._dispatch(apply)

    def _on_export(self, event=None) -> threading.Thread:
        res = self.controller.results
        name, force, samples = self.export_name.value, self.export_force.value, \
            self.export_samples.value
        inexact = self.export_inexact.value
        if res is None:
            self._export_message("nothing to export yet: the model is still loading", "warning")
            return None
        self.export_button.disabled = True

        def work():
            from synthviz.export import export_model, safe_export_path
            target = safe_export_path(export_root(), name)
            self._export_message(f"exporting to {target} …", "info")
            out = export_model(res.model, target, force=force, samples=int(samples),
                               progress=self.controller._progress("exporting"),
                               allow_inexact=inexact)
            self._last_export = Path(out)
            self._export_message(f"exported to {out}", "success")
            snippet = self._snippet(Path(out))
            self._dispatch(lambda: setattr(self.snippet, "object", snippet))

        status = self.controller.status

        def done():
            self._dispatch(lambda: setattr(self.export_button, "disabled", False))
            # back to what the status said before (ready), not "exporting: 100%"
            self.controller.param.update(busy=False, progress=100, status=status)
        return self._background("export", work, detail=True, done=done)

    def _on_push(self, event=None) -> threading.Thread:
        folder, repo, sub, private = self._last_export, self.push_repo.value.strip(), \
            self.push_path.value.strip() or None, self.push_private.value
        if folder is None:
            self._export_message("export the model first, then push the folder", "warning",
                                 "push")
            return None
        if not repo:
            self._export_message("give a Hub repo id like owner/name", "warning", "push")
            return None

        def work():
            from synthviz.export import push_folder
            self._export_message(f"pushing {folder} to {repo} …", "info", "push")
            url = push_folder(folder, repo_id=repo, path_in_repo=sub, private=private)
            self._export_message(f"pushed: {url}", "success", "push")
            snippet = self._snippet(folder, repo, sub)
            self._dispatch(lambda: setattr(self.snippet, "object", snippet))
        # an unexpected Hub error's text may quote a request: only its type is shown
        return self._background("push", work, detail=False)

    def _background(self, what: str, work, detail: bool, done=None) -> threading.Thread:
        where = "push" if what == "push" else "export"
        """Run `work` on a thread; its errors become messages in the export panel (a
        SynthvizError as it is; anything else logged, shown by type and, with `detail`, text)."""
        def run():
            try:
                work()
            except SynthvizError as exc:
                self._export_message(str(exc), "danger", where)
            except Exception as exc:
                log.exception("%s failed", what)
                self._export_message(f"{what} failed ({type(exc).__name__})"
                                     + (f": {exc}" if detail else ""), "danger", where)
            finally:
                if done is not None:
                    done()
        t = threading.Thread(target=run, daemon=True, name=f"synthviz-{what}")
        t.start()
        return t

    # -------------------------------------------------------------- layout
    def __panel__(self):
        return pn.Row(pn.Column(self.sidebar, width=320), self.main, sizing_mode="stretch_width")


def create_app(controller: Controller | None = None) -> pn.template.FastListTemplate:
    """The served page: the URL carries the settings, the sidebar the controls."""
    c = controller or Controller(start=False)
    served = bool(pn.state.curdoc and pn.state.curdoc.session_context)
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
