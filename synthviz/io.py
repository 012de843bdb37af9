"""Reading the sae_lens folder format, from disk or the Hugging Face Hub.

Only JSON and safetensors are ever read: nothing is unpickled and `torch.load` is never called.
Every problem with a file raises `ModelFileError` naming the file and what is wrong with it.
Writing is `synthviz.model_files` (re-exported here); which loader a source string means is
`synthviz.sources`.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from synthviz.config import ModelConfig, magnitude_values
from synthviz.device import available_memory, resolve_device
from synthviz.errors import ConfigError, HubError, ModelFileError
from synthviz.hierarchy import Forest, generate_forest
from synthviz.model import MIN_CORRELATION_DIAG, SynthModel, validate_rescale
from synthviz.provenance import Provenance
from synthviz.model_files import CONFIG_FILE, HIERARCHY_FILE, MODEL_FILES, WEIGHTS_FILE

MAX_CONFIG_BYTES = 1 << 20  # a real config is about 1 KB
MAX_HIERARCHY_BYTES = 256 << 20  # the 16k base's hierarchy.json is about 2 MB
MAX_SAFETENSORS_HEADER = 1 << 20
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------- loading

def read_json(path: Path, limit: int) -> Any:
    """The JSON in `path`, refusing a file over `limit` bytes or that does not parse."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read ({exc.strerror})") from None
    if size > limit:
        raise ModelFileError(f"{path.name}: {size} bytes is too large (limit {limit}); "
                             "refusing to parse")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
        if len(data) > limit:
            raise ModelFileError(f"{path.name}: larger than {limit} bytes; refusing to parse")
        return json.loads(data)
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    except RecursionError:
        raise ModelFileError(f"{path.name}: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path.name}: not valid JSON ({exc})") from None


