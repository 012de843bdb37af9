"""Building blocks of the explorer's tabs: `PlotSlot` (one plot area that follows new elements in
place) and `TabView` (a `pn.viewable.Viewer` bound to the controller's `Results`).

Why: a HoloViews pane that is a tab's own child and swaps whole figures cannot put a new figure
into the page once its tab has been hidden and shown (Panel's dynamic Tabs put back the model
the tab rendered first, and the swap logs "could not be replaced"), so plots went stale after
switching tabs. Here each tab's child is its view's own Column, which Panel keeps while the tab
is hidden and puts back as it is; inside it every plot is a `DynamicMap` fed by a `Pipe`, so a new
element updates the existing Bokeh figure's data, title and legend. Only a change of element
type (a placeholder message becoming a plot) builds a new figure, inside that Column.
Every slot draws on a 2D canvas, not WebGL: in Chromium a WebGL figure that replaced another one
kept its axes, legend and data but painted no glyphs, and WebGL glyphs updated in place failed
("Size mismatch") when the number of points changed. An in-place update costs a fraction of a
new figure, on the server (no new Bokeh models) and in the browser (no new views).

All of this runs on the session's event loop: the Explorer assigns `results` there, and a view
draws when its tab is shown (a hidden tab draws when it is opened).
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any

import holoviews as hv
import panel as pn
import param

from synthviz.app.results import Results
from synthviz.plots._style import empty
from synthviz.plots.registry import same_reads

log = logging.getLogger(__name__)
_NUMBER = re.compile(r"[-+]?\d[\d,.]*")


def _stable(label: str) -> str:
    """A layer's identity without its numbers ("mean L0 34.63" -> "mean L0 #"), so a new value
    updates the same renderer instead of adding one per update."""
    return _NUMBER.sub("#", label)


def _as_sent(data):
    """A slot's DynamicMap shows what its Pipe sent, as sent."""
    return data


def _canvas_renderer():
    """HoloViews' Bokeh renderer drawing on a 2D canvas (output_backend "canvas")."""
    return hv.renderer("bokeh").instance(webgl=False)


class PlotSlot:
    """One plot area: `show(element)` puts a HoloViews element on the page, in place."""

    def __init__(self, name: str, in_place: bool = True):
        self.name = name
        self.in_place = in_place
        self._pipe: hv.streams.Pipe | None = None
        self.drawn_from: tuple | None = None  # what the shown element was made from (see reads)
        self._kind: Any = None
        self._labels: dict[str, str] = {}  # stable layer key -> legend text to show
        # a 2D canvas, not WebGL (see the module docstring). No min_height: the elements set
        # their height, and the first update in place reset a pane's min_height on the figure,
        # which made the browser lay out the whole page
        self.pane = pn.pane.HoloViews(hv.Div(""), sizing_mode="stretch_width",
                                      linked_axes=False,
                                      css_classes=[f"sv-plot-{name}"],
                                      renderer=_canvas_renderer())
        self.box = pn.Column(self.pane, sizing_mode="stretch_width", visible=False)

    def show(self, obj) -> None:
        """None hides the slot (e.g. a base-only plot while compare is off)."""
        if obj is None:
            self.box.visible = False
            return
        if not self.in_place:  # a new figure, from the element as it is
            self.pane.object = obj
            self.box.visible = True
            return
        obj = self._keyed(obj)
        kind = type(obj)
        if kind is not self._kind or self._pipe is None:
            self._pipe = hv.streams.Pipe(data=obj)
            self.pane.object = hv.DynamicMap(_as_sent, streams=[self._pipe])
            self._kind = kind
        else:
            self._pipe.send(obj)
        self.box.visible = True

    def _keyed(self, obj):
        """The element as the slot draws it, changed in place (the create functions return new
        elements; cloning them cost more than the rest of the slot's work): axes follow each
        new element (`framewise`: a DynamicMap keeps its first ranges otherwise), and overlay
        layers carry stable keys as labels, their legend text put back by a hook."""
        if not isinstance(obj, hv.Overlay):
            self._labels = {}
            return obj.opts(framewise=True)
        labels = {}
        for layer in obj:
            layer.opts(framewise=True)  # each layer: the overlay's own setting is not enough
            text = layer.label
            if not text:
                continue
            key = _stable(text)
            while key in labels:  # two layers must not share a key
                key += "'"
            labels[key] = text
            with param.edit_constant(layer):
                layer.label = key
        self._labels = labels
        # a new Overlay, so its layers are keyed by their new labels
        return obj.clone(list(obj)).opts(framewise=True, hooks=[self._legend_hook])

    def _legend_hook(self, plot, element) -> None:
        """Legend entries show each layer's current text (labels carry the numbers)."""
        from bokeh.core.property.vectorization import Value
        text_of: dict[str, str] = {}
        for sub in getattr(plot, "subplots", {}).values():
            frame = getattr(sub, "current_frame", None)
            r = getattr(sub, "handles", {}).get("glyph_renderer")
            if frame is not None and r is not None and frame.label in self._labels:
                text_of[r.id] = self._labels[frame.label]
        for legend in getattr(plot.state, "legend", []):
            for item in legend.items:
                hit = next((text_of[r.id] for r in item.renderers if r.id in text_of), None)
                if hit is not None and getattr(item.label, "value", None) != hit:
                    item.label = Value(hit)


