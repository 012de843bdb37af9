"""Loading an SAE saved in sae_lens's format: a folder with `cfg.json` and
`sae_weights.safetensors`, or a Hub id (`owner/name` or `owner/name:subfolder`, fetched with the
same cache-first and offline rules as models, by `synthviz.io.download_from_hub`).

Two loaders:
- native (the default for standard, topk, jumprelu, and BatchTopK / Matryoshka saved as jumprelu
  or as training saves): reads only JSON and safetensors, checks every tensor's shape, dtype and
  values, and needs no sae_lens;
- sae_lens (`pip install "synthviz[sae]"`): `sae_lens.SAE.load_from_disk`, used for what the
  native maths do not cover (other architectures, input normalization, hook_z reshaping) or on
  request (`loader="sae_lens"`). It too reads only safetensors.

Every problem is one `SAEFileError` line naming it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch

from synthviz.device import resolve_device
from synthviz.errors import ConfigError, HubError, SynthvizError
from synthviz.io import (MAX_CONFIG_BYTES, SAFETENSORS_FLOAT, read_json, read_safetensors,
                         safetensors_header, download_from_hub, looks_like_path, parse_hub_id)
from synthviz.sae.weights import (CFG_FILE, NATIVE_ARCHITECTURES, SAE, SAE_LENS_ONLY,
                                  TRAINING_ARCHITECTURES, WEIGHTS_FILE, kind_of)

LOADERS = ("auto", "native", "sae_lens")
INSTALL_HINT = 'install it with: pip install "synthviz[sae]"'


class SAEFileError(SynthvizError):
    """An SAE folder or Hub repo that is missing, corrupt, inconsistent or unsupported."""


def sae_lens_available() -> bool:
    return importlib.util.find_spec("sae_lens") is not None


def load_sae(source: str | Path, device: str | torch.device = "cpu", *, loader: str = "auto",
             d_in: int | None = None) -> SAE:
    """An SAE from a folder or a Hub id. `d_in`, when given (a model's hidden dim), is checked."""
    if loader not in LOADERS:
        raise ConfigError(f"loader must be one of {LOADERS}, got {loader!r}")
    if isinstance(source, Path):
        folder, label = source.expanduser(), str(source)
    elif not isinstance(source, str) or not source.strip():
        raise ConfigError(f"SAE source must be a folder or a Hub id, got {source!r}")
    else:
        label = source.strip()
        if looks_like_path(label):
            folder = Path(label).expanduser()
        else:
            try:
                repo, sub = parse_hub_id(label)
            except ConfigError:
                raise SAEFileError(f"{label}: no such SAE folder, and not a Hub id like "
                                   "'owner/name' or 'owner/name:subfolder'") from None
            folder = download_sae(repo, sub)
    sae = load_sae_folder(folder, device=device, loader=loader, label=label)
    if d_in is not None:
        check_d_in(sae, d_in)
    return sae


def download_sae(repo: str, sub: str | None) -> Path:
    try:
        return download_from_hub(repo, sub, files=(CFG_FILE, WEIGHTS_FILE), optional=())
    except HubError as exc:
        raise SAEFileError(f"no such SAE: {exc}") from None


def check_d_in(sae: SAE, d_in: int) -> None:
    if sae.d_in != d_in:
        raise SAEFileError(f"{sae.source or 'SAE'}: its d_in is {sae.d_in} but the model's "
                           f"hidden dim is {d_in}; this SAE was trained on another model")


def load_sae_folder(folder: str | Path, device: str | torch.device = "cpu", *,
                    loader: str = "auto", label: str | None = None) -> SAE:
    folder = Path(folder).expanduser()
    label = label or str(folder)
    if not folder.is_dir():
        raise SAEFileError(f"{label}: no such SAE folder")
    for name in (CFG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise SAEFileError(f"{label}: {name} is missing, so this is not an SAE folder")
    try:
        cfg = read_json(folder / CFG_FILE, MAX_CONFIG_BYTES)
    except SynthvizError as exc:
        raise SAEFileError(f"{label}: {exc}") from None
    if not isinstance(cfg, dict):
        raise SAEFileError(f"{label}: {CFG_FILE} is not a JSON object")
    arch = cfg.get("architecture", "standard")  # sae_lens's default for old configs
    if not isinstance(arch, str):
        raise SAEFileError(f"{label}: {CFG_FILE} 'architecture' must be a string")
    dev = resolve_device(device)
    if loader == "sae_lens" or (loader == "auto" and not _native_ok(cfg, arch)):
        return _load_with_sae_lens(folder, cfg, arch, dev, label, forced=loader == "sae_lens")
    if arch not in NATIVE_ARCHITECTURES + TRAINING_ARCHITECTURES:
        raise SAEFileError(_unknown(label, arch))
    if not _native_ok(cfg, arch):
        raise SAEFileError(f"{label}: {_why_not_native(cfg)} needs sae_lens's loader "
                           "(loader='sae_lens')")
    return _load_native(folder, cfg, arch, dev, label)


def _native_ok(cfg: dict[str, Any], arch: str) -> bool:
    return (arch in NATIVE_ARCHITECTURES + TRAINING_ARCHITECTURES
            and cfg.get("normalize_activations", "none") in ("none", None)
            and cfg.get("reshape_activations", "none") in ("none", None)
            and not cfg.get("finetuning_scaling_factor"))


def _why_not_native(cfg: dict[str, Any]) -> str:
    for key in ("normalize_activations", "reshape_activations"):
        if cfg.get(key, "none") not in ("none", None):
            return f"{key}={cfg[key]!r}"
    return "finetuning_scaling_factor"


def _unknown(label: str, arch: str) -> str:
    known = NATIVE_ARCHITECTURES + TRAINING_ARCHITECTURES + SAE_LENS_ONLY
    return (f"{label}: unknown SAE architecture {arch[:60]!r} (synthviz evaluates "
            f"{', '.join(known)})")


def _int(cfg: dict[str, Any], key: str, label: str) -> int:
    v = cfg.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SAEFileError(f"{label}: {CFG_FILE} '{key}' must be a positive integer, got {v!r}")
    return v


def _load_native(folder: Path, cfg: dict[str, Any], arch: str, dev: torch.device,
                 label: str) -> SAE:
    d_in, d_sae = _int(cfg, "d_in", label), _int(cfg, "d_sae", label)
    path = folder / WEIGHTS_FILE
    try:
        header = safetensors_header(path)
    except SynthvizError as exc:
        raise SAEFileError(f"{label}: corrupt weights file: {exc}") from None
    expected: dict[str, tuple[int, ...]] = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,),
                                             "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if arch == "jumprelu":
        expected["threshold"] = (d_sae,)
    elif arch in TRAINING_ARCHITECTURES:
        expected["topk_threshold"] = ()
    missing = sorted(set(expected) - set(header))
    if missing:
        raise SAEFileError(f"{label}: {WEIGHTS_FILE} lacks tensor(s) {missing} that a {arch} "
                           "SAE needs")
    for name, shape in expected.items():
        dtype, got = header[name]
        if dtype not in SAFETENSORS_FLOAT:
            raise SAEFileError(f"{label}: {WEIGHTS_FILE} tensor '{name}' has dtype {dtype}; "
                               "expected a floating dtype")
        if got != shape:
            raise SAEFileError(f"{label}: {WEIGHTS_FILE} tensor '{name}' has shape {got}; "
                               f"expected {shape} from {CFG_FILE}")
    try:
        t = read_safetensors(path)
    except SynthvizError as exc:
        raise SAEFileError(f"{label}: corrupt weights file: {exc}") from None
    for name in expected:
        if not bool(torch.isfinite(t[name]).all()):
            bad = "NaN" if bool(torch.isnan(t[name]).any()) else "infinite"
            raise SAEFileError(f"{label}: {WEIGHTS_FILE} tensor '{name}' contains {bad} values")
    dt = SAFETENSORS_FLOAT.get({"float32": "F32", "float64": "F64", "float16": "F16",
                                "bfloat16": "BF16"}.get(str(cfg.get("dtype")), "F32"))
    ten = {k: v.to(dev, dt) for k, v in t.items() if k in expected}
    k = None
    rescale = bool(cfg.get("rescale_acts_by_decoder_norm", False))
    threshold = ten.get("threshold")
    if arch == "topk":
        k = _int(cfg, "k", label)
        if k > d_sae:
            raise SAEFileError(f"{label}: k={k} exceeds d_sae={d_sae}")
    elif arch in TRAINING_ARCHITECTURES:
        # sae_lens's inference save: fold the decoder norms into the encoder, then one
        # threshold per latent equal to the learned batch-top-k threshold
        if rescale:
            norm = ten["W_dec"].norm(dim=-1).clamp(min=1e-8)
            ten["W_dec"] = ten["W_dec"] / norm[:, None]
            ten["W_enc"] = ten["W_enc"] * norm[None, :]
            ten["b_enc"] = ten["b_enc"] * norm
        threshold = torch.full_like(ten["b_enc"], float(ten.pop("topk_threshold")))
        rescale = False
    return SAE(architecture="topk" if arch == "topk" else
               ("standard" if arch == "standard" else "jumprelu"),
               W_enc=ten["W_enc"], b_enc=ten["b_enc"], W_dec=ten["W_dec"], b_dec=ten["b_dec"],
               threshold=threshold, k=k,
               apply_b_dec_to_input=bool(cfg.get("apply_b_dec_to_input", True)),
               rescale_acts_by_decoder_norm=rescale, kind=kind_of(cfg), cfg=cfg, source=label)


def _load_with_sae_lens(folder: Path, cfg: dict[str, Any], arch: str, dev: torch.device,
                        label: str, forced: bool) -> SAE:
    if not sae_lens_available():
        why = "loader='sae_lens' was requested" if forced else (
            f"architecture {arch!r} with these settings has no native loader")
        if not forced and arch not in NATIVE_ARCHITECTURES + TRAINING_ARCHITECTURES + SAE_LENS_ONLY:
            raise SAEFileError(_unknown(label, arch))
        raise SAEFileError(f"{label}: sae_lens is not installed but is needed ({why}); "
                           f"{INSTALL_HINT}")
    try:
        from sae_lens import SAE as SLSAE
        from sae_lens.registry import get_sae_class
    except Exception as exc:  # a broken install: say so in one line
        raise SAEFileError(f"{label}: sae_lens is installed but cannot be imported "
                           f"({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None
    try:
        get_sae_class(arch)
    except (KeyError, ValueError):
        raise SAEFileError(_unknown(label, arch)) from None
    # the native checks first, so NaNs and corrupt files get the same one-line messages
    if arch in NATIVE_ARCHITECTURES:
        _load_native(folder, cfg, arch, torch.device("cpu"), label)
    try:
        sl = SLSAE.load_from_disk(str(folder), device=str(dev))
    except Exception as exc:  # sae_lens raises many types for bad files
        raise SAEFileError(f"{label}: sae_lens could not load it ({type(exc).__name__}: "
                           f"{str(exc)[:200]})") from None
    sl.eval()
    for name, t in sl.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise SAEFileError(f"{label}: {WEIGHTS_FILE} tensor '{name}' contains NaN or "
                               "infinite values")
    W_dec = sl.W_dec.detach()
    W_enc = getattr(sl, "W_enc", None)
    W_enc = W_enc.detach() if W_enc is not None else W_dec.T
    zeros = torch.zeros(W_dec.shape[0], dtype=W_dec.dtype, device=W_dec.device)
    b_enc = getattr(sl, "b_enc", None)
    return SAE(architecture=arch, W_enc=W_enc, b_enc=zeros if b_enc is None else b_enc.detach(),
               W_dec=W_dec, b_dec=sl.b_dec.detach(), kind=kind_of(cfg), cfg=cfg, source=label,
               backend=sl)
