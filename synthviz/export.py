"""Export a model in the sae_lens Hub format with a model card, and push a folder to the Hub.

`export_model` writes `synthetic_model_config.json`, `synthetic_model.safetensors`,
`hierarchy.json` and a `README.md` model card, atomically. The config must be truthful: sae_lens
regenerates the per-feature magnitudes and (on load for the copula thresholds, and after `.to()`
for everything) the compensated firing probabilities from it, so `export_check` tells whether
the written config regenerates exactly what synthviz uses, and the export refuses a model where
it does not unless asked (`allow_inexact`). It writes a hierarchy config that describes the
stored forest.

`push_folder` uploads through `huggingface_hub.HfApi` with the user's normal login (cached token
or HF_TOKEN). synthviz never reads, prints or writes the token; error messages are scrubbed of
anything that looks like one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from synthviz import model_files
from synthviz.cache import atomic_write_folder
from synthviz.config import ModelConfig
from synthviz.model_files import CONFIG_FILE, MODEL_FILES, WEIGHTS_FILE
from synthviz.errors import ConfigError, HubError, ModelFileError, Progress, SynthvizError
from synthviz.fidelity import (ExportCheck, checked_structural_config, exact_config,  # noqa: F401
                               export_check, magnitude_mismatch,
                               written_config)
from synthviz.generators import spec_words
from synthviz.model import SynthModel

log = logging.getLogger(__name__)
CARD_FILE = "README.md"
HUB_PLACEHOLDER = "<owner>/<repo>"
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------- paths

def safe_export_path(root: str | Path, name: str) -> Path:
    """root/name for a user-given export name; rejects anything that could leave `root`."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError("export name must be a non-empty string")
    name = name.strip()
    if (name in (".", "..") or "/" in name or "\\" in name or "\0" in name
            or name.startswith("~") or Path(name).is_absolute() or ":" in name):
        raise ConfigError(f"export name {name!r} must be a plain folder name (no '..', no "
                          "absolute path, no path separators)")
    base = Path(root).expanduser().resolve()
    target = (base / name).resolve()
    if target.parent != base:
        raise ConfigError(f"export name {name!r} escapes the export folder {base}")
    return target


# ---------------------------------------------------------------------------- truthful config

def export_config(model: SynthModel) -> ModelConfig:
    """The config to write; raises SynthvizError if it would not reproduce `model` in sae_lens
    (magnitudes or firing probabilities; see `export_check`)."""
    cfg = checked_structural_config(model)
    reason = magnitude_mismatch(model, cfg)
    if reason is not None:
        raise SynthvizError(f"cannot export truthfully: {reason}")
    exact = exact_config(model, cfg)
    if exact is None:
        raise SynthvizError(f"cannot export truthfully: {export_check(model).message}")
    return exact


# ---------------------------------------------------------------------------- measuring

def _vectors_digest(vectors: torch.Tensor) -> str:
    data = vectors.detach().float().cpu().contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()


def cached_rho_mm(vectors: torch.Tensor) -> float:
    """rho_mm (mean over features of the largest |cos| with another), disk-cached by content."""
    from synthviz.cache import model_cache_dir, write_cache_json
    from synthviz.stats.summary import rho_mm

    path = model_cache_dir({"rho_mm": 1, "vectors": _vectors_digest(vectors)}) / "rho_mm.json"
    try:
        return float(json.loads(path.read_text())["rho_mm"])
    except (OSError, ValueError, KeyError):
        pass
    value = rho_mm(vectors)
    try:
        write_cache_json(path, {"rho_mm": value})
    except OSError as exc:
        log.warning("could not cache rho_mm at %s: %s", path, exc)
    return value


def measure(model: SynthModel, samples: int, seed: int = 0, first_k: int = 4096,
            progress: Progress | None = None) -> dict[str, Any]:
    """The model card's numbers: sampled L0 and first-K L0 (with standard errors), exact rho_mm."""
    from synthviz.l0_target import measure_l0

    out: dict[str, Any] = {"rho_mm": cached_rho_mm(model.feature_vectors)}
    if samples:
        m = measure_l0(model, samples, first_k=first_k, seed=seed, progress=progress)
        out.update(l0=m["l0"], l0_se=m["l0_se"], l0_first_k=m["l0_first_k"],
                   l0_first_k_se=m["l0_first_k_se"], samples=m["samples"], seed=seed,
                   first_k=first_k)
    return out