SAFETENSORS_FLOAT = {"F32": torch.float32, "F64": torch.float64, "F16": torch.float16,
                     "BF16": torch.bfloat16}


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (dtype code, shape)} from the header alone, checking it against the file size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise ModelFileError(f"{path.name}: truncated (no safetensors header)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_SAFETENSORS_HEADER:
                raise ModelFileError(f"{path.name}: corrupt safetensors header "
                                     f"(claims {n} bytes)")
            if 8 + n > size:
                raise ModelFileError(f"{path.name}: truncated (header claims {n} bytes, file "
                                     f"has {size})")
            raw = fh.read(n)
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelFileError(f"{path.name}: corrupt safetensors header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path.name}: corrupt safetensors header (not an object)")
    out = {}
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            ok = all(isinstance(x, int) and x >= 0 for x in (*shape, start, end))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok or not isinstance(dtype, str):
            raise ModelFileError(f"{path.name}: corrupt safetensors header entry for {name!r}")
        if end > data_len:
            raise ModelFileError(f"{path.name}: truncated (tensor {name!r} runs past the end "
                                 "of the file)")
        out[name] = (dtype, shape)
    return out


def read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors (only `names` when given: extra tensors are left unread, as sae_lens ignores
    them); call after `safetensors_header` has vetted the header and sizes."""
    try:
        out = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                if names is None or key in names:
                    out[key] = f.get_tensor(key)
        return out
    except ModelFileError:
        raise
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # safetensors raises its own error types for corrupt data
        raise ModelFileError(f"{path.name}: truncated or corrupt safetensors ({exc})") from None


def _check_tensor(name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    where = f"{WEIGHTS_FILE}: tensor '{name}'"
    if t.dtype not in FLOAT_DTYPES:
        raise ModelFileError(f"{where} has dtype {t.dtype}; expected a floating dtype")
    if tuple(t.shape) != shape:
        raise ModelFileError(f"{where} has shape {tuple(t.shape)}; expected {shape}")
    if not bool(torch.isfinite(t).all()):
        raise ModelFileError(f"{where} contains NaN or inf values")


def _check_load_memory(path: Path, n: int, d: int) -> None:
    """Refuse, with the figure, a model whose tensors would not fit in memory."""
    need = path.stat().st_size + 2 * n * 4 * 3  # the tensors plus per-feature magnitudes/tables
    avail = available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ModelFileError(f"{WEIGHTS_FILE}: a {n} x {d} model needs about "
                             f"{need / 2**30:.1f} GiB to load, but only "
                             f"{avail / 2**30:.1f} GiB is available")


def stored_provenance(label: str, cfg: ModelConfig, p: torch.Tensor, forest: Forest | None,
                      diag: torch.Tensor | None) -> Provenance:
    """What a build would have reported, read back from the stored tensors, so a model loaded
    from a folder or the cache warns like a fresh build: a compensated child stored at p = 1 was
    clamped, and a correlation row at c_i = 0.01 (the floor) was rescaled."""
    clamped = rescaled = None
    if forest is not None and cfg.compensates:
        clamped = int(((p >= 1) & (forest.parent >= 0)).sum())
    if diag is not None:
        rescaled = int((diag <= MIN_CORRELATION_DIAG * 1.0001).sum())
    return Provenance(source=label, probabilities_clamped=clamped,
                      correlation_rows_rescaled=rescaled)


def load_folder(folder: str | Path, device: str | torch.device = "auto",
                label: str | None = None) -> SynthModel:
    folder = Path(folder).expanduser()
    label = label or str(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{label}: no such model folder")
    for name in MODEL_FILES:
        path = folder / name
        if path.exists() and not path.is_file():
            raise ModelFileError(f"{name}: not a regular file (in {label})")
        if not path.is_file() and name != HIERARCHY_FILE:
            raise ModelFileError(f"{name}: missing from {label}")
    raw = read_json(folder / CONFIG_FILE, MAX_CONFIG_BYTES)
    if not isinstance(raw, dict):
        raise ModelFileError(f"{CONFIG_FILE}: expected a JSON object")
    try:
        cfg = ModelConfig.from_dict(raw)
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(f"{CONFIG_FILE}: {exc}") from None
    header = safetensors_header(folder / WEIGHTS_FILE)
    n, d = cfg.num_features, cfg.hidden_dim
    expected = {"feature_vectors": (n, d), "bias": (d,), "firing_probabilities": (n,)}
    # sae_lens reads the copula when correlation_factor is present and ignores other tensors
    if "correlation_factor" in header:
        fac = header.get("correlation_factor")
        rank = fac[1][1] if fac is not None and len(fac[1]) == 2 else -1
        expected["correlation_factor"] = (n, rank)
        expected["correlation_diag"] = (n,)
    missing = sorted(set(expected) - set(header))
    if missing:
        raise ModelFileError(f"{WEIGHTS_FILE}: missing tensor(s) {missing}")
    for name, shape in expected.items():
        dtype, got = header[name]
        where = f"{WEIGHTS_FILE}: tensor '{name}'"
        if dtype not in SAFETENSORS_FLOAT:
            raise ModelFileError(f"{where} has dtype {dtype}; expected a floating dtype")
        if got != shape:
            raise ModelFileError(f"{where} has shape {got}; expected {shape}")
    _check_load_memory(folder / WEIGHTS_FILE, n, d)
    tensors = read_safetensors(folder / WEIGHTS_FILE, set(expected))
    for name, shape in expected.items():
        _check_tensor(name, tensors[name], shape)
    p = tensors["firing_probabilities"]
    if bool(((p < 0) | (p > 1)).any()):
        raise ModelFileError(f"{WEIGHTS_FILE}: firing_probabilities outside [0, 1]")
    if "correlation_diag" in tensors and bool((tensors["correlation_diag"] <= 0).any()):
        raise ModelFileError(f"{WEIGHTS_FILE}: correlation_diag must be positive")
    forest = None
    if (folder / HIERARCHY_FILE).is_file():
        forest = Forest.from_dict(read_json(folder / HIERARCHY_FILE, MAX_HIERARCHY_BYTES), n,
                                  where=HIERARCHY_FILE)
    elif cfg.hierarchy is not None:
        # without hierarchy.json sae_lens generates the forest from the config and its seed
        forest = generate_forest(n, cfg.hierarchy, cfg.sub_seed(3))
    dt = cfg.torch_dtype
    model = SynthModel(
        cfg=cfg, feature_vectors=tensors["feature_vectors"], bias=tensors["bias"],
        firing_probabilities=p,
        mean_magnitudes=magnitude_values(cfg.mean_firing_magnitudes, n, cfg.sub_seed(2)).to(dt),
        std_magnitudes=magnitude_values(cfg.std_firing_magnitudes, n, cfg.sub_seed(1)).to(dt),
        forest=forest, correlation_factor=tensors.get("correlation_factor"),
        correlation_diag=tensors.get("correlation_diag"), device=resolve_device(device),
        provenance=stored_provenance(label, cfg, p, forest, tensors.get("correlation_diag")))
    try:
        validate_rescale(model)
    except ConfigError as exc:
        raise ModelFileError(f"{label}: {exc}") from None
    return model


# ---------------------------------------------------------------------------- the Hub

# what the Hub accepts for an owner or a repo name (huggingface_hub's own rule)
_HUB_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")


def parse_hub_id(source: str) -> tuple[str, str | None]:
    repo, _, sub = source.partition(":")
    parts = repo.split("/")
    if (len(parts) != 2 or not all(_HUB_NAME.match(p) for p in parts)
            or any(".." in p or "--" in p for p in parts) or len(parts[1]) > 96):
        raise ConfigError(f"{source[:120]!r} is not a preset, a local folder, or a Hub id "
                          "like 'owner/name' or 'owner/name:subfolder'")
    sub = sub.strip("/") or None
    if sub is not None and any(p in ("", ".", "..") for p in sub.split("/")):
        raise ConfigError(f"invalid Hub subfolder {sub!r}")
    return repo, sub


HUB_CONNECT_TIMEOUT = 1.5  # seconds: an unreachable Hub fails fast, not after minutes of retries


def _hub_http() -> tuple[Any, tuple[type[BaseException], ...]]:
    """(timeout, network error types) for the HTTP client huggingface_hub uses: httpx2 (2.x),
    httpx (1.x) or requests (0.x); connect is the short part, reading the answer is not."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    read = constants.DEFAULT_ETAG_TIMEOUT
    errors: list[type[BaseException]] = [OSError]
    for name in ("httpx2", "httpx"):
        mod = getattr(_http, name, None)
        if mod is not None:
            return mod.Timeout(read, connect=HUB_CONNECT_TIMEOUT), (*errors, mod.TransportError)
    mod = getattr(_http, "requests", None)
    if mod is not None:
        errors += [mod.ConnectionError, mod.Timeout]
    return (HUB_CONNECT_TIMEOUT, read), tuple(errors)


def _check_hub_reachable(repo_id: str, filename: str, where: str) -> None:
    """One HEAD request with a short connect timeout and no retries, before the download.

    huggingface_hub retries a failed metadata request with backoff (about 23 s in all) when the
    file is not cached; a Hub that cannot be reached should say so within a few seconds.
    """
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub import errors as hf_errors

    if constants.is_offline_mode():
        raise HubError(f"{where}: HF_HUB_OFFLINE is set and {filename} is not in the local "
                       "cache")
    timeout, network_errors = _hub_http()
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, filename), timeout=timeout)
    except hf_errors.HfHubHTTPError:
        return  # the Hub answered: the download reports what it said
    except hf_errors.OfflineModeIsEnabled:
        raise HubError(f"{where}: offline mode is on and {filename} is not in the local "
                       "cache") from None
    except network_errors as exc:
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise HubError(f"{where}: cannot reach the Hugging Face Hub ({type(exc).__name__}"
                       f"{': ' + reason if reason else ''}) and {filename} is not in the "
                       "local cache") from None


