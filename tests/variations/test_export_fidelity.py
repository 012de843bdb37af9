"""Issue 12.1: an export samples alike in sae_lens, on `load_from_disk` and after `.to()`.

sae_lens regenerates the firing probabilities (compensated for the stored hierarchy) and the
magnitudes from the config: on load for the copula thresholds, after `.to()` for everything. So
an export is exact only when the written config regenerates the stored values; `export_check`
says whether it does, and `export_model` refuses otherwise unless asked. Small models (N=400).
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from synthviz.config import ModelConfig
from synthviz.errors import SynthvizError
from synthviz.export import ExportCheck, export_check, export_model
from synthviz.model import build_model
from synthviz.variations import Variation
from tests.conftest import SMALL_CONFIG
from tests.stat_tools import bonferroni_z, two_sample_rate_z

sl_synth = pytest.importorskip("sae_lens.synthetic")

N, SAMPLES, Z = 400, 20_000, 5.0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHVIZ_CACHE", str(tmp_path / "cache"))


def _cfg(correlated=True, **changes) -> dict:
    d = copy.deepcopy(SMALL_CONFIG)
    d.update(num_features=N, hidden_dim=16, orthogonalization=None)
    d["hierarchy"] = dict(d["hierarchy"], total_root_nodes=12)
    if not correlated:
        d["correlation"] = None
    d.update(changes)
    return d


def _build(**kw):
    return build_model(ModelConfig.from_dict(_cfg(**kw)), device="cpu")


@pytest.fixture(scope="module")
def correlated():
    return _build()


@pytest.fixture(scope="module")
def uncorrelated():
    return _build(correlated=False)


def _thresholds(p: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2) * torch.erfinv(1 - 2 * p)  # what sae_lens computes from its regenerated p


def _our_counts(model, seed=1):
    _, rows, cols, _ = model.sample_entries(SAMPLES, seed=seed)
    per_row = torch.bincount(rows, minlength=SAMPLES).double()
    return torch.bincount(cols, minlength=model.num_features), per_row


def _their_counts(theirs, seed=2):
    torch.manual_seed(seed)
    acts = theirs.activation_generator.sample(SAMPLES)
    fired = acts > 0
    return fired.sum(0), fired.sum(1).double()


def _assert_same_law(model, theirs):
    ours, our_l0 = _our_counts(model)
    them, their_l0 = _their_counts(theirs)
    z = two_sample_rate_z(ours, SAMPLES, them, SAMPLES)
    assert float(z.abs().max()) < bonferroni_z(model.num_features), float(z.abs().max())
    se = math.hypot(float(our_l0.std()), float(their_l0.std())) / math.sqrt(SAMPLES)
    assert abs(float(our_l0.mean()) - float(their_l0.mean())) < Z * se


def _assert_sae_lens_samples_it(model, folder):
    """Stored == regenerated in sae_lens, and the same sampled law, before and after .to()."""
    theirs = sl_synth.SyntheticModel.load_from_disk(folder)
    gen = theirs.activation_generator
    p = model.firing_probabilities
    assert torch.equal(gen.firing_probabilities, p)
    assert torch.equal(gen.mean_firing_magnitudes, model.mean_magnitudes)
    assert torch.equal(gen.std_firing_magnitudes, model.std_magnitudes)
    if model.correlation_factor is not None:
        assert torch.equal(gen.correlation_thresholds, _thresholds(p))
    _assert_same_law(model, theirs)
    theirs.to("cpu")  # rebuilds the generator from the config
    gen = theirs.activation_generator
    assert torch.equal(gen.firing_probabilities, p)
    assert torch.equal(gen.mean_firing_magnitudes, model.mean_magnitudes)
    assert torch.equal(gen.std_firing_magnitudes, model.std_magnitudes)
    _assert_same_law(model, theirs)


def _me_cut(model) -> int:
    """A feature count that cuts a mutually exclusive group of `model` in two."""
    f = model.forest
    for q in sorted(f.me):
        kids = sorted(f.children[q])
        if len(kids) >= 3 and kids[-1] + 1 < model.num_features:
            return kids[1] + 1  # keeps two of the group's children
    raise AssertionError("no ME group to cut")


CASES = {
    "as built": lambda m: m,
    "constant std": lambda m: Variation(std=2.5).apply(m),
    "new seed": lambda m: Variation(seed=11).apply(m),
    "custom hierarchy": lambda m: Variation(roots=20, branching=(2, 4), depth=2,
                                            me_portion=0.5).apply(m),
    "L0 target": lambda m: Variation(target_l0=6.0).apply(m),
    "rel p below saturation": lambda m: Variation(rel_p=1.5).apply(m),
    "truncation cutting an ME group": lambda m: Variation(num_features=_me_cut(m)).apply(m),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("kind", ["correlated", "uncorrelated"])
def test_exact_exports_sample_alike_in_sae_lens(kind, case, request, tmp_path, one_torch_thread):
    model = CASES[case](request.getfixturevalue(kind))
    check = export_check(model)
    assert isinstance(check, ExportCheck) and check.exact, check.message
    assert check.message.startswith("exact")
    folder = export_model(model, tmp_path / "m", samples=0)
    card = (folder / "README.md").read_text()
    assert "Warning" not in card and "authoritative" not in card
    _assert_sae_lens_samples_it(model, folder)


def test_truncation_cutting_an_me_group_is_what_sae_lens_regenerates(correlated):
    n = _me_cut(correlated)
    cut = Variation(num_features=n).apply(correlated)
    # sae_lens recompensates for the pruned forest: the full model's prefix differs there
    assert cut.provenance.truncation_probability_max_diff > 1e-3
    kept = sorted(cut.forest.children[cut.forest.parent[n - 1].item()])
    assert float((cut.firing_probabilities[kept] - correlated.firing_probabilities[kept]).abs()
                 .min()) > 1e-3
    assert export_check(cut).exact
    from synthviz.export import model_card
    card = model_card(cut, cut.cfg, {"rho_mm": 0.1})
    assert "compensated for the pruned hierarchy as sae_lens does" in card
    # elsewhere the values are the full model's, to the rounding of the regenerated Zipfian
    torch.testing.assert_close(cut.firing_probabilities[:12], correlated.firing_probabilities[:12],
                               atol=0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["correlated", "uncorrelated"])
def test_rel_p_above_saturation_is_refused_with_what_sae_lens_samples(kind, request, tmp_path,
                                                                      one_torch_thread):
    model = Variation(rel_p=3.0).apply(request.getfixturevalue(kind))
    check = export_check(model)
    assert not check.exact and "\n" not in check.message
    assert "relative p 3" in check.message and "k x max_prob > 1" in check.message
    claimed = float(check.message.split("expected L0 about ")[1].split()[0])
    with pytest.raises(SynthvizError, match="export refused.*--allow-inexact"):
        export_model(model, tmp_path / "no", samples=0)
    assert not (tmp_path / "no").exists()
    folder = export_model(model, tmp_path / "yes", samples=0, allow_inexact=True)
    card = (folder / "README.md").read_text()
    body = card.split("---\n", 2)[2].lstrip()
    assert body.startswith("> **Warning: sae_lens does not sample this model")
    assert check.message in body.splitlines()[0]
    assert '"exact": false' in card
    # sae_lens samples the config's unscaled probabilities, as the message says, not synthviz's
    theirs = sl_synth.SyntheticModel.load_from_disk(folder).to("cpu")
    _, their_l0 = _their_counts(theirs)
    _, our_l0 = _our_counts(model)
    assert abs(float(their_l0.mean()) / claimed - 1) < 0.1, (float(their_l0.mean()), claimed)
    assert float(our_l0.mean()) > 2 * float(their_l0.mean())


def test_rel_p_above_saturation_of_a_constant_generator_is_exact(tmp_path, one_torch_thread):
    """k x p > 1 for a constant generator: the clamped values are the constant 1."""
    model = Variation(rel_p=4.0).apply(_build(firing_probability={
        "generator_name": "constant", "probability": 0.3}))
    assert model.cfg.firing_probability.to_dict() == {"generator_name": "constant",
                                                      "probability": 1.0}
    assert model.provenance.rel_p_clamped >= N  # every 0.3 x 4 was clamped
    assert export_check(model).exact
    _assert_sae_lens_samples_it(model, export_model(model, tmp_path / "m", samples=0))


def test_cli_refuses_in_one_line_and_writes_when_asked(correlated, tmp_path, capsys):
    from synthviz.cli import main
    from synthviz.model_files import save_model

    src = save_model(correlated, tmp_path / "src")
    rc = main(["export", str(src), "--rel-p", "3", "--out", str(tmp_path / "a"), "--samples", "0",
               "--device", "cpu"])
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("synthviz: error:")]
    assert rc == 2 and len(errors) == 1 and "--allow-inexact" in errors[0]
    assert "Traceback" not in err and not (tmp_path / "a").exists()
    rc = main(["export", str(src), "--rel-p", "3", "--out", str(tmp_path / "a"), "--samples", "0",
               "--device", "cpu", "--allow-inexact"])
    assert rc == 0, capsys.readouterr().err
    assert "Warning" in (tmp_path / "a" / "README.md").read_text()


def test_a_stored_forest_without_a_config_hierarchy_exports_in_an_exact_form(correlated,
                                                                              tmp_path):
    """Compensated probabilities with no hierarchy entry in the config: the written config says
    compensation on, which regenerates them exactly."""
    from synthviz.io import load_folder
    from synthviz.model_files import save_model

    folder = save_model(correlated.replace(cfg=correlated.cfg.replace(hierarchy=None)),
                        tmp_path / "hand")
    loaded = load_folder(folder, device="cpu")
    assert loaded.cfg.hierarchy is None and loaded.forest is not None
    assert export_check(loaded).exact
    out = export_model(loaded, tmp_path / "out", samples=0)
    cfg = json.loads((out / "synthetic_model_config.json").read_text())
    assert cfg["hierarchy"]["compensate_probabilities"] is True
    _assert_sae_lens_samples_it(loaded, out)


def test_probabilities_no_config_regenerates_are_refused(uncorrelated, tmp_path):
    odd = uncorrelated.replace(firing_probabilities=uncorrelated.firing_probabilities * 0.9)
    check = export_check(odd)
    assert not check.exact
    assert "does not regenerate the stored firing probabilities" in check.message
    assert "instead of synthviz's" in check.message
    with pytest.raises(SynthvizError, match="export refused"):
        export_model(odd, tmp_path / "x", samples=0)
