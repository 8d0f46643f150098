"""Diagnostic errors: part of the GRExplorerError family, so the CLI and app print the message verbatim."""

from ..errors import GRExplorerError


class DiagnosticError(GRExplorerError, ValueError):
    """A bad diagnostics request (unknown metric, missing model or images, mismatched features ...)."""
