"""Cuts: the named places where a model can be cut (how a cut's output becomes a vector: readout.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .readout import Readout


@dataclass(frozen=True)
class Cut:
    """One cut. `depth` is its position in forward order (0..n-1) across backbone and projector."""

    name: str
    depth: int
    part: str  # "backbone" or "projector"
    dim: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Column:
    """One feature column of a sweep: a cut read out one way. It gives one row per (task, probe) in the results.

    `readout` and `norm` name the curve the column belongs to (what was asked for); `applied` is what is
    computed for this cut: a vector cut's pooling is `-`, and the norm is off where it does not apply, so
    such a column's features are those of the same cut in the other curves (extracted and fitted once).
    `name` keys the column in Features: the cut name for the first curve, `<cut>@<readout>[@norm]` for others.
    """

    name: str
    cut: Cut
    readout: str
    norm: str  # "off" | "on"
    applied: Readout
