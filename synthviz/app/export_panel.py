"""The "Share & export" tab: export the current model in the Hub (sae_lens) format, push the
folder to the Hub, and the snippet that loads it in sae_lens. A `pn.viewable.Viewer` bound to a
`Controller`; export and push run on threads and report next to their buttons."""

from __future__ import annotations

import html
import logging
import os
import threading
from pathlib import Path

import panel as pn
import param

from synthviz.app.controller import Controller
from synthviz.app.session import SessionLoop
from synthviz.errors import SynthvizError
from synthviz.fidelity import ExportCheck, export_check

log = logging.getLogger(__name__)


def export_root() -> Path:
    return Path(os.environ.get("SYNTHVIZ_EXPORT_ROOT", "./exports")).expanduser()



def export_check_or_none(model) -> ExportCheck | None:
    """Whether sae_lens samples an export of `model` alike; None when the check itself failed."""
    try:
        memo = getattr(model, "memoized", None)  # a first look and its full count: one check
        return export_check(model) if memo is None else memo(("export_check",),
                                                              lambda: export_check(model))
    except Exception:  # the page still shows the model; the export reports its own error
        log.exception("export check failed")
        return None


class ExportPanel(pn.viewable.Viewer):
    """Export and push the controller's current model."""

    controller = param.ClassSelector(class_=Controller)
    loop = param.ClassSelector(class_=SessionLoop, allow_None=True,
                               doc="where page updates run (None: at once)")

    def __init__(self, **params):
        super().__init__(**params)
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

    def __panel__(self):
        return self.export_panel

    def _dispatch(self, fn) -> None:
        if self.loop is None:
            fn()
        else:
            self.loop.dispatch(fn)

    def show_check(self, check: ExportCheck | None) -> None:
        """Shown before exporting: does sae_lens sample an export of the model alike? (None: the
        check itself failed; the export reports its own error.) Only texts change here once
        shown: a change of visibility made the browser lay out the whole page."""
        if check is None:
            if self.export_check.visible:
                self.export_check.object = "**Export check failed:** the export says why."
            return
        self.export_check.object = (
            f"**Exports exactly:** {html.escape(check.message)}" if check.exact else
            f"**Does not export exactly:** {html.escape(check.message)}")
        self.export_check.visible = True
        self.export_inexact.visible = not check.exact
        if check.exact:
            self.export_inexact.value = False

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
                               progress=self.controller.progress_callback("exporting"),
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
