"""Reading and writing the sae_lens folder format, from disk or the Hugging Face Hub.

Only JSON and safetensors are ever read: nothing is unpickled and `torch.load` is never called.
Every problem with a file raises `ModelFileError` naming the file and what is wrong with it.
Saving writes into a temporary folder beside the target and renames it into place, so an
interrupted save leaves either the old state or the complete new one.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from synthviz.cache import pid_alive as _pid_alive
from synthviz.config import ModelConfig, magnitude_values
from synthviz.device import resolve_device
from synthviz.errors import ConfigError, HubError, ModelFileError, SynthvizError
from synthviz.hierarchy import Forest, generate_forest
from synthviz.model import SynthModel, validate_rescale

CONFIG_FILE = "synthetic_model_config.json"
WEIGHTS_FILE = "synthetic_model.safetensors"
HIERARCHY_FILE = "hierarchy.json"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, HIERARCHY_FILE)

MAX_CONFIG_BYTES = 1 << 20  # a real config is about 1 KB
MAX_HIERARCHY_BYTES = 256 << 20  # the 16k base's hierarchy.json is about 2 MB
MAX_SAFETENSORS_HEADER = 1 << 20
FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


# ---------------------------------------------------------------------------- saving

def model_tensors(model: SynthModel) -> dict[str, torch.Tensor]:
    t = {
        "feature_vectors": model.feature_vectors,
        "bias": model.bias,
        "firing_probabilities": model.firing_probabilities,
    }
    if model.correlation_factor is not None:
        t["correlation_factor"] = model.correlation_factor
        t["correlation_diag"] = model.correlation_diag
    return {k: v.detach().cpu().contiguous() for k, v in t.items()}


def write_model_files(model: SynthModel, folder: Path) -> None:
    """Write the three files into an existing (empty) folder."""
    (folder / CONFIG_FILE).write_text(json.dumps(model.cfg.to_dict(), indent=2))
    save_file(model_tensors(model), str(folder / WEIGHTS_FILE))
    if model.forest is not None:
        (folder / HIERARCHY_FILE).write_text(json.dumps(model.forest.to_dict(), indent=2))


def atomic_write_folder(target: str | Path, write, *, force: bool = False,
                        exist_ok: bool = False) -> Path:
    """Call write(tmp_folder) then move tmp_folder to `target` in one rename.

    Refuses a non-empty target unless `force`; with `force` the old folder is replaced only after
    the new one is complete (one atomic exchange on Linux), and never a folder with subfolders
    (see `_check_replaceable`). A kill at any moment leaves `target` as it was or complete.
    With `exist_ok` (cache entries, whose writers all write the same content) a non-empty target
    is kept: nothing is written when it exists at the start, and when another process publishes
    it first, this one's copy is discarded.
    """
    target = Path(target).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise SynthvizError(f"export target {target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        if exist_ok and not force:
            return target
        if not force:
            raise SynthvizError(f"export target {target} is not empty; choose an empty folder or "
                                "pass --force to replace it")
        _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        write(tmp)
        _usual_modes(tmp)
        _fsync_tree(tmp)
        published = False
        if not (force and target.exists()):
            try:
                os.rename(tmp, target)  # fails when another writer filled target meanwhile
                published = True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if exist_ok:  # the same entry, published first by another process: keep it
                    shutil.rmtree(tmp, ignore_errors=True)
                    published = True
                elif not force:
                    raise SynthvizError(f"export target {target} was filled by another "
                                        "process during this export; nothing was replaced") \
                        from None
        if not published:
            if _exchange(tmp, target):
                shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
            else:
                old = target.parent / f".{target.name}.old-{os.getpid()}"
                os.rename(target, old)
                try:
                    os.rename(tmp, target)
                except BaseException:
                    os.rename(old, target)
                    raise
                shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _check_replaceable(target: Path) -> None:
    """With force, replace only a flat folder of files (what an export is), never one holding
    subfolders, the home folder, or the working folder and its parents, so a mistyped `--out`
    with `--force` cannot delete a project or a home directory."""
    resolved = target.resolve()
    cwd = Path.cwd().resolve()
    if resolved in (Path.home().resolve(), cwd, *cwd.parents):
        raise SynthvizError(f"export target {target} is the home or working folder or one of its "
                            "parents; refusing to replace it even with --force")
    subdirs = sorted(e.name for e in target.iterdir() if e.is_dir())
    if subdirs:
        raise SynthvizError(f"export target {target} holds subfolder {subdirs[0]!r}, so it is not "
                            "a model export; refusing to replace it even with --force (choose "
                            "another folder or empty it yourself)")


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # the filesystem or kernel cannot exchange; use two renames
    raise OSError(err, os.strerror(err), str(b))


def current_umask() -> int:
    """The process umask, read without changing it where Linux allows (os.umask is racy)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _usual_modes(folder: Path) -> None:
    """Modes a plain write would give (0666/0777 less the umask): mkdtemp makes the folder 0700
    and safetensors writes 0600, which would hide an export from its other users."""
    mask = current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, 0o666 & ~mask)
        elif path.is_dir() and not path.is_symlink():
            os.chmod(path, 0o777 & ~mask)
    os.chmod(folder, 0o777 & ~mask)


