"""Issue 14: loading SAEs in sae_lens's format (every architecture, both loaders) and the
one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from synthviz.errors import SynthvizError
from synthviz.sae import SAEFileError, load_sae
from synthviz.sae import loading as loading_mod

sl = pytest.importorskip("sae_lens")

D_IN, D_SAE = 16, 48


def _training(kind):
    if kind == "standard":
        return sl.StandardTrainingSAE(sl.StandardTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE))
    if kind == "topk":
        return sl.TopKTrainingSAE(sl.TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    if kind == "batchtopk":
        return sl.BatchTopKTrainingSAE(sl.BatchTopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=5))
    if kind == "jumprelu":
        return sl.JumpReLUTrainingSAE(sl.JumpReLUTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE))
    return sl.MatryoshkaBatchTopKTrainingSAE(sl.MatryoshkaBatchTopKTrainingSAEConfig(
        d_in=D_IN, d_sae=D_SAE, k=5, matryoshka_widths=[12, D_SAE]))


KINDS = ("standard", "topk", "batchtopk", "jumprelu", "matryoshka")


def _perturbed(kind):
    """A training SAE with non-trivial weights (decoder norms != 1, thresholds > 0)."""
    torch.manual_seed(KINDS.index(kind))
    sae = _training(kind)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.add_(torch.randn_like(p) * 0.3)
        sae.W_dec.mul_(torch.rand(D_SAE, 1) + 0.5)
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold.fill_(0.2)
        if hasattr(sae, "log_threshold"):
            sae.log_threshold.fill_(-1.5)
    return sae


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("saes")
    out = {}
    for kind in KINDS:
        sae = _perturbed(kind)
        if kind in ("batchtopk", "matryoshka"):  # first: the inference save may fold in place
            sae.save_model(str(root / f"{kind}_training"))
            out[f"{kind}_training"] = root / f"{kind}_training"
        sae.save_inference_model(str(root / kind))
        out[kind] = root / kind
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_native_maths_equal_sae_lens(saved, kind):
    ours = load_sae(saved[kind])
    theirs = sl.SAE.load_from_disk(str(saved[kind]))
    assert ours.loader == "native" and ours.kind == kind
    x = torch.randn(200, D_IN) * 2
    a, b = ours.encode(x), theirs.encode(x)
    assert (a != 0).sum() > 0
    assert torch.equal(a != 0, b != 0)
    assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(ours.decode(a), theirs.decode(b), atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_save_roundtrip_reads_back_in_both(saved, kind, tmp_path):
    ours = load_sae(saved[kind])
    ours.save(tmp_path / "again")
    back = load_sae(tmp_path / "again")
    assert back.kind == kind and back.architecture == ours.architecture
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.equal(getattr(back, name), getattr(ours, name))
    theirs = sl.SAE.load_from_disk(str(tmp_path / "again"))
    x = torch.randn(50, D_IN)
    assert torch.allclose(theirs.encode(x), ours.encode(x), atol=1e-6)


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_training_saves_convert_like_the_inference_save(saved, kind):
    """A `save_model` folder (architecture batchtopk / matryoshka_batchtopk, which sae_lens's
    loader rejects) loads natively with the same maths as the inference save."""
    a = load_sae(saved[f"{kind}_training"])
    b = load_sae(saved[kind])
    assert a.kind == kind
    x = torch.randn(100, D_IN) * 2
    assert torch.allclose(a.encode(x), b.encode(x), atol=1e-5)


def test_sae_lens_loader_on_request_matches_native(saved):
    a = load_sae(saved["jumprelu"], loader="sae_lens")
    b = load_sae(saved["jumprelu"])
    assert a.loader == "sae_lens" and b.loader == "native"
    x = torch.randn(30, D_IN)
    assert torch.allclose(a.encode(x), b.encode(x))


def test_sae_lens_loader_used_for_what_native_cannot_do(saved, tmp_path):
    folder = tmp_path / "ln"
    shutil.copytree(saved["standard"], folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["normalize_activations"] = "layer_norm"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    sae = load_sae(folder)
    assert sae.loader == "sae_lens"
    x = torch.randn(10, D_IN)
    theirs = sl.SAE.load_from_disk(str(folder))
    assert torch.allclose(sae.decode(sae.encode(x)), theirs.decode(theirs.encode(x)))


# ---------------------------------------------------------------------------- bad input

def _copy(saved, tmp_path, kind="jumprelu"):
    folder = tmp_path / "bad"
    shutil.copytree(saved[kind], folder)
    return folder


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_no_such_sae(tmp_path):
    with pytest.raises(SAEFileError) as e:
        load_sae(str(tmp_path / "nope") + "/")
    _one_line(e, "no such SAE folder")
    with pytest.raises(SAEFileError) as e:
        load_sae("not an id at all")
    _one_line(e, "no such SAE")


def test_not_an_sae_folder(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    (folder / "cfg.json").unlink()
    with pytest.raises(SAEFileError) as e:
        load_sae(folder)
    _one_line(e, "cfg.json is missing")


def test_d_in_differs(saved):
    with pytest.raises(SAEFileError) as e:
        load_sae(saved["topk"], d_in=D_IN + 1)
    _one_line(e, f"d_in is {D_IN}", f"hidden dim is {D_IN + 1}")


def test_unknown_architecture(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["architecture"] = "hyperbolic"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEFileError) as e:
        load_sae(folder)
    _one_line(e, "unknown SAE architecture 'hyperbolic'")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "shape"])
def test_corrupt_weights(saved, tmp_path, damage):
    folder = _copy(saved, tmp_path)
    path = folder / "sae_weights.safetensors"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"\xff" * 64)
    else:
        t = load_file(str(path))
        t["W_dec"] = t["W_dec"][:-1]
        save_file(t, str(path))
    with pytest.raises(SAEFileError) as e:
        load_sae(folder)
    _one_line(e, "sae_weights.safetensors")


def test_nan_weights(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    path = folder / "sae_weights.safetensors"
    t = load_file(str(path))
    t["W_enc"][3, 4] = float("nan")
    save_file(t, str(path))
    with pytest.raises(SAEFileError) as e:
        load_sae(folder)
    _one_line(e, "'W_enc' contains NaN")


def test_sae_lens_missing_is_named(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(loading_mod, "sae_lens_available", lambda: False)
    with pytest.raises(SAEFileError) as e:
        load_sae(saved["jumprelu"], loader="sae_lens")
    _one_line(e, "sae_lens is not installed", "synthviz[sae]")
    folder = _copy(saved, tmp_path, "standard")
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["architecture"] = "gated"
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEFileError) as e:
        load_sae(folder)
    _one_line(e, "sae_lens is not installed", "gated")
    assert load_sae(saved["topk"]).loader == "native"  # the native path needs no sae_lens


def test_unreachable_hub_is_no_such_sae(tmp_path):
    code = ("import sys\nfrom synthviz.sae import load_sae\nfrom synthviz.errors import "
            "SynthvizError\ntry:\n    load_sae('someone/no-sae:w4096')\nexcept SynthvizError as e:"
            "\n    print(e)\n")
    import os
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert "no such SAE" in res.stdout and "someone/no-sae" in res.stdout, res.stdout


def test_hub_id_loads_from_the_cache_offline(saved, tmp_path):
    import os

    from tests.test_hub_offline import populate_hf_cache
    populate_hf_cache(tmp_path / "hub", "someone/saes", saved["topk"], "topk-48")
    code = ("from synthviz.sae import load_sae\ns = load_sae('someone/saes:topk-48')\n"
            "print(s.kind, s.d_sae)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"),
                              "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["topk", str(D_SAE)]


def test_errors_are_synthviz_errors():
    assert issubclass(SAEFileError, SynthvizError)
