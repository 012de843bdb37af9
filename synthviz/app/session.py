"""`SessionLoop`: runs page updates where they may touch Panel objects, i.e. on the browser
session's event loop. Worker threads compute; they hand what to show to `dispatch`."""

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

    def dispatch(self, fn) -> None:
        """Run `fn` where it may touch Panel objects: directly on the session's own thread (or
        with no server), else as a next-tick callback under the document lock. Next-tick
        callbacks run in order, so a later status never lands before an earlier one."""
        doc = self.doc
        if doc is None or threading.get_ident() == self.thread:
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
