"""The probe interface every head implements, and the typed result it returns for one (cut, task).

Why an interface: a sweep fits several heads (linear, k-NN, and heads to
come: attentive, multi-layer, few-shot) on the same cached features with the
same validation split, and reads back the same result fields from each. A head
searches one hyper-parameter on validation; its result says which one (`hparam`,
`value` as searched) and what was really used (`used`, e.g. k capped at the
train-bank size), as numbers, never as a string to parse back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Mapping

import torch

Tick = Callable[[int, str], None]


@dataclass
class ProbeResult:
    """One fitted probe: a (cut, task, probe) with everything a table, an interval or a plot needs."""

    cut: str
    task: str
    probe: str
    accuracy: float  # test accuracy of the refitted probe
    val_accuracy: float  # validation accuracy of the chosen hyper-parameter
    hparam: str  # the hyper-parameter searched: 'C' (linear), 'k' (k-NN)
    value: float  # its chosen value, as searched (a key of `search`)
    used: float | int  # the value the refitted probe really used (k capped at the train-bank size); int for counts
    n_classes: int
    converged: bool = True
    n_iter: int = 0
    search: dict[float, float] = field(default_factory=dict)  # hyper-parameter value -> validation accuracy
    correct: torch.Tensor | None = field(default=None, compare=False, repr=False)  # bool [n_test]
    #: bool [n_val]: per validation image, right or wrong with the chosen hyper-parameter (the same validation images
    #: for every cut of a sweep, so re-choosing the cut on resampled validation images needs no refit; see choice.py)
    val_correct: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @property
    def setting(self) -> str:
        """'C=0.1' / 'k=20': the used value as tables show it."""
        return f"{self.hparam}={self.used}" if isinstance(self.used, int) else f"{self.hparam}={self.used:g}"


class Head:
    """A probe head: `fit` every (cut, task) of a sweep's features and return one ProbeResult each.

    `fit_idx` / `val_idx` index the train features: the head chooses its hyper-parameter on them, then
    refits on all train features and scores the test features. `tick(n, message)` reports n finished
    (cut, task) fits and may raise progress.Cancelled to stop.
    """

    name: ClassVar[str]
    hparam: ClassVar[str]

    def fit(self, train_feats: Mapping[str, torch.Tensor], train_labels: Mapping[str, torch.Tensor],
            test_feats: Mapping[str, torch.Tensor], test_labels: Mapping[str, torch.Tensor], *, fit_idx: torch.Tensor,
            val_idx: torch.Tensor, n_classes: Mapping[str, int], device: torch.device,
            tick: Tick) -> dict[tuple[str, str], ProbeResult]:  # pragma: no cover - interface
        raise NotImplementedError
