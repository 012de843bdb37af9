"""The app's shared store (`synthviz.app.store`): what it keeps, and how it keeps it."""

from __future__ import annotations

import gc

from synthviz.app.store import Store


def test_a_loaded_source_leaves_the_collectors_full_passes(small_source):
    # a full pass over the served app's objects took 0.5 s and stalled page updates at random:
    # a loaded source (and everything alive then) is frozen out of those passes
    gc.unfreeze()
    try:
        model = Store().source(small_source, "cpu")
        children = model.forest.children
        assert gc.is_tracked(children)
        assert gc.get_freeze_count() > 0
        assert not any(o is children for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
