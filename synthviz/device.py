"""Device choice ('auto' picks CUDA, then Apple's MPS, then the CPU) and the memory a device has free."""

from __future__ import annotations

import ctypes

import torch

from synthviz.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ConfigError(f"device must be one of {DEVICES}, got {device!r}")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but no CUDA GPU is available")
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but MPS is not available")
    return torch.device(name)


def available_memory(device: torch.device | None = None) -> int | None:
    """Free bytes on `device` (a CUDA device's own memory, else the host's); None if unknown."""
    if device is not None and device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # no driver or no such device: fall back to host memory
            pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _glibc():
    try:
        lib = ctypes.CDLL("libc.so.6")
        lib.malloc_trim  # noqa: B018 (glibc only: musl and macOS have no malloc_trim)
        return lib
    except (OSError, AttributeError):
        return None


_LIBC = _glibc()


def release_free_memory() -> None:
    """Return freed heap pages to the operating system (glibc only; elsewhere a no-op).

    Why: glibc keeps the pages of freed tensors in its heaps, and a long-running server that
    samples in worker threads fragments them, so its RSS grew by ~170 MB over 200 slider
    changes without any live object behind it. Trimming after each piece of work keeps it flat.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