def _fsync_tree(folder: Path) -> None:
    # the new files reach the disk before the rename that publishes them
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory
    finally:
        os.close(fd)


def _remove_stale_temps(target: Path) -> None:
    """Remove temp and old folders that a killed earlier write of `target` left behind."""
    for kind in ("tmp", "old"):
        prefix = f".{target.name}.{kind}-"
        for path in target.parent.glob(glob.escape(prefix) + "*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(path, ignore_errors=True)


def save_model(model: SynthModel, folder: str | Path, *, force: bool = False,
               exist_ok: bool = False) -> Path:
    return atomic_write_folder(folder, lambda tmp: write_model_files(model, tmp), force=force,
                               exist_ok=exist_ok)


# ---------------------------------------------------------------------------- loading

def _read_json(path: Path, limit: int) -> Any:
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


def _safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
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


def _read_safetensors(path: Path, names: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors (only `names` when given: extra tensors are left unread, as sae_lens ignores
    them); call after `_safetensors_header` has vetted the header and sizes."""
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
    from synthviz.model import _available_memory

    need = path.stat().st_size + 2 * n * 4 * 3  # the tensors plus per-feature magnitudes/tables
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        raise ModelFileError(f"{WEIGHTS_FILE}: a {n} x {d} model needs about "
                             f"{need / 2**30:.1f} GiB to load, but only "
                             f"{avail / 2**30:.1f} GiB is available")


def _stored_notes(cfg: ModelConfig, p: torch.Tensor, forest: Forest | None,
                  diag: torch.Tensor | None) -> dict[str, int]:
    """What a build would have reported, read back from the stored tensors, so a model loaded
    from a folder or the cache warns like a fresh build: a compensated child stored at p = 1 was
    clamped, and a correlation row at c_i = 0.01 (the floor) was rescaled."""
    from synthviz.model import MIN_CORRELATION_DIAG

    notes = {}
    if forest is not None and cfg.hierarchy is not None and cfg.hierarchy.compensate_probabilities:
        notes["probabilities_clamped"] = int(((p >= 1) & (forest.parent >= 0)).sum())
    if diag is not None:
        notes["correlation_rows_rescaled"] = int((diag <= MIN_CORRELATION_DIAG * 1.0001).sum())
    return notes


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
    raw = _read_json(folder / CONFIG_FILE, MAX_CONFIG_BYTES)
    if not isinstance(raw, dict):
        raise ModelFileError(f"{CONFIG_FILE}: expected a JSON object")
    try:
        cfg = ModelConfig.from_dict(raw)
    except (ConfigError, TypeError) as exc:
        raise ModelFileError(f"{CONFIG_FILE}: {exc}") from None
    header = _safetensors_header(folder / WEIGHTS_FILE)
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
    tensors = _read_safetensors(folder / WEIGHTS_FILE, set(expected))
    for name, shape in expected.items():
        _check_tensor(name, tensors[name], shape)
    p = tensors["firing_probabilities"]
    if bool(((p < 0) | (p > 1)).any()):
        raise ModelFileError(f"{WEIGHTS_FILE}: firing_probabilities outside [0, 1]")
    if "correlation_diag" in tensors and bool((tensors["correlation_diag"] <= 0).any()):
        raise ModelFileError(f"{WEIGHTS_FILE}: correlation_diag must be positive")
    forest = None
    if (folder / HIERARCHY_FILE).is_file():
        forest = Forest.from_dict(_read_json(folder / HIERARCHY_FILE, MAX_HIERARCHY_BYTES), n,
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
        notes={"source": label, **_stored_notes(cfg, p, forest, tensors.get("correlation_diag"))})
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


def load(source: str | Path | ModelConfig, device: str | torch.device = "auto",
         progress=None) -> SynthModel:
    """A model from a preset name, a local folder, a Hub id (`repo` or `repo:subfolder`), or a config."""
    from synthviz.model import build_model
    from synthviz import presets

    if isinstance(source, ModelConfig):
        return build_model(source, device=device, progress=progress)
    if isinstance(source, Path):
        return load_folder(source, device=device)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(f"model source must be a non-empty string, got {source!r}")
    source = source.strip()
    if source in presets.PRESETS:
        return presets.load_preset(source, device=device, progress=progress)
    if looks_like_path(source):
        return load_folder(source, device=device)
    return load_hub(source, device=device)
