"""Errors synthviz raises for bad settings and bad files (each message names the problem), and
the progress callback type through which long work reports and can be cancelled."""

from collections.abc import Callable

# long work calls progress(done, total); raising Cancelled from it stops the work
Progress = Callable[[int, int], None]


class SynthvizError(Exception):
    """Base class: the CLI and the app show these as one-line messages, never tracebacks."""


class ConfigError(SynthvizError, ValueError):
    """An invalid model or variation setting."""


class ModelFileError(SynthvizError):
    """A model folder or Hub repo that is missing, corrupt, or inconsistent."""


class HubError(SynthvizError):
    """The Hugging Face Hub could not provide the requested files."""


class Cancelled(Exception):
    """Raised from a progress callback to stop work whose result is no longer wanted (the app's
    settings moved on). Not a SynthvizError: it is not a problem to report."""