# ---------------------------------------------------------------------------- the model card

def _gen_words(spec: Any) -> str:
    return spec_words(spec)


def _structure_lines(model: SynthModel, cfg: ModelConfig) -> list[str]:
    lines = [f"- **Features**: {model.num_features:,}",
             f"- **Hidden dimension**: {model.hidden_dim}",
             f"- **Firing probabilities**: {_gen_words(cfg.firing_probability)} before hierarchy "
             "compensation; the stored `firing_probabilities` are after it",
             f"- **Mean firing magnitudes**: {_gen_words(cfg.mean_firing_magnitudes)}",
             f"- **Firing-magnitude std**: {_gen_words(cfg.std_firing_magnitudes)}"]
    f, h = model.forest, cfg.hierarchy
    if f is not None and f.roots and h is not None:
        b = h.branching_factor
        bw = f"{b[0]}-{b[1]} (random)" if isinstance(b, tuple) else str(b)
        lines.append(
            f"- **Hierarchy**: {len(f.roots)} roots, branching {bw}, max depth {f.max_depth}, "
            f"{f.num_nodes:,} features in trees, {len(f.me_groups())} ME parents, "
            f"compensation {'on' if h.compensate_probabilities else 'off'}, child rescaling "
            f"{'on' if f.rescale else 'off'}")
    else:
        lines.append("- **Hierarchy**: none")
    if model.correlation_factor is not None:
        scale = cfg.correlation.correlation_scale if cfg.correlation else "?"
        lines.append(f"- **Correlation**: low-rank Gaussian copula, rank "
                     f"{model.correlation_factor.shape[1]}, scale {scale}")
    else:
        lines.append("- **Correlation**: none")
    o = cfg.orthogonalization
    lines.append(f"- **Orthogonalization**: {o.num_steps} Adam steps, lr {o.lr:g}" if o else
                 "- **Orthogonalization**: none")
    lines.append(f"- **Bias norm**: {cfg.bias}; **model seed**: {cfg.seed}; **dtype**: {cfg.dtype}")
    return lines


def _hub_snippet(repo_id: str, path: str | None) -> str:
    if path:
        return f'model = SyntheticModel.from_pretrained("{repo_id}", model_path="{path}")'
    return f'model = SyntheticModel.from_pretrained("{repo_id}")'