def download_from_hub(repo_id: str, subfolder: str | None, files: tuple[str, ...] = MODEL_FILES,
                      optional: tuple[str, ...] = (HIERARCHY_FILE,)) -> Path:
    """Fetch `files` (a model's by default; SAEs pass theirs) into huggingface_hub's cache and
    return a folder holding them; files in `optional` may be absent from the repo."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors as hf_errors

    prefix = f"{subfolder}/" if subfolder else ""
    where = f"{repo_id}/{prefix}".rstrip("/")
    required = [f for f in files if f not in optional]
    paths: dict[str, str] = {}
    # the cache first, so a cached model loads with no network round trip at all
    for local_only in (True, False):
        missing = [n for n in required if n not in paths]
        if not local_only and missing:
            _check_hub_reachable(repo_id, prefix + missing[0], where)
        for name in files:
            if name in paths:
                continue
            try:
                paths[name] = hf_hub_download(repo_id=repo_id, filename=prefix + name,
                                              local_files_only=local_only)
            except hf_errors.LocalEntryNotFoundError:  # subclass of EntryNotFoundError: first
                if local_only:
                    continue
                if name in optional and all(f in paths for f in required):
                    continue  # offline with the required files cached; this one is optional
                raise HubError(f"{where}: cannot reach the Hugging Face Hub and {prefix}{name} "
                               "is not in the local cache (offline or no network)") from None
            except hf_errors.EntryNotFoundError:
                if name in optional:
                    paths.setdefault("_no_" + name, "")
                    continue
                raise HubError(f"{where}: {name} not found in the repo") from None
            except hf_errors.GatedRepoError:
                raise HubError(f"{repo_id}: the repo is gated; log in with access to it") from None
            except hf_errors.RepositoryNotFoundError:
                raise HubError(f"{repo_id}: repo not found, or it is private and you are not "
                               "logged in with access") from None
            except hf_errors.RevisionNotFoundError:
                raise HubError(f"{repo_id}: revision not found") from None
            except hf_errors.HFValidationError as exc:
                raise HubError(f"{where}: not a valid Hub repo or path ({exc})") from None
            except (hf_errors.HfHubHTTPError, OSError) as exc:
                raise HubError(f"{where}: download of {name} failed ({type(exc).__name__})") from None
        if all(f in paths for f in required) and (
                all(f in paths for f in optional) or not local_only):
            break
    for name in optional:
        paths.pop("_no_" + name, None)
    folder = Path(paths[required[0]]).parent
    if all(Path(p).parent == folder for p in paths.values()):
        return folder
    tmp = Path(tempfile.mkdtemp(prefix="synthviz-hub-"))
    for name, p in paths.items():
        shutil.copy(p, tmp / name)
    return tmp


def load_hub(source: str, device: str | torch.device = "auto") -> SynthModel:
    repo, sub = parse_hub_id(source)
    folder = download_from_hub(repo, sub)
    return load_folder(folder, device=device, label=source)


# ---------------------------------------------------------------------------- dispatch

def looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", ".\\")) or "\\" in source or Path(source).exists()
