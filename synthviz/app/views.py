"""Views of a `Controller`: sidebar widgets, headline cards, plot tabs, and the export panel.

`Explorer(controller)` is one session's page. `create_app()` wraps it in a FastListTemplate for
`panel serve app`; in a notebook `Explorer.__panel__` gives the same components in a Row.

Threading: the controller's worker sets `results` / `status` / `progress` from its own thread.
Plots are built there (pure functions, no Bokeh models yet); the assignment to Panel panes is
handed to the session's event loop with `pn.state.execute` under that session's document, so
Bokeh's document lock is respected and the page stays responsive meanwhile.
"""

from __future__ import annotations

import html
import logging
import os
import threading
from functools import partial
from pathlib import Path
from typing import Any

import holoviews as hv
import panel as pn
import param
from panel.io.state import set_curdoc

from synthviz.app.controller import CUSTOM, URL_PARAMS, Controller, Results
from synthviz.errors import SynthvizError

log = logging.getLogger(__name__)

SAMPLE_OPTIONS = [1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144]
PLOT_TABS = ("L0", "Frequencies", "Co-occurrence", "Hierarchy", "Superposition", "Magnitudes")

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


def build_plots(res: Results, c: Controller) -> dict[str, Any]:
    """Every plot for `res`, as HoloViews objects (built off the UI thread). A plot that fails
    becomes a message element rather than taking the others down."""
    from synthviz import plots

    s, b = res.stats, res.base_stats
    a, ba = res.analytic, res.base_analytic
    out: dict[str, Any] = {}

    def make(name, fn):
        try:
            out[name] = fn()
        except Exception as exc:  # one bad statistic must not blank the page
            log.exception("plot %s failed", name)
            out[name] = plots.empty(f"{name}: {type(exc).__name__}: {exc}")

    def interference():
        if a is None:
            return plots.empty("measuring interference…")
        if a.interference is None:
            return plots.empty("interference: " + a.errors.get("interference", "not measured"))
        return plots.create_interference_plot(
            a.interference, None if ba is None else ba.interference)

    k = res.settings["first_k"]
    make("l0", lambda: plots.create_l0_plot(s.l0, res.expected_l0, k,
                                            base=None if b is None else b.l0))
    make("frequencies", lambda: plots.create_frequency_plot(res.firing, base=res.base_firing))
    make("cooccurrence", lambda: _cooc(res, c.cooc_measure))
    make("cooccurrence_base", lambda: _cooc(res, c.cooc_measure, base=True))
    make("tree", lambda: _tree(res, c.tree_root))
    make("tree_base", lambda: _tree(res, c.tree_root, base=True))
    make("forest", lambda: _forest(res))
    make("cos_hist", lambda: plots.create_cos_histogram(res.superposition, res.base_superposition))
    make("max_cos", lambda: plots.create_max_cos_scatter(
        res.superposition, _x_rates(res.firing, res.model), res.base_superposition,
        None if res.base_model is None else _x_rates(res.base_firing, res.base_model)))
    make("interference", interference)
    make("magnitudes", lambda: plots.create_magnitude_plot(
        s.magnitudes, None if b is None else b.magnitudes) if s.magnitudes is not None
        else plots.empty("magnitudes: " + s.errors.get("magnitudes", "not measured")))
    return out


def _x_rates(firing, model):
    """Expected rates once known; the stored probabilities until then."""
    import torch
    ex = firing.expected_rate
    return ex if bool(torch.isfinite(ex).all()) else model.firing_probabilities


def _cooc(res: Results, measure: str, base: bool = False):
    from synthviz import plots
    s = res.base_stats if base else res.stats
    if s is None:
        return None
    if s.cooccurrence is None:
        return plots.empty(s.errors.get("cooccurrence", "no co-occurrence statistics"))
    return plots.create_cooccurrence_plot(
        s.cooccurrence, measure, title="base model, same feature set" if base else None)


def tree_root_of(forest, feature: int) -> int | None:
    """The root of the tree holding `feature` (the first root when it is outside every tree)."""
    if forest is None or not forest.roots:
        return None
    f = int(feature)
    if not 0 <= f < forest.num_features or int(forest.depth[f]) < 0:
        return forest.roots[0]
    parent = forest.parent
    while int(parent[f]) >= 0:
        f = int(parent[f])
    return f


def _tree(res: Results, feature: int, base: bool = False):
    from synthviz import plots
    from synthviz.stats.hierarchy_stats import tree_table
    if base:
        m, s = res.base_model, res.base_stats
        if m is None or s is None:
            return None
    else:
        m, s = res.model, res.stats
    root = tree_root_of(m.forest, feature)
    if root is None:
        return plots.empty("this model has no hierarchy")
    return plots.create_tree_plot(tree_table(m.forest, root, s.firing.empirical_rate),
                                  title=f"base: tree of root {root}" if base else None)