def model_card(model: SynthModel, cfg: ModelConfig, stats: dict[str, Any],
               check: ExportCheck | None = None) -> str:
    prov = model.provenance
    preset = prov.exact_preset()
    variation = prov.variation_words or "none (the base model itself)"
    base = prov.base or (f"preset {preset}" if preset and not prov.variation
                         else prov.source or "a SynthSAEBench-style model")
    name = prov.model_name()
    title = (f"SynthSAEBench preset: {preset}" if preset else
             f"SynthSAEBench variation: {name}" if prov.variation else
             f"SynthSAEBench-style synthetic model: {name}")
    stats = dict(stats)
    sample_seed = stats.pop("seed", None)
    machine = {"num_features": model.num_features, "hidden_dim": model.hidden_dim,
               "model": name, "preset": preset, "base": base,
               "variation": prov.variation, "model_seed": cfg.seed,
               "sample_seed": sample_seed, **stats}
    if check is not None:
        machine["exact"] = check.exact
    warning = [] if check is None or check.exact else [
        "> **Warning: sae_lens does not sample this model as synthviz showed it.** It was "
        f"written on request although the export check failed ({check.message}).", ""]
    k = stats.get("first_k", 4096)
    rows = [f"| rho_mm (mean max \\|cos\\| between features) | {stats['rho_mm']:.4f} |"]
    if "l0" in stats:
        rows.insert(0, f"| L0 (active features per sample) | {stats['l0']:.3f} "
                       f"+/- {stats['l0_se']:.3f} |")
        rows.insert(1, f"| first-{k} L0 | {stats['l0_first_k']:.3f} "
                       f"+/- {stats['l0_first_k_se']:.3f} |")
        how = (f"L0s are means over {stats['samples']:,} samples from synthviz's exact sampler "
               f"(sampling seed {sample_seed}, +/- one standard error); rho_mm is exact over "
               "all pairs.")
    else:
        how = "L0 was not measured (0 samples requested); rho_mm is exact over all pairs."
    extra = []
    if prov.l0_target:
        r = prov.l0_target
        t = f"target L0 {r['target_l0']:g}"
        if r.get("target_first_k") is not None:
            t += f" and first-{r['first_k']} L0 {r['target_first_k']:g}"
        extra.append(f"- L0 targeting: {t}; solved generator {_gen_words(cfg.firing_probability)}; "
                     f"measured {r['achieved_l0']:.3f} / {r['achieved_first_k']:.3f} over "
                     f"{r['samples']:,} samples.")
    for count, words in ((prov.probabilities_clamped, "firing probabilities clamped to 1 by "
                          "hierarchy compensation"),
                         (prov.rel_p_clamped, "firing probabilities clamped to 1 after scaling")):
        if count:
            extra.append(f"- {count} {words}.")
    if prov.truncation_std_max_diff or prov.truncation_mean_max_diff:
        extra.append(
            "- Truncation: the magnitudes are the ones this config regenerates, which differ "
            f"from the base's first features by at most {prov.truncation_mean_max_diff or 0:.3g} "
            f"(mean) and {prov.truncation_std_max_diff or 0:.3g} (std): a truncated linear ramp is not exactly a linear ramp in "
            "float32, and torch's normal generator is not prefix-consistent for N % 16 != 0.")
    if prov.truncation_probability_max_diff:
        extra.append(
            "- Truncation: the firing probabilities are the ones this config regenerates, "
            "compensated for the pruned hierarchy as sae_lens does; where the cut splits a group "
            "they differ from the full model's first features by up to "
            f"{prov.truncation_probability_max_diff:.3g}.")
    if prov.config_firing_probability_approximate:
        extra.append("- " + prov.config_firing_probability_approximate + ".")
    if check is None or check.exact:
        extra.append("- sae_lens regenerates the per-feature magnitudes and the firing "
                     "probabilities (compensated for the stored hierarchy) from the config, on "
                     "load and after `.to()`; it ignores the stored `firing_probabilities` there. "
                     "This config regenerates exactly the values synthviz used (checked at "
                     "export), so the stored and regenerated probabilities are equal. The "
                     "dictionary, the bias and the correlation factor are used as stored.")
    else:
        extra.append("- sae_lens regenerates the per-feature magnitudes and the firing "
                     "probabilities from the config, on load and after `.to()`; for this model "
                     "they differ from the stored values (see the warning at the top).")
    return "\n".join([
        "---",
        "library_name: saelens",
        "tags:",
        "- synthetic",
        "- sparse-autoencoders",
        "- synthsaebench",
        "synthviz: " + json.dumps(machine, sort_keys=True),
        "---",
        "",
        *warning,
        f"# {title}",
        "",
        "A synthetic model for testing sparse autoencoders, in the `sae_lens.synthetic` format, "
        "exported by synthviz.",
        "",
        "## Base and variation",
        "",
        f"- **Base**: {base}" + (" (SynthSAEBench-16k, the paper configuration)"
                                 if "preset base" in str(base) else ""),
        f"- **Variation**: {variation}",
        "",
        "## Model",
        "",
        *_structure_lines(model, cfg),
        "",
        "## Measured statistics",
        "",
        "| statistic | value |",
        "|---|---:|",
        *rows,
        "",
        how,
        "",
        "## Notes",
        "",
        *extra,
        "",
        "## Usage",
        "",
        "```python",
        "from sae_lens.synthetic import SyntheticModel",
        "",
        "# this folder, downloaded or local",
        'model = SyntheticModel.load_from_disk("path/to/this/folder")',
        "# or straight from the Hugging Face Hub",
        _hub_snippet(HUB_PLACEHOLDER, None),
        "hidden, features = model.sample_with_features(1024)",
        "```",
        "",
    ])


