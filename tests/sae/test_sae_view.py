"""Issue 14: the SAE tab as a Python object (no browser): evaluation on a thread, the cache,
cancelling, errors on the page, and the allowed root."""

from __future__ import annotations

import shutil

import holoviews as hv
import pytest
from safetensors.torch import load_file, save_file

from synthviz.app.sae_tab import SAEView, list_sae_folders, resolve_in_root
from synthviz.errors import SynthvizError
from synthviz.variations import Variation

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def root(sae_world, tmp_path):
    _, _, sae_dir = sae_world
    shutil.copytree(sae_dir, tmp_path / "toy")
    bad = tmp_path / "group" / "nan"
    shutil.copytree(sae_dir, bad)
    t = load_file(str(bad / "sae_weights.safetensors"))
    t["W_dec"][0, 0] = float("nan")
    save_file(t, str(bad / "sae_weights.safetensors"))
    return tmp_path


def _run(view):
    t = view.run()
    if t is not None:
        t.join(timeout=300)
        assert not t.is_alive()


def test_evaluates_with_base_comparison_and_caches(sae_world, root):
    _, model, _ = sae_world
    shifted = Variation(rel_p=2.0).apply(model)
    view = SAEView(root=root, model=shifted, base=model, samples=3000)
    assert [o for o in view.param.sae_folder.objects if o] == ["group/nan", "toy"]
    view.sae_folder = "toy"
    _run(view)
    assert view.alert.visible is False, view.alert.object
    res = view.results
    assert set(res.by_model()) == {"current", "base"} and res.sae_name == "toy"
    assert res.current.true_l0 > 1.3 * res.base.true_l0  # rel_p 2 doubles the rates
    assert res.current.mcc == res.base.mcc
    assert res.forest is shifted.forest and res.samples == 3000
    assert len(view.cards.objects) == 8 and "MCC" in view.cards.objects[0].object
    assert list(view.plots.slot) == ["sae_recovery", "sae_tree", "sae_cosine"]
    for slot in view.plots.slot.values():
        assert slot.box.visible and not isinstance(slot.pane.object, hv.Text), slot.pane.object
        hv.render(slot.pane.object, backend="bokeh")
    assert "| mcc |" in view.table.object
    first = view.results
    assert view.run() is None  # the same job again: from the cache, no thread
    assert view.results is first and view.status == "from cache"
    view.metric = "recall"  # redraws from the stored results
    rec = view.plots.slot["sae_recovery"].pane.object
    assert rec.get(0).kdims[1].name == "recall"
    hv.render(rec, backend="bokeh")
    view.__panel__()


def test_errors_are_shown_and_the_view_stays_usable(sae_world, root):
    _, model, _ = sae_world
    view = SAEView(root=root, model=model, samples=2000, compare_base=False)
    view.sae_folder = "group/nan"
    _run(view)
    assert view.alert.visible and "contains NaN" in view.alert.object
    assert not view.busy and not view.run_button.disabled
    view.sae_folder = "toy"
    _run(view)
    assert not view.alert.visible and view.results.current.n_samples == 2000
    wrong = Variation(hidden_dim=32).apply(model)
    view.model = wrong
    assert "the model changed" in view.status
    view.metric = "recall"  # a redraw of the old results uses their own model's trees
    tree = view.plots.slot["sae_tree"].pane.object
    assert not isinstance(tree, hv.Text) and "recall" in tree.opts.get().kwargs["title"]
    hv.render(tree, backend="bokeh")
    _run(view)
    assert "hidden dim is 32" in view.alert.object


def test_cancel_stops_the_work(sae_world, root):
    _, model, _ = sae_world
    view = SAEView(root=root, model=model, samples=400_000, compare_base=False)
    view.sae_folder = "toy"
    t = view.run()
    view.cancel()
    t.join(timeout=120)
    assert view.status == "cancelled" and not view.busy and view.results is None


def test_root_is_enforced(root, tmp_path_factory):
    with pytest.raises(SynthvizError):
        resolve_in_root(root, "../elsewhere")
    outside = tmp_path_factory.mktemp("outside")
    (root / "link").symlink_to(outside)
    with pytest.raises(SynthvizError):
        resolve_in_root(root, "link")
    assert list_sae_folders(root / "missing") == []
    view = SAEView(root=root / "missing")
    assert view.sae_folder is None and "no SAE folders" in view.alert.object
    _run(view)
    assert "no model loaded" in view.alert.object
