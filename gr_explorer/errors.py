"""Errors that name the bad input and what would be valid.

All of them derive from GRExplorerError so the CLI and the app can show the
message instead of a traceback, and from ValueError where the input is at fault.
"""

import difflib


class GRExplorerError(Exception):
    """Base class: the message is meant for the user, verbatim."""


class ConfigError(GRExplorerError, ValueError):
    """A sweep setting (flag, run.json field, app widget) with a value that is not valid."""


class ModelSpecError(GRExplorerError, ValueError):
    """Unknown or malformed model spec."""


class CheckpointError(GRExplorerError, ValueError):
    """A checkpoint file or card that cannot be loaded safely."""


class CutError(GRExplorerError, ValueError):
    """A cut name that the model does not have."""


class ReadoutError(GRExplorerError, ValueError):
    """A readout or final-norm setting that a model's cuts do not support (no class token, no registers, no norm)."""


class DatasetError(GRExplorerError, ValueError):
    """Unknown dataset, empty or malformed folder, unusable task."""


class ProbeError(GRExplorerError, ValueError):
    """Unknown probe or unusable probe settings."""


class TrainingError(GRExplorerError, ValueError):
    """A bad training setting (unknown objective, missing label task, impossible augmentation ...)."""


class DiagnosticError(GRExplorerError, ValueError):
    """A bad diagnostics request (unknown metric, missing model or images, mismatched features ...)."""


class CacheError(GRExplorerError, OSError):
    """The feature cache folder cannot be read right now (permissions, too many open files, an I/O error): nothing
    in it is dropped for that, and nothing is trusted from it."""


class OutputError(GRExplorerError, OSError):
    """An output folder that cannot be written or switched in; the earlier outputs there are left as they were."""


class NotCached(GRExplorerError):
    """A run asked to use cached features only (a shared link) found some missing; nothing was computed."""


class ResourceError(GRExplorerError, ValueError):
    """A request beyond a resource limit (the server's caps on images, model size, time): says the limit and the ask."""


class OfflineError(GRExplorerError, RuntimeError):
    """Something had to be downloaded and could not be; says how to supply it."""


class MissingExtraError(GRExplorerError, ImportError):
    """An optional dependency is not installed; says which extra installs it and what works without it."""


class ExportError(GRExplorerError, RuntimeError):
    """A figure could not be written as an image (no browser for the renderer, an unknown format)."""


def did_you_mean(name: str, valid) -> str:
    """A short 'valid: ...' suffix listing the options (closest first)."""

    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
    return f"Valid: {shown}.{hint}"
