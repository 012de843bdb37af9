"""The ordered family registry: it alone makes the `Variation` fields, their order of
application and the CLI flags, so a new family is one module plus one registration. And the
typed `Provenance` record that variations write."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from synthviz.cli import build_parser, variation_from_args
from synthviz.errors import ConfigError
from synthviz.provenance import Provenance
from synthviz.variations import FAMILIES, Family, Setting, Variation, family


def test_registry_order_is_the_field_order_and_the_application_order():
    assert [f.name for f in FAMILIES] == ["seed", "hidden_dim", "num_features", "hierarchy",
                                          "std", "target_l0", "rel_p"]
    assert [f.name for f in dataclasses.fields(Variation)] == [
        s.name for fam in FAMILIES for s in fam.settings]
    v = Variation(seed=3, std=0.5, rel_p=2.0, num_features=100)
    assert [p.to_dict() for p in v.parts()] == [{"seed": 3}, {"num_features": 100}, {"std": 0.5},
                                                {"rel_p": 2.0}]
    assert v.sets("std") and not v.sets("hierarchy") and family("std").is_set(v)


@pytest.mark.parametrize("command", ["stats", "export", "sae-eval"])
def test_every_registered_setting_has_a_cli_flag(command):
    extra = {"stats": [], "export": ["--out", "x"], "sae-eval": ["sae"]}[command]
    values = {"seed": "5", "hidden_dim": "64", "num_features": "100", "roots": "4",
              "branching": "2-3", "depth": "2", "me_portion": "0.5", "me_min_depth": "1",
              "me_max_depth": "2", "std": "0.25", "target_l0": "20", "target_l0_first_k": "10",
              "first_k": "50"}
    argv = [command, "base", *extra]
    for fam in FAMILIES:
        for s in fam.settings:
            if fam.name == "rel_p":
                continue  # excludes target_l0; checked alone below
            flag = "--model-seed" if (s.name == "seed" and command == "sae-eval") else s.cli_flag
            argv += [flag] if s.switch else [flag, values[s.name]]
    v = variation_from_args(build_parser().parse_args(argv))
    assert v == Variation(seed=5, hidden_dim=64, num_features=100, roots=4, branching=(2, 3),
                          depth=2, me_portion=0.5, me_min_depth=1, me_max_depth=2,
                          compensate=False, rescale=False, std=0.25, target_l0=20.0,
                          target_l0_first_k=10.0, first_k=50)
    one = variation_from_args(build_parser().parse_args([command, "base", *extra, "--rel-p", "2"]))
    assert one == Variation(rel_p=2.0)


class _BiasScale(Family):
    """A family defined only here: the bias times k."""
    name = "bias_scale"
    settings = (Setting("bias_scale", "float | None", "multiply the bias by k", parse=float),)

    def check(self, v, set_):
        if v.bias_scale is not None and v.bias_scale <= 0:
            raise ConfigError("variation bias_scale must be positive")

    def apply(self, model, v, progress=None):
        return model.replace(bias=model.bias * v.bias_scale)

    def describe(self, v):
        return f"bias x {v.bias_scale:g}"


def test_a_new_family_is_one_module_and_one_registration(small_model, monkeypatch):
    import synthviz.variations as package
    from synthviz.variations import value

    families = FAMILIES[:4] + (_BiasScale(),) + FAMILIES[4:]
    monkeypatch.setattr(value, "FAMILIES", families)  # the one registration
    monkeypatch.setattr(package, "FAMILIES", families)
    NewVariation = value._make()
    v = NewVariation(bias_scale=2.0, std=0.0)
    assert [f.name for f in dataclasses.fields(v)][10:13] == ["rescale", "bias_scale", "std"]
    assert v.describe() == "bias x 2; constant firing-magnitude std 0"
    assert v.to_dict() == {"bias_scale": 2.0, "std": 0.0}
    with pytest.raises(ConfigError, match="bias_scale must be positive"):
        NewVariation(bias_scale=-1.0)
    out = v.apply(small_model)
    assert torch.equal(out.bias, small_model.bias * 2)
    assert out.provenance.variation == {"bias_scale": 2.0, "std": 0.0}
    # the CLI's flags come from the registry: the new one needs no edit in cli.py
    args = build_parser().parse_args(["stats", "base", "--bias-scale", "3"])
    assert args.bias_scale == 3.0


def test_provenance_is_typed_and_round_trips():
    p = Provenance(source="folder", preset="rel-p-0.5", variation={"rel_p": 0.5},
                   preset_variation={"rel_p": 0.5}, probabilities_clamped=3)
    assert p.to_dict() == {"source": "folder", "preset": "rel-p-0.5",
                           "preset_variation": {"rel_p": 0.5}, "variation": {"rel_p": 0.5},
                           "probabilities_clamped": 3}
    assert Provenance.from_dict(p.to_dict()) == p and Provenance.from_dict(None) == Provenance()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.source = "x"
    with pytest.raises(ConfigError, match="unknown field"):
        Provenance.from_dict({"sauce": 1})
    assert p.derived(rel_p=2.0).source is None and p.derived().preset == "rel-p-0.5"
    assert p.exact_preset() == "rel-p-0.5" and p.model_name() == "preset rel-p-0.5"
    varied = p.replace(variation={"rel_p": 0.5, "std": 0.0}, variation_words="x")
    assert varied.exact_preset() is None
    assert varied.model_name() == "preset rel-p-0.5, varied: x"
    assert Provenance(rel_p_clamped=0, probabilities_clamped=5).clamped == 0
    assert Provenance(probabilities_clamped=5).clamped == 5 and Provenance().clamped == 0


def test_a_variation_records_the_whole_change_from_its_base(small_model):
    once = Variation(std=0.0).apply(small_model)
    twice = Variation(rel_p=0.5).apply(once)
    assert twice.provenance.variation == {"std": 0.0, "rel_p": 0.5}
    assert twice.provenance.base == small_model.provenance.base_label() == once.provenance.base
    assert twice.provenance.source is None and twice.provenance.rel_p == 0.5
    assert small_model.provenance.variation is None  # the source's record is untouched
