"""The probe interface every head implements, and the typed result it returns for one (cut, task).

Why an interface: a sweep fits several heads (linear, k-NN, and heads to
come: attentive, multi-layer, few-shot) on the same cached features with the
same validation split, and reads back the same result fields from each. A head
searches one hyper-parameter on validation; its result says which one (`hparam`,
`value` as searched) and what was really used (`used`, e.g. k capped at the
train-bank size), as numbers, never as a string to parse back. A head that
searches a grid of several (the attentive probe: learning rate x weight decay)
names the others in `also` (their chosen values) and keys `search` by tuples.
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
    #: hyper-parameter value -> validation accuracy; keys are tuples (value, *also's values) when `also` is set
    search: dict = field(default_factory=dict)
    correct: torch.Tensor | None = field(default=None, compare=False, repr=False)  # bool [n_test]
    #: bool [n_val]: per validation image, right or wrong with the chosen hyper-parameter (the same validation images
    #: for every cut of a sweep, so re-choosing the cut on resampled validation images needs no refit; see choice.py)
    val_correct: torch.Tensor | None = field(default=None, compare=False, repr=False)
    #: further hyper-parameters searched jointly with `hparam`, with their chosen values (e.g. {'wd': 1e-4})
    also: dict[str, float] = field(default_factory=dict)

    @property
    def setting(self) -> str:
        """'C=0.1' / 'k=20' / 'lr=0.001 wd=0.0001': the used value(s) as tables show them."""
        head = f"{self.hparam}={self.used}" if isinstance(self.used, int) else f"{self.hparam}={self.used:g}"
        return " ".join([head, *(f"{k}={v:g}" for k, v in self.also.items())])

    @property
    def chosen(self):
        """The key of `search` that was chosen."""
        return (self.value, *self.also.values()) if self.also else self.value


class Head:
    """A probe head: `fit` every (cut, task) of a sweep's features and return one ProbeResult each.

    `fit_idx` / `val_idx` index the train features: the head chooses its hyper-parameter on them, then
    refits on the train rows `refit_idx` (None: all of them; a few-shot draw refits on the draw alone) and
    scores the test features. `tick(n, message)` reports n finished (cut, task) fits and may raise
    progress.Cancelled to stop. `inputs` says what a head reads: pooled `vectors` [N, D] or `tokens` [N, T, C].
    """

    name: ClassVar[str]
    hparam: ClassVar[str]
    inputs: ClassVar[str] = "vectors"

    def fit(self, train_feats: Mapping[str, torch.Tensor], train_labels: Mapping[str, torch.Tensor],
            test_feats: Mapping[str, torch.Tensor], test_labels: Mapping[str, torch.Tensor], *, fit_idx: torch.Tensor,
            val_idx: torch.Tensor, n_classes: Mapping[str, int], device: torch.device, tick: Tick,
            refit_idx: torch.Tensor | None = None) -> dict[tuple[str, str], ProbeResult]:  # pragma: no cover
        raise NotImplementedError

    def unconverged(self, results: Mapping[tuple[str, str], ProbeResult]) -> str:
        """A sentence for the (cut, task) fits that did not converge ('' when all did)."""
        stuck = [f"{c}/{t}" for (c, t), r in results.items() if not r.converged]
        if not stuck:
            return ""
        return (f"the {self.name} probe did not converge for {len(stuck)} (cut, task) fit(s): {', '.join(stuck[:6])}"
                f"{' ...' if len(stuck) > 6 else ''}. Their accuracies may be slightly low (the converged column says "
                "which).")