# ---------------------------------------------------------------------------- export

def export_model(model: SynthModel, out: str | Path, force: bool = False, samples: int = 20_000,
                 progress: Progress | None = None, *, seed: int = 0, first_k: int = 4096,
                 allow_inexact: bool = False) -> Path:
    """Write `model` to `out` (three model files + README.md) atomically; returns the folder.

    Refuses a model that `export_check` finds inexact unless `allow_inexact`; the model card of
    such an export says so at the top.
    """

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ConfigError(f"samples must be a non-negative integer, got {samples!r}")
    target = Path(out).expanduser()
    if target.exists() and not target.is_dir():
        raise SynthvizError(f"export target {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:  # before the slow measuring
        raise SynthvizError(f"export target {target} is not empty; choose an empty folder or "
                            "pass --force to replace it")
    check = export_check(model)
    if not check.exact and not allow_inexact:
        raise SynthvizError(f"export refused, {check.message}; pass --allow-inexact "
                            "(allow_inexact=True) to write it anyway")
    cfg = written_config(model)
    stats = measure(model, samples, seed=seed, first_k=first_k, progress=progress)
    card = model_card(model, cfg, stats, check)
    to_write = model.replace(cfg=cfg)
    if to_write.forest is not None and not to_write.forest.roots:
        to_write.forest = None

    def write(tmp: Path) -> None:
        model_files.write_model_files(to_write, tmp)
        (tmp / CARD_FILE).write_text(card)

    return atomic_write_folder(target, write, force=force)


# ---------------------------------------------------------------------------- push

def _scrub(text: str) -> str:
    return _TOKEN_RE.sub("hf_***", text)


def _hf_api():
    from huggingface_hub import HfApi
    return HfApi()


def _check_path_in_repo(path: str | None) -> str | None:
    if path is None:
        return None
    p = path.strip().strip("/")
    if not p:
        return None
    parts = p.split("/")
    if "\\" in p or "\0" in p or any(x in ("", ".", "..") for x in parts):
        raise ConfigError(f"invalid path in repo {path!r}: use a plain subfolder like 'rel-p-0.5'")
    return p


def push_folder(folder: str | Path, repo_id: str, path_in_repo: str | None = None,
                private: bool = False, api: Any = None) -> str:
    """Upload an exported folder to the Hub (create the repo if needed); returns its URL."""

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: no such folder to push")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelFileError(f"{name}: missing from {folder}; export the model first")
    if not isinstance(repo_id, str) or not _REPO_RE.match(repo_id) or ".." in repo_id:
        raise ConfigError(f"invalid repo id {repo_id!r}: expected 'owner/name'")
    path = _check_path_in_repo(path_in_repo)
    api = api if api is not None else _hf_api()
    with tempfile.TemporaryDirectory(prefix="synthviz-push-") as tmp:
        stage = Path(tmp)
        for name in MODEL_FILES:
            if (folder / name).is_file():
                shutil.copyfile(folder / name, stage / name)
        if (folder / CARD_FILE).is_file():
            card = (folder / CARD_FILE).read_text()
            card = card.replace(_hub_snippet(HUB_PLACEHOLDER, None), _hub_snippet(repo_id, path))
            (stage / CARD_FILE).write_text(card)
        kwargs: dict[str, Any] = dict(repo_id=repo_id, folder_path=str(stage), repo_type="model",
                                      commit_message="Upload synthviz model"
                                      + (f" {path}" if path else ""))
        if path:
            kwargs["path_in_repo"] = path
        try:
            api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(**kwargs)
        except SynthvizError:
            raise
        except Exception as exc:  # huggingface_hub and network errors of every kind
            msg = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            hint = ""
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403) or "token" in msg.lower() or "login" in msg.lower():
                hint = "; log in with `hf auth login` or set HF_TOKEN with write access"
            raise HubError(f"upload to {repo_id} failed ({type(exc).__name__}: {msg}){hint}") \
                from None
    url = f"https://huggingface.co/{repo_id}"
    return f"{url}/tree/main/{path}" if path else url
