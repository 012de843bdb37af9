"""`SessionLoop`: runs page updates where they may touch Panel objects, i.e. on the browser
session's event loop. Worker threads compute; they hand what to show to `dispatch`.

Updates from a worker are held back until the session is live (its page has loaded): Bokeh
builds a served session from the document after the app script returns, and a next-tick
callback added from another thread while it does so can be lost (or break the session's
creation: it iterates the document's callbacks while the worker adds one). A cached model's
first results arrive within milliseconds, i.e. exactly then, so a page could wait forever.
"""

from __future__ import annotations

import logging
import threading

import panel as pn
from panel.io.state import set_curdoc

log = logging.getLogger(__name__)


class SessionLoop:
    """The event loop of the session being built (none in a notebook or a test)."""

    def __init__(self):
        self.doc = pn.state.curdoc if (pn.state.curdoc and pn.state.curdoc.session_context) \
            else None
        self.thread = threading.get_ident()
        self._lock = threading.Lock()
        self._held: list = []  # updates from workers before the session is live, in order
        self._live = self.doc is None
        if self.doc is not None:
            pn.state.onload(self._go_live)

    def dispatch(self, fn) -> None:
        """Run `fn` where it may touch Panel objects: directly on the session's own thread (or
        with no server), else as a next-tick callback under the document lock (held back until
        the session is live). Next-tick callbacks run in order, so a later status never lands
        before an earlier one."""
        doc = self.doc
        if doc is None or threading.get_ident() == self.thread:
            fn()
            return
        if not doc.session_context:
            return  # the browser session has closed
        with self._lock:
            if not self._live:
                self._held.append(fn)
                return

        try:
            doc.add_next_tick_callback(self._on_doc(fn))
        except Exception as exc:  # the session is gone
            log.debug("page update dropped: %s", exc)

    def _go_live(self) -> None:
        """The page has loaded (on the session's loop): apply what was held back, in order."""
        with self._lock:
            self._live = True
            held, self._held = self._held, []
        for fn in held:
            self._run(fn)

    def later(self, seconds: float, fn) -> None:
        """Run `fn` on the session's loop after `seconds` (call it from the loop)."""
        doc = self.doc
        if doc is None:
            timer = threading.Timer(seconds, fn)
            timer.daemon = True
            timer.start()
            return
        if not doc.session_context:
            return
        try:
            doc.add_timeout_callback(self._on_doc(fn), int(seconds * 1000))
        except Exception as exc:  # the session is gone
            log.debug("page update dropped: %s", exc)

    def _on_doc(self, fn):
        """`fn` as a document callback: run with the session's document current."""
        doc = self.doc

        def cb():
            with set_curdoc(doc):
                self._run(fn)
        return cb

    @staticmethod
    def _run(fn) -> None:
        try:
            fn()
        except Exception:  # a failed redraw is logged; the page keeps the last plots
            log.exception("page update failed")


class PaintAck:
    """Tells the server when the browser has painted an update. `expect(n)` (inside the update)
    sends n to the page; the page echoes it back after its next frame, and `on_painted(n)` runs
    on the session's loop. The worker waits for that before it samples on: on a shared machine
    sampling and the browser's drawing of a first look compete for the same cores."""

    def __init__(self, on_painted):
        self._on_painted = on_painted
        self.sent = pn.widgets.IntInput(value=0, visible=False, css_classes=["sv-ack-sent"])
        self.seen = pn.widgets.IntInput(value=0, visible=False, css_classes=["sv-ack-seen"])
        # two frames: the patch is applied when the message arrives, painted in the next frame
        self.sent.jscallback(value="requestAnimationFrame(() => requestAnimationFrame(() => "
                                   "{ seen.value = cb_obj.value }))", args={"seen": self.seen})
        self.seen.param.watch(lambda e: self._on_painted(e.new), ["value"])

    def expect(self, n: int) -> None:
        self.sent.value = n

    @property
    def widgets(self) -> list:
        return [self.sent, self.seen]
