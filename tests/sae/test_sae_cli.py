"""Issue 14: `synthviz sae-eval MODEL SAE [--samples N] [--seed S] [--json]`."""

from __future__ import annotations

import json

from tests.test_cli import synthviz

KEYS = {"true_l0", "sae_l0", "dead_latents", "shrinkage", "explained_variance", "mcc",
        "uniqueness", "classification", "absorption", "splitting", "n_samples"}


def test_sae_eval_json(sae_world, tmp_path):
    _, model, sae_dir = sae_world
    model.save(tmp_path / "m")
    res = synthviz("sae-eval", str(tmp_path / "m"), str(sae_dir), "--samples", "3000",
                   "--seed", "4", "--json", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert KEYS <= set(out)
    assert set(out["classification"]) == {"precision", "recall", "f1_score", "accuracy"}
    assert out["n_samples"] == 3000 and 0 < out["mcc"] <= 1
    # a variation flag, as `export` takes them: double the firing rates, so L0 grows
    res2 = synthviz("sae-eval", str(tmp_path / "m"), str(sae_dir), "--samples", "3000",
                    "--seed", "4", "--json", "--device", "cpu", "--rel-p", "2")
    assert res2.returncode == 0, res2.stderr
    out2 = json.loads(res2.stdout)
    assert out2["true_l0"] > 1.3 * out["true_l0"]
    assert out2["mcc"] == out["mcc"]  # same dictionary


def test_sae_eval_errors_one_line_status_2(sae_world, tmp_path):
    _, model, sae_dir = sae_world
    model.save(tmp_path / "m")
    bad = tmp_path / "nan"
    bad.mkdir()
    (bad / "cfg.json").write_text((sae_dir / "cfg.json").read_text().replace(
        '"jumprelu"', '"nonesuch"'))
    (bad / "sae_weights.safetensors").write_bytes((sae_dir / "sae_weights.safetensors")
                                                  .read_bytes())
    cases = [((str(tmp_path / "m"), str(tmp_path / "none") + "/"), "no such SAE"),
             (("tiny-test-nonexistent-preset", str(sae_dir)), "not a preset"),
             ((str(tmp_path / "m"), str(bad)), "unknown SAE architecture"),
             ((str(tmp_path / "m"), str(sae_dir), "--hidden-dim", "32"), "hidden dim is 32")]
    for args, words in cases:
        res = synthviz("sae-eval", *args, "--samples", "100", "--device", "cpu",
                       env={"HF_HUB_OFFLINE": "1"})
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("synthviz: error:") and words in last, last