def _forest(res: Results):
    from synthviz import plots
    from synthviz.stats.hierarchy_stats import forest_summary
    m = res.model
    summary = None if m.forest is None else forest_summary(m.forest, m.num_features)
    base = None
    if res.base_model is not None and res.base_model.forest is not None:
        base = forest_summary(res.base_model.forest, res.base_model.num_features)
    return plots.create_forest_summary_plot(summary, base)


class Explorer(pn.viewable.Viewer):
    """One session's page: controls, status, cards, plot tabs and export."""

    controller = param.ClassSelector(class_=Controller)

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
            "source": W.TextInput.from_param(p.source, label="source (preset, folder or Hub id)"),
            "preset": W.Select.from_param(p.preset),
            "device": W.Select.from_param(p.device),
            "std_mode": W.RadioButtonGroup.from_param(p.std_mode, color="default"),
            "std": W.FloatSlider.from_param(p.std, **slider),
            "hidden_dim": W.IntSlider.from_param(p.hidden_dim, **slider),
            "rel_p": W.FloatSlider.from_param(p.rel_p, **slider),
            "num_features": W.IntSlider.from_param(p.num_features, **slider),
            "seed": W.IntInput.from_param(p.seed),
            "hierarchy_mode": W.RadioButtonGroup.from_param(p.hierarchy_mode),
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
        self._mode_links = [(lambda: c.std_mode == "base", [w["std"]]),
                            (lambda: c.hierarchy_mode == "base", hier),
                            (lambda: not c.use_target_l0, [w["target_l0"], w["target_l0_first_k"]]),
                            (lambda: c.use_target_l0, [w["rel_p"]])]
        c.param.watch(lambda *_: self._dispatch(self._sync_modes),
                      ["std_mode", "hierarchy_mode", "use_target_l0"])
        self._sync_modes()

        acc = dict(collapsed=True, sizing_mode="stretch_width", margin=(5, 0))
        self.sidebar = pn.Column(
            w["preset"], w["source"],
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
        for disabled, widgets in self._mode_links:
            flag = bool(disabled())
            for wd in widgets:
                wd.disabled = flag

    # -------------------------------------------------------------- main area
    def _build_main(self) -> None:
        self.progress = pn.indicators.Progress(value=0, max=100, active=False, bar_color="primary",
                                               sizing_mode="stretch_width", height=14,
                                               css_classes=["sv-progress"], visible=False)
        self.status = pn.pane.Markdown("starting", css_classes=["sv-status"], margin=(0, 10))
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False,
                                   css_classes=["sv-error"], sizing_mode="stretch_width")
        self.cards = {k: pn.pane.HTML("", stylesheets=[CARD_CSS],
                                      css_classes=["sv-card-pane",
                                                   "sv-card-" + k.lower().replace(" ", "-")
                                                   .replace("/", "-per-")])
                      for k in ("N", "D", "L0", "first-K L0", "rho_mm", "ME violations",
                                "samples/s")}
        self.card_row = pn.Row(*self.cards.values(), sizing_mode="stretch_width")
        hv_pane = partial(pn.pane.HoloViews, sizing_mode="stretch_width", min_height=380,
                          linked_axes=False)
        self.panes = {name: hv_pane(hv.Div(""), css_classes=[f"sv-plot-{name}"])
                      for name in ("l0", "frequencies", "cooccurrence", "cooccurrence_base",
                                   "tree", "tree_base", "forest", "cos_hist", "max_cos",
                                   "interference", "magnitudes")}
        P = self.panes
        w = self.w
        self.tabs = pn.Tabs(
            ("L0", P["l0"]),
            ("Frequencies", P["frequencies"]),
            ("Co-occurrence", pn.Column(w["cooc_measure"], P["cooccurrence"],
                                        P["cooccurrence_base"], sizing_mode="stretch_width")),
            ("Hierarchy", pn.Column(w["tree_root"], P["tree"], P["tree_base"], P["forest"],
                                    sizing_mode="stretch_width")),
            ("Superposition", pn.Column(P["cos_hist"], P["max_cos"], P["interference"],
                                        sizing_mode="stretch_width")),
            ("Magnitudes", P["magnitudes"]),
            dynamic=True, sizing_mode="stretch_width", css_classes=["sv-tabs"],
        )
        self.main = pn.Column(pn.Row(self.status, self.progress, sizing_mode="stretch_width"),
                              self.alert, self.card_row, self.tabs, sizing_mode="stretch_width")

    # -------------------------------------------------------------- updates
    def _on_results(self, event) -> None:
        res = self.controller.results
        if res is None:
            return
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        plots = build_plots(res, self.controller)  # in the worker thread when served
        cards = card_values(res, res.settings["first_k"])
        self._dispatch(partial(self._apply, plots, cards, seq))

    def _on_view_param(self, *events) -> None:
        self._on_results(None)

    def _apply(self, plots: dict[str, Any], cards: dict[str, tuple[str, str]],
               seq: int = 0) -> None:
        # callbacks queued while a session is still being created can run out of order
        # (Bokeh keeps them in a set until then): never let older plots replace newer ones
        if seq and seq < self._applied_seq:
            return
        self._applied_seq = seq
        with pn.io.hold():
            for name, obj in plots.items():
                pane = self.panes[name]
                pane.visible = obj is not None  # base-only panes show in compare mode
                if obj is not None:
                    pane.object = obj
            for name, (value, sub) in cards.items():
                self.cards[name].object = (
                    f'<div class="sv-card"><div class="sv-label">{html.escape(name)}</div>'
                    f'<div class="sv-value">{html.escape(value)}</div>'
                    f'<div class="sv-sub">{html.escape(sub)}</div></div>')

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
            self.export_name, self.export_force, self.export_samples, self.export_button,
            pn.pane.Markdown("### Push (optional)\nUploads the exported folder with your normal "
                             "Hugging Face login; the token is never shown or written."),
            self.push_repo, self.push_path, self.push_private, self.push_button,
            self.export_alert, self.snippet, sizing_mode="stretch_width", max_width=900)
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

    def _export_message(self, text: str, kind: str) -> None:
        def apply():
            self.export_alert.alert_type = kind
            self.export_alert.object = html.escape(text)
            self.export_alert.visible = True
        self._dispatch(apply)

    def _on_export(self, event=None) -> threading.Thread:
        res = self.controller.results
        name, force, samples = self.export_name.value, self.export_force.value, \
            self.export_samples.value
        if res is None:
            self._export_message("nothing to export yet: the model is still loading", "warning")
            return None
        self.export_button.disabled = True

        def work():
            from synthviz.export import export_model, safe_export_path
            target = safe_export_path(export_root(), name)
            self._export_message(f"exporting to {target} …", "info")
            out = export_model(res.model, target, force=force, samples=int(samples),
                               progress=self.controller._progress("exporting"))
            self._last_export = Path(out)
            self._export_message(f"exported to {out}", "success")
            snippet = self._snippet(Path(out))
            self._dispatch(lambda: setattr(self.snippet, "object", snippet))

        def done():
            self._dispatch(lambda: setattr(self.export_button, "disabled", False))
            self.controller.param.update(busy=False, progress=100)
        return self._background("export", work, detail=True, done=done)

    def _on_push(self, event=None) -> threading.Thread:
        folder, repo, sub, private = self._last_export, self.push_repo.value.strip(), \
            self.push_path.value.strip() or None, self.push_private.value
        if folder is None:
            self._export_message("export the model first, then push the folder", "warning")
            return None
        if not repo:
            self._export_message("give a Hub repo id like owner/name", "warning")
            return None

        def work():
            from synthviz.export import push_folder
            self._export_message(f"pushing {folder} to {repo} …", "info")
            url = push_folder(folder, repo_id=repo, path_in_repo=sub, private=private)
            self._export_message(f"pushed: {url}", "success")
            snippet = self._snippet(folder, repo, sub)
            self._dispatch(lambda: setattr(self.snippet, "object", snippet))
        # an unexpected Hub error's text may quote a request: only its type is shown
        return self._background("push", work, detail=False)

    def _background(self, what: str, work, detail: bool, done=None) -> threading.Thread:
        """Run `work` on a thread; its errors become messages in the export panel (a
        SynthvizError as it is; anything else logged, shown by type and, with `detail`, text)."""
        def run():
            try:
                work()
            except SynthvizError as exc:
                self._export_message(str(exc), "danger")
            except Exception as exc:
                log.exception("%s failed", what)
                self._export_message(f"{what} failed ({type(exc).__name__})"
                                     + (f": {exc}" if detail else ""), "danger")
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
    if served and pn.state.location is not None:
        explorer_error: list[str] = []
        pn.state.location.sync(c, {p: p for p in URL_PARAMS},
                               on_error=lambda bad: explorer_error.append(
                                   f"ignored invalid URL settings: {sorted(bad)}"))
        if explorer_error:
            c.error = explorer_error[0]
    explorer = Explorer(controller=c)
    c.request()
    if served:
        pn.state.on_session_destroyed(lambda ctx: c.close())
    template = pn.template.FastListTemplate(
        title="synthviz: SynthSAEBench-16k explorer", sidebar=[explorer.sidebar],
        main=[explorer.main], sidebar_width=330, accent="#1f77b4", theme_toggle=False)
    template.explorer = explorer  # tests and notebooks reach the components through it
    return template