@contextlib.contextmanager
def models_frozen(doc):
    """Bokeh's `doc.models.freeze()`, except that leaving it walks the page's models only if
    something changed which models the page holds. Bokeh's own freeze walks them on leaving in
    any case; an update in place (new data, titles, legend text) changes no reference, and
    every property change that does calls `models.invalidate()`, which is watched here."""
    models = doc.models
    if not all(hasattr(models, a) for a in ("_push_freeze", "_pop_freeze", "_freeze_count")):
        with models.freeze():  # another Bokeh: its own freeze
            yield
        return
    changed = False

    def invalidate() -> None:  # frozen: Bokeh's own would do nothing now
        nonlocal changed
        changed = True

    roots = list(doc.roots)
    models._push_freeze()
    models.invalidate = invalidate
    try:
        yield
    finally:
        del models.invalidate  # Bokeh's method again
        if changed or models._freeze_count > 1 or list(doc.roots) != roots:
            models._pop_freeze()  # outermost: walks
        else:
            models._freeze_count -= 1


class TabView(pn.viewable.Viewer):
    """A tab bound to the controller's results. Subclasses list their `slots` and implement
    `draw(results)`; a view draws when its tab is shown and its results or settings changed."""

    results = param.ClassSelector(class_=Results, allow_None=True, doc="what the tab shows")
    active = param.Boolean(default=False, doc="the tab is shown (hidden tabs draw when shown)")

    slots: tuple[str, ...] = ()
    # slots updated in place (the others get a new figure per update, inside the view's
    # Column): in-place updates left WebGL glyphs empty or failing ("Size mismatch") in
    # Chromium when the number of points or layers changed
    in_place: tuple[str, ...] = ()

    def __init__(self, header: list | None = None, **params):
        super().__init__(**params)
        self.slot = {name: PlotSlot(name, in_place=name in self.in_place)
                     for name in self.slots}
        self.note = pn.pane.Markdown("", visible=False, css_classes=["sv-tab-note"],
                                     sizing_mode="stretch_width", margin=(0, 10))
        self._layout = pn.Column(*(header or []), self.note,
                                 *(s.box for s in self.slot.values()),
                                 sizing_mode="stretch_width")
        self._drawn: tuple | None = None
        self._frozen: contextlib.ExitStack | None = None  # during a draw, until the first plot
        self.param.watch(self._refresh, ["results", "active", *self._view_params()])

    def _view_params(self) -> list[str]:
        """Display settings of this view (not results) that also redraw it."""
        own = set(self.param) - set(TabView.param)
        return sorted(own)

    def _refresh(self, *events) -> None:
        if not self.active or self.results is None:
            return
        own = tuple(getattr(self, p) for p in self._view_params())
        if self._drawn is not None and self._drawn[0] is self.results and self._drawn[1] == own:
            return  # already showing these results
        self._drawn = (self.results, own)
        stack = self._frozen = contextlib.ExitStack()
        try:
            with stack:
                self.draw(self.results)
        finally:
            self._frozen = None

    def _freeze_models(self) -> None:
        """Each plot's update ends by recomputing the served page's set of Bokeh models (a walk
        over every model, 0.05-0.1 s): frozen from the first plot drawn, a tab's plots share
        one recompute, which only happens if a plot changed which models the page holds."""
        stack, self._frozen = self._frozen, None  # once per draw
        doc = pn.state.curdoc
        if stack is not None and doc is not None:
            stack.enter_context(models_frozen(doc))

    def set_note(self, text: str) -> None:
        self.note.object = text
        self.note.visible = bool(text)

    def draw(self, res: Results) -> None:
        raise NotImplementedError

    def show_spec(self, spec, res, options: dict) -> None:
        """Draw one registry entry (`PlotSpec`) into its slot, unless it shows what it would
        be made from already (`PlotSpec.reads`); an entry that fails becomes a message in its
        slot rather than taking the tab down."""
        slot = self.slot[spec.name]
        reads = None if spec.reads is None else (spec.reads(res), tuple(sorted(options.items())))
        if reads is not None and same_reads(reads, slot.drawn_from):
            return  # the page would get the same figure again (and redraw it)
        try:
            obj = spec.create(res, **options)
        except Exception as exc:
            log.exception("plot %s failed", spec.name)
            obj = empty(f"{spec.name}: {type(exc).__name__}: {exc}")
            reads = None
        self._freeze_models()
        slot.show(obj)
        slot.drawn_from = reads

    def __panel__(self):
        return self._layout
