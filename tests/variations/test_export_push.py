"""Issue 4, export and push: the model card, safe export names, refusing non-empty folders, and
`synthviz push` against a recording stand-in for the Hub client (no network, no token leaks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from synthviz.errors import ConfigError, HubError, ModelFileError, SynthvizError
from synthviz.export import export_model, push_folder, safe_export_path
from synthviz.variations import Variation

FAKE_TOKEN = "hf_FakeTokenForSynthvizTests0123456789"
MODEL_FILES = {"synthetic_model_config.json", "synthetic_model.safetensors", "hierarchy.json",
               "README.md"}


class RecordingHub:
    """Stands in for huggingface_hub.HfApi: records calls and snapshots the uploaded files."""

    def __init__(self, fail_with: Exception | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}
        self.fail_with = fail_with

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        if self.fail_with is not None:
            raise self.fail_with
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        folder = Path(kwargs["folder_path"])
        self.uploaded = {p.name: p.read_bytes() for p in folder.iterdir()}
        return "commit"


def _card_stats(folder: Path) -> dict:
    head = (folder / "README.md").read_text().split("---")[1]
    line = next(x for x in head.splitlines() if x.startswith("synthviz: "))
    return json.loads(line[len("synthviz: "):])


@pytest.fixture(scope="module")
def exported(small_model, tmp_path_factory):
    model = Variation(rel_p=0.5, std=0.2).apply(small_model)
    model.provenance = model.provenance.replace(preset="small-test")
    return model, export_model(model, tmp_path_factory.mktemp("exp") / "m", samples=3000)


def test_model_card_has_front_matter_words_numbers_and_snippet(exported):
    model, folder = exported
    assert {p.name for p in folder.iterdir()} == MODEL_FILES
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: saelens\n")
    assert "base firing probabilities x 0.5" in card and "constant firing-magnitude std 0.2" in card
    assert "**Base**:" in card
    stats = _card_stats(folder)
    assert stats["samples"] == 3000 and stats["num_features"] == 2048
    assert stats["variation"] == {"std": 0.2, "rel_p": 0.5}
    from synthviz.l0_target import measure_l0
    from synthviz.stats.summary import rho_mm

    m = measure_l0(model, 3000, seed=0)
    assert stats["l0"] == m["l0"] and stats["l0_first_k"] == m["l0_first_k"]
    assert abs(stats["rho_mm"] - rho_mm(model.feature_vectors)) < 1e-6
    assert f"| L0 (active features per sample) | {m['l0']:.3f}" in card
    assert "first-4096 L0" in card and "rho_mm" in card
    assert "from sae_lens.synthetic import SyntheticModel" in card
    assert "SyntheticModel.load_from_disk(" in card and "SyntheticModel.from_pretrained(" in card


def test_export_loads_in_sae_lens(exported):
    sl = pytest.importorskip("sae_lens.synthetic")
    model, folder = exported
    theirs = sl.SyntheticModel.load_from_disk(folder)
    gen = theirs.activation_generator
    assert torch.equal(theirs.feature_dict.feature_vectors.data, model.feature_vectors)
    assert torch.equal(gen.firing_probabilities, model.firing_probabilities)
    assert torch.equal(gen.std_firing_magnitudes, model.std_magnitudes)
    assert torch.equal(gen.mean_firing_magnitudes, model.mean_magnitudes)
    assert theirs.hierarchy.to_dict() == model.forest.to_dict()


def test_export_refuses_non_empty_folder_unless_forced(small_model, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(SynthvizError, match="is not empty"):
        export_model(small_model, target, samples=0)
    assert (target / "notes.txt").read_text() == "mine"
    first = export_model(small_model, tmp_path / "again", samples=0)
    replaced = export_model(Variation(std=0.0).apply(small_model), first, force=True, samples=0)
    cfg = json.loads((replaced / "synthetic_model_config.json").read_text())
    assert cfg["std_firing_magnitudes"] == 0.0


def test_export_refuses_an_untruthful_config(small_model, tmp_path):
    # magnitudes that the config would not regenerate cannot be exported truthfully
    odd = small_model.replace(std_magnitudes=small_model.std_magnitudes * 2)
    with pytest.raises(SynthvizError, match="export refused, not exact: the config's std"):
        export_model(odd, tmp_path / "x", samples=0)
    assert not (tmp_path / "x").exists()
    # written on request, the card says so first
    card = (export_model(odd, tmp_path / "x", samples=0, allow_inexact=True) / "README.md")
    assert card.read_text().split("---\n", 2)[2].lstrip().startswith("> **Warning")


@pytest.mark.parametrize("name", ["..", ".", "/etc", "a/b", "a\\b", "", "~root", "c:x", "a\0b"])
def test_safe_export_path_rejects_escapes(tmp_path, name):
    with pytest.raises(ConfigError):
        safe_export_path(tmp_path, name)


def test_safe_export_path_accepts_plain_names(tmp_path):
    assert safe_export_path(tmp_path, "rel-p-0.5") == tmp_path.resolve() / "rel-p-0.5"


def test_cli_push_through_the_stand_in(exported, monkeypatch, capsys, caplog):
    import synthviz.export
    from synthviz.cli import main

    _, folder = exported
    hub = RecordingHub()
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    monkeypatch.setattr(synthviz.export, "_hf_api", lambda: hub)
    caplog.set_level(logging.DEBUG)
    rc = main(["push", str(folder), "--repo-id", "someone/synth-variants", "--path",
               "rel-p-0.5", "--private"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out.strip() == "https://huggingface.co/someone/synth-variants/tree/main/rel-p-0.5"
    (c1, k1), (c2, k2) = hub.calls
    assert c1 == "create_repo" and k1["repo_id"] == "someone/synth-variants"
    assert k1["private"] is True and k1["exist_ok"] is True
    assert c2 == "upload_folder" and k2["repo_id"] == "someone/synth-variants"
    assert k2["path_in_repo"] == "rel-p-0.5" and k2["repo_type"] == "model"
    assert set(hub.uploaded) == MODEL_FILES
    for name in MODEL_FILES - {"README.md"}:
        assert hub.uploaded[name] == (folder / name).read_bytes(), name
    card = hub.uploaded["README.md"].decode()
    assert ('SyntheticModel.from_pretrained("someone/synth-variants", model_path="rel-p-0.5")'
            in card)
    everything = [out.out, out.err, caplog.text, *(b.decode("latin-1") for b in hub.uploaded.values()),
                  *(p.read_text("latin-1") for p in folder.iterdir())]
    assert not any(FAKE_TOKEN in text for text in everything)


def test_push_to_the_repo_root_and_errors(exported, monkeypatch, capsys):
    import synthviz.export
    from synthviz.cli import main

    _, folder = exported
    hub = RecordingHub()
    assert push_folder(folder, "someone/x", api=hub) == "https://huggingface.co/someone/x"
    assert "path_in_repo" not in hub.calls[1][1] and hub.calls[0][1]["private"] is False
    assert 'SyntheticModel.from_pretrained("someone/x")' in hub.uploaded["README.md"].decode()
    # a failing Hub: one line, the token scrubbed even if the client echoed it
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    failing = RecordingHub(fail_with=RuntimeError(f"401 Unauthorized for token {FAKE_TOKEN}"))
    monkeypatch.setattr(synthviz.export, "_hf_api", lambda: failing)
    rc = main(["push", str(folder), "--repo-id", "someone/x"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("synthviz: error: upload to someone/x failed")
    assert "hf auth login" in err and FAKE_TOKEN not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(HubError):
        push_folder(folder, "someone/x", api=failing)
    for bad in ("noslash", "a/b/c", "../x", "a/.."):
        with pytest.raises(ConfigError, match="invalid repo id"):
            push_folder(folder, bad, api=hub)
    for bad in ("../up", "a/../b", "a\\b"):
        with pytest.raises(ConfigError, match="invalid path in repo"):
            push_folder(folder, "someone/x", path_in_repo=bad, api=hub)
    with pytest.raises(ModelFileError, match="no such folder"):
        push_folder(folder.parent / "missing", "someone/x", api=hub)


def test_cli_export_of_a_folder_with_variation_flags(sae_lens_small, tmp_path, capsys):
    sl = pytest.importorskip("sae_lens.synthetic")
    from synthviz.cli import main

    _, source = sae_lens_small
    out = tmp_path / "exports" / "half"
    rc = main(["export", str(source), "--rel-p", "0.5", "--std", "0", "--num-features", "1024",
               "--out", str(out), "--samples", "1000", "--device", "cpu"])
    res = capsys.readouterr()
    assert rc == 0, res.err
    assert res.out.strip() == str(out.absolute())
    card = (out / "README.md").read_text()
    assert str(source) in card  # the base, named by where it came from
    assert "truncated to the first 1024 features" in card and "x 0.5" in card
    theirs = sl.SyntheticModel.load_from_disk(out)
    assert theirs.cfg.num_features == 1024 and theirs.cfg.std_firing_magnitudes == 0.0
    assert torch.equal(theirs.activation_generator.std_firing_magnitudes, torch.zeros(1024))
    # a second export to the same folder is refused with one line, not a traceback
    rc = main(["export", str(source), "--out", str(out), "--samples", "0"])
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("synthviz: error:")]
    assert rc == 2 and len(errors) == 1 and "is not empty" in errors[0]
    assert "Traceback" not in err


def _card(folder: Path) -> tuple[str, dict]:
    title = next(x for x in (folder / "README.md").read_text().splitlines() if x.startswith("# "))
    return title, _card_stats(folder)


def test_card_names_the_exported_model_and_both_seeds(small_model, tmp_path, monkeypatch,
                                                      capsys):
    """Issue 11: the card named a varied base "variation: base" and called the sampling seed the
    seed. The small model stands in for the 16k base so that presets resolve quickly."""
    from synthviz import presets
    from synthviz.cli import main

    base = small_model.replace()
    base.provenance = base.provenance.replace(preset="base")
    monkeypatch.setattr(presets, "_base_model", lambda device, progress: base.replace())
    monkeypatch.setitem(presets.PRESETS, "hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25", presets.Preset(
        "hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25", "misc", "stand-in",
        Variation(roots=4, branching=2, depth=3, me_portion=1.0)))

    # Python API: the base varied by relative p is not the preset "base"
    varied = Variation(rel_p=0.5).apply(presets.load_preset("base"))
    title, meta = _card(export_model(varied, tmp_path / "api", samples=200, seed=5))
    assert "base" in title and "x 0.5" in title and title != "# SynthSAEBench variation: base"
    assert meta["preset"] is None and meta["base"] == "preset base"
    assert meta["model"] == "preset base, varied: base firing probabilities x 0.5"
    assert (meta["model_seed"], meta["sample_seed"]) == (small_model.cfg.seed, 5)
    assert "seed" not in meta

    # the CLI: a preset by name is that preset; a flag on top of it is a variation of it
    for name, extra, want_title, want_preset in [
            ("rel-p-0.5", [], "# SynthSAEBench preset: rel-p-0.5", "rel-p-0.5"),
            ("hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25", [],
             "# SynthSAEBench preset: hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25",
             "hierarchy-128-2-6l-me-1.0-l0-34-4kl0-25"),
            ("rel-p-0.5", ["--std", "0"], None, None)]:
        out = tmp_path / f"cli-{len(extra)}-{name[:5]}"
        rc = main(["export", name, *extra, "--out", str(out), "--samples", "100",
                   "--device", "cpu"])
        assert rc == 0, capsys.readouterr().err
        title, meta = _card(out)
        assert meta["preset"] == want_preset and meta["model_seed"] == small_model.cfg.seed
        assert meta["sample_seed"] == 0
        if want_title:
            assert title == want_title
        else:
            assert "preset base" in title and "std 0" in title and "x 0.5" in title, title
