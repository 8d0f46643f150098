"""Training errors: part of the GRExplorerError family, so the CLI and app print the message verbatim."""

from ..errors import GRExplorerError


class TrainingError(GRExplorerError, ValueError):
    """A bad training setting (unknown objective, missing label task, impossible augmentation ...)."""
