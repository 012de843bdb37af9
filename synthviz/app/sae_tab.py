"""The app's "SAE" tab: choose an SAE folder under an allowed root, evaluate it against the current
model's ground truth (and the base's, for distribution shift), and show headline cards, a metrics
table and the SAE plot registry's plots (`synthviz.plots.sae_registry.SAE_PLOTS`: recovery against
firing rate, a hierarchy tree coloured by recovery with absorption on its edges, the
SAE-against-truth |cos| heatmap).

Self-contained: it needs only a model (and optionally a base model) through `param.ClassSelector`
inputs. The evaluation is `synthviz.sae.results.evaluate_for_view`, run on a thread with a progress
bar and a Cancel button; its `SAEResults` snapshots are cached per (model, SAE files, samples,
seed) and drawn by `SAEPlots`, a `TabView` whose slots are the registry's entries (a new entry
is a new plot here, with no change to this module). Every error is a message on the page and the
tab stays usable. SAE folders are only read under `sae_root()` (env `SYNTHVIZ_SAE_ROOT`, default
`./saes`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import panel as pn
import param

from synthviz.app.tab_base import TabView
from synthviz.errors import Cancelled, SynthvizError
from synthviz.model import SynthModel
from synthviz.plots.sae_registry import SAE_PLOTS
from synthviz.sae.loading import CFG_FILE, load_sae
from synthviz.sae.results import SAEResults, evaluate_for_view

log = logging.getLogger(__name__)
CACHE_SIZE = 8


def sae_root() -> Path:
    return Path(os.environ.get("SYNTHVIZ_SAE_ROOT", "./saes")).expanduser()


def list_sae_folders(root: Path) -> list[str]:
    """SAE folders (holding cfg.json) up to two levels below `root`, as relative names."""
    if not root.is_dir():
        return []
    found = []
    for cfg in sorted(list(root.glob(f"*/{CFG_FILE}")) + list(root.glob(f"*/*/{CFG_FILE}"))):
        found.append(cfg.parent.relative_to(root).as_posix())
    return found


def resolve_in_root(root: Path, name: str) -> Path:
    """The folder `name` under `root`, refusing anything that resolves outside it."""
    base = root.resolve()
    path = (root / name).resolve()
    if not name or base != path and base not in path.parents:
        raise SynthvizError(f"SAE folder {name!r} is outside the allowed root {root}")
    return path


def _card(title: str, value: str, sub: str = "") -> pn.pane.Markdown:
    return pn.pane.Markdown(f"<small>{title}</small><br><b style='font-size:1.4em'>{value}</b>"
                            f"<br><small>{sub}</small>", width=150, margin=(4, 8))


METRICS = ["f1", "recall", "precision"]


class SAEPlots(TabView):
    """The SAE tab's plots: one slot per entry of the SAE plot registry (`SAE_PLOTS`, read when
    the view is made), drawn from an `SAEResults` snapshot with the view settings `metric` and
    `tree_root`, and redrawn when any of them changes. Before any evaluation each entry shows
    its placeholder."""

    results = param.ClassSelector(class_=SAEResults, allow_None=True, doc="what the plots show")
    active = param.Boolean(default=True, doc="shown (the SAE tab draws while it is open)")
    metric = param.Selector(default="f1", objects=METRICS)
    tree_root = param.Integer(default=None, allow_None=True)

    def __init__(self, registry=None, **params):
        self.registry = SAE_PLOTS if registry is None else registry
        self.slots = tuple(s.name for s in self.registry)
        self.in_place = tuple(s.name for s in self.registry if s.in_place)
        super().__init__(**params)
        if self.results is None:
            self.draw(None)  # the placeholders
        else:
            self._refresh()

    def draw(self, res: SAEResults | None) -> None:
        for spec in self.registry:
            self.show_spec(spec, res, {k: getattr(self, k) for k in spec.options})


class SAEView(pn.viewable.Viewer):
    """SAE evaluation tab. Inputs: `model` (the current model) and `base` (for comparison)."""

    model = param.ClassSelector(class_=SynthModel, allow_None=True, doc="the current model")
    base = param.ClassSelector(class_=SynthModel, allow_None=True, doc="the base, for shift")
    sae_folder = param.Selector(default=None, objects=[], allow_None=True)
    samples = param.Integer(default=20_000, bounds=(1_000, 2_000_000))
    seed = param.Integer(default=0, bounds=(0, None))
    compare_base = param.Boolean(default=True, doc="also evaluate on the base model")
    metric = param.Selector(default="f1", objects=METRICS)
    tree_root = param.Integer(default=None, allow_None=True)
    results = param.ClassSelector(class_=SAEResults, allow_None=True, doc="the shown evaluation")
    busy = param.Boolean(default=False)
    status = param.String(default="")

    def __init__(self, root: str | Path | None = None, registry=None, **params):
        super().__init__(**params)
        self.root = Path(root).expanduser() if root is not None else sae_root()
        self._cache: OrderedDict = OrderedDict()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._doc = pn.state.curdoc
        W = pn.widgets
        self.folder_select = W.Select.from_param(self.param.sae_folder, name="SAE folder")
        self.refresh_button = W.Button(label="Refresh list", color="default")
        self.run_button = W.Button(label="Evaluate", color="primary")
        self.cancel_button = W.Button(label="Cancel", color="warning", disabled=True)
        self.progress = W.Progress(value=0, max=100, visible=False, sizing_mode="stretch_width")
        self.alert = pn.pane.Alert("", alert_type="danger", visible=False)
        self.cards = pn.FlexBox()
        self.table = pn.pane.Markdown("")
        # the plots, from the SAE plot registry (`registry`: another one, e.g. in tests)
        self.plots = SAEPlots(registry=registry, results=self.results, metric=self.metric,
                              tree_root=self.tree_root)
        self.refresh_button.on_click(lambda e: self.refresh())
        self.run_button.on_click(lambda e: self.run())
        self.cancel_button.on_click(lambda e: self.cancel())
        self.param.watch(self._redraw, ["metric", "tree_root", "results"])
        self.param.watch(self._model_changed, ["model", "base"])
        self._layout: pn.Column | None = None
        self._numbers()
        self.refresh()

    # -------------------------------------------------------------- threading
    def _dispatch(self, fn) -> None:
        """Run `fn` where it may touch Panel objects: directly without a server session, else on
        the session's next tick under its document lock."""
        doc = self._doc
        if doc is None or not getattr(doc, "session_context", None):
            fn()
            return
        try:
            doc.add_next_tick_callback(fn)
        except Exception as exc:  # the session is gone
            log.debug("SAE tab update dropped: %s", exc)

    # -------------------------------------------------------------- actions
    def refresh(self) -> None:
        names = list_sae_folders(self.root)
        self.param.sae_folder.objects = list(names)  # param may append None to the list it gets
        if self.sae_folder not in names:
            self.sae_folder = names[0] if names else None
        if not names:
            self._message(f"no SAE folders under {self.root.absolute()} (set SYNTHVIZ_SAE_ROOT; "
                          "an SAE folder holds cfg.json and sae_weights.safetensors)", "info")

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> threading.Thread | None:
        """Evaluate the chosen SAE on a thread (returned, so tests can join it)."""
        if self.busy:
            return None
        try:
            job = self._job()
        except SynthvizError as exc:
            self._message(str(exc), "danger")
            return None
        hit = self._cache.get(job["key"])
        if hit is not None:
            self._cache.move_to_end(job["key"])
            self.status = "from cache"
            self._message("", None)
            self.results = hit
            return None
        self._cancel.clear()
        self.busy = True
        self._set_running(True)
        self._thread = threading.Thread(target=self._work, args=(job,), daemon=True,
                                        name="synthviz-sae-eval")
        self._thread.start()
        return self._thread

    def _job(self) -> dict:
        if self.model is None:
            raise SynthvizError("no model loaded yet")
        if not self.sae_folder:
            raise SynthvizError(f"choose an SAE folder under {self.root.absolute()}")
        folder = resolve_in_root(self.root, self.sae_folder)
        weights = folder / "sae_weights.safetensors"
        stamp = tuple(p.stat().st_mtime_ns if p.exists() else 0
                      for p in (folder / CFG_FILE, weights))
        models = {"current": self.model}
        if self.compare_base and self.base is not None and self.base is not self.model:
            models["base"] = self.base
        key = (str(folder), stamp, tuple(id(m) for m in models.values()), self.samples,
               self.seed)
        return {"folder": folder, "models": models, "key": key, "samples": self.samples,
                "seed": self.seed}

    def _work(self, job: dict) -> None:
        def progress(done: int, total: int) -> None:
            if self._cancel.is_set():
                raise Cancelled()
            self._dispatch(lambda: setattr(self.progress, "value", int(100 * done / total)))

        try:
            model = job["models"]["current"]
            sae = load_sae(job["folder"], device=model.device, d_in=model.hidden_dim)
            results = evaluate_for_view(sae, job["models"], job["samples"], job["seed"],
                                        progress=progress, name=job["folder"].name)
            self._cache[job["key"]] = results
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            note = f"; {results.note}" if results.note else ""

            def done():
                self._message("", None)
                self.status = f"evaluated {results.sae_name} on {results.samples} samples{note}"
                self.results = results
            self._dispatch(done)
        except Cancelled:
            self._dispatch(lambda: setattr(self, "status", "cancelled"))
        except SynthvizError as exc:
            msg = str(exc)
            self._dispatch(lambda: self._message(msg, "danger"))
        except Exception as exc:  # unexpected: logged, shown by type, the tab stays usable
            log.exception("SAE evaluation failed")
            name = type(exc).__name__
            self._dispatch(lambda: self._message(f"SAE evaluation failed ({name})", "danger"))
        finally:
            self._dispatch(lambda: self._set_running(False))

    def _set_running(self, running: bool) -> None:
        self.busy = running
        self.run_button.disabled = running
        self.cancel_button.disabled = not running
        self.progress.visible = running
        if running:
            self.progress.value = 0
            self.status = "evaluating…"

    def _message(self, text: str, kind: str | None) -> None:
        self.alert.object = text
        self.alert.visible = bool(text)
        if kind:
            self.alert.alert_type = kind

    def _model_changed(self, *events) -> None:
        if self.results is not None and not self.busy:
            self._dispatch(lambda: setattr(self, "status", "the model changed: press Evaluate "
                                           "(the results shown are for the previous one)"))

    # -------------------------------------------------------------- drawing
    def _redraw(self, *events) -> None:
        if any(e.name == "results" for e in events):
            self._numbers()
        self.plots.param.update(results=self.results, metric=self.metric,
                                tree_root=self.tree_root)

    def _numbers(self) -> None:
        """The cards and the table of the results shown."""
        res = self.results
        if res is not None:
            self.cards.objects = self._cards(res.current, res.base)
            self.table.object = self._table(res.by_model())

    @staticmethod
    def _cards(cur, base) -> list:
        def sub(key, fmt="{:.3f}"):
            return f"base {fmt.format(getattr(base, key))}" if base is not None else ""
        c = cur.classification
        bc = base.classification if base is not None else None
        return [_card("MCC", f"{cur.mcc:.3f}"),
                _card("F1 (mean over latents)", f"{c['f1_score']:.3f}",
                      f"base {bc['f1_score']:.3f}" if bc else ""),
                _card("recall / precision", f"{c['recall']:.2f} / {c['precision']:.2f}"),
                _card("explained variance", f"{cur.explained_variance:.3f}",
                      sub("explained_variance")),
                _card("L0 SAE / true", f"{cur.sae_l0:.1f} / {cur.true_l0:.1f}",
                      sub("true_l0", "{:.1f}")),
                _card("dead latents", str(cur.dead_latents)),
                _card("absorption (mean gap)", f"{cur.summary['absorption']['mean_gap']:.3f}",
                      f"{cur.summary['absorption']['edges']} edges"),
                _card("split features", str(cur.summary["splitting"]["split_features"]))]

    @staticmethod
    def _table(res: dict) -> str:
        """A markdown table of every scalar metric, one column per model ({"current", "base"})."""
        names = list(res)
        rows = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        flat = {n: {**{k: v for k, v in r.to_dict().items() if not isinstance(v, dict)},
                    **{f"classification/{k}": v for k, v in r.classification.items()}}
                for n, r in res.items()}
        for key in flat[names[0]]:
            vals = [flat[n][key] for n in names]
            rows.append(f"| {key} | " + " | ".join(
                f"{v:.4f}" if isinstance(v, float) and np.isfinite(v) else str(v)
                for v in vals) + " |")
        return "\n".join(rows)

    def _build_layout(self) -> pn.Column:
        controls = pn.Row(
            self.folder_select, self.refresh_button,
            pn.widgets.IntInput.from_param(self.param.samples, name="samples", width=120),
            pn.widgets.IntInput.from_param(self.param.seed, name="seed", width=90),
            pn.widgets.Checkbox.from_param(self.param.compare_base, name="compare with the base"),
            self.run_button, self.cancel_button)
        plots = []  # the tree-root box goes above the first plot that reads it
        for spec in self.plots.registry:
            if "tree_root" in spec.options and not any(isinstance(p, pn.widgets.IntInput)
                                                       for p in plots):
                plots.append(pn.widgets.IntInput.from_param(
                    self.param.tree_root, name="tree root (empty: the most absorbed tree)"))
            plots.append(self.plots.slot[spec.name].box)
        return pn.Column(
            pn.pane.Markdown(f"### SAE lens\nSAE folders are read from `{self.root.absolute()}` "
                             "(set `SYNTHVIZ_SAE_ROOT` to change it)."),
            controls, self.progress, self.alert,
            pn.widgets.StaticText.from_param(self.param.status, name="status"),
            self.cards,
            pn.widgets.RadioButtonGroup.from_param(self.param.metric),
            *plots,
            self.table, sizing_mode="stretch_width")

    def __panel__(self):
        if self._layout is None:
            self._layout = self._build_layout()
        return self._layout
