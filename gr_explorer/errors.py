"""Errors that name the bad input and what would be valid.

All of them derive from GRExplorerError so the CLI and the app can show the
message instead of a traceback, and from ValueError where the input is at fault.
"""


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


class OfflineError(GRExplorerError, RuntimeError):
    """Something had to be downloaded and could not be; says how to supply it."""


def did_you_mean(name: str, valid) -> str:
    """A short 'valid: ...' suffix listing the options (closest first)."""
    import difflib

    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
    return f"Valid: {shown}.{hint}"
