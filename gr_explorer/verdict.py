"""How a difference reads, everywhere: one rule for the verdict and one formatter for its numbers.

Why one module: the CLI, the app's tables, the plot labels, the cards' README
and Compare all print a gain with its interval and say whether it is clear.
Written out in each place, the wording and the rounding drifted (a clear gain
once showed as "+3 [0, 6]"); here a difference is *clear* when its 95%
interval excludes 0, and its numbers never round a clear bound onto 0.

Three states, not two: a verdict whose deciding bound sits within a few test
images of 0 flips with the machine (thread-count rounding moved zoo:byol's
shape gain from +2.9 [+0.2, +5.4] to +2.5 [-0.1, +4.9], four images) or with
the validation sample that chose the cut. Such a verdict is *borderline* and
says so with its numbers (`gain_verdict`, `difference_verdict`):

* the bound nearest 0 is within BORDERLINE_IMAGES test images' worth of
  accuracy of 0 (`margin(n_test)`: 0.005 at 1,000 test images) while the
  interval reaches beyond that margin on the side of the estimate; or
* the gain is clear with the cut fixed, but not once the choice of cut is in
  the interval (choice.py: re-chosen on resampled validation images, more than
  2.5% of the joint resamples gain nothing).
"""

from __future__ import annotations

import math

CLEAR_GAIN = "clear gain"
NO_CLEAR_GAIN = "no clear gain"
BORDERLINE = "borderline"
CLEAR_DIFFERENCE = "clear difference"
NO_CLEAR_DIFFERENCE = "no clear difference"
#: the verdicts a gain can have, and a two-sided difference
GAIN_VERDICTS = (CLEAR_GAIN, BORDERLINE, NO_CLEAR_GAIN)
DIFFERENCE_VERDICTS = (CLEAR_DIFFERENCE, BORDERLINE, NO_CLEAR_DIFFERENCE)
#: a bound this many test images' worth of accuracy from 0 is borderline: above the 4 images by which the same
#: sweep moved between machines (issue 28), so a verdict that can flip by machine reads borderline on both
BORDERLINE_IMAGES = 5


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def clear(lo: float, hi: float) -> bool:
    """A difference is clear when its interval excludes 0 (either side)."""
    return not _nan(lo) and (lo > 0 or hi < 0)


def margin(n_test: float) -> float:
    """The borderline margin in accuracy: BORDERLINE_IMAGES test images' worth (0 when the count is unknown)."""
    return BORDERLINE_IMAGES / n_test if not _nan(n_test) and n_test > 0 else 0.0


def _near(lo: float, hi: float, m: float) -> bool:
    """The lower bound is within `m` of 0 while the interval reaches past `m` (a gain that some images decide)."""
    return m > 0 and abs(lo) <= m < hi


def gain_verdict(lo: float, hi: float, m: float = 0.0, choice_lo: float = float("nan")) -> str:
    """clear gain | borderline | no clear gain, for a gain interval [lo, hi] (`m`: margin(n_test); `choice_lo`: the
    lower bound once the choice of cut is in the interval, NaN when unknown)."""
    if _nan(lo):
        return NO_CLEAR_GAIN
    if _near(lo, hi, m) or (lo > 0 and not _nan(choice_lo) and choice_lo <= 0):
        return BORDERLINE
    return CLEAR_GAIN if lo > 0 else NO_CLEAR_GAIN


def difference_verdict(v: float, lo: float, hi: float, m: float = 0.0) -> str:
    """clear difference | borderline | no clear difference, two-sided: the bound nearest 0 on the estimate's side
    decides, as for a gain."""
    if _nan(lo):
        return NO_CLEAR_DIFFERENCE
    a, b = (lo, hi) if v >= 0 else (-hi, -lo)
    if _near(a, b, m):
        return BORDERLINE
    return CLEAR_DIFFERENCE if clear(lo, hi) else NO_CLEAR_DIFFERENCE


def pts(v: float, digits: int = 1) -> str:
    """An accuracy difference in percentage points, signed: +12.3."""
    return f"{100 * v:+.{digits}f}"


def _digits_for(lo: float, hi: float, digits: int) -> int:
    """More decimals when a bound that excludes 0 would otherwise print as 0."""
    for b in (lo, hi):
        while digits < 4 and b != 0 and round(100 * b, digits) == 0:
            digits += 1
    return digits


def gain_label(v: float) -> str:
    """A clear gain as the chart's label beside its star: whole points ('+12'), one decimal when that would
    read '+0' ('+0.4')."""
    digits = 0
    while digits < 3 and v != 0 and round(100 * v, digits) == 0:
        digits += 1
    return pts(v, digits)


def interval_text(v: float, lo: float, hi: float, *, unit: str = "pts", digits: int = 1) -> str:
    """'+12.3 [+8.1, +16.4]' (points) or '+0.123 [+0.081, +0.164]' (accuracy); no interval: the value alone."""
    if unit == "acc":
        return f"{v:+.3f}" if _nan(lo) else f"{v:+.3f} [{lo:+.3f}, {hi:+.3f}]"
    if _nan(lo):
        return pts(v, digits)
    d = _digits_for(lo, hi, digits) if clear(lo, hi) else digits
    return f"{pts(v, d)} [{pts(lo, d)}, {pts(hi, d)}]"


def gain_text(v: float, lo: float, hi: float, is_clear: bool | None = None, *, verdict: str | None = None,
              style: str = "full", unit: str = "pts", digits: int = 1) -> str:
    """A guillotine gain with its interval and verdict.

    style: `full` ('+12.3 pts [+8.1, +16.4]', or 'no clear gain (...)' / 'borderline (...)'), `suffix` (the
    numbers, then ' (no clear gain)' / ' (borderline)' when not clear), `short` (the numbers when clear, else just
    the verdict). `verdict` (one of GAIN_VERDICTS, e.g. a summary's `gain_verdict`) decides when given; else
    `is_clear`, else the interval rule (seed-level verdicts pass their own `is_clear`).
    """
    if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)):
        is_clear = (not _nan(lo) and lo > 0) if is_clear is None else bool(is_clear)
        verdict = CLEAR_GAIN if is_clear else NO_CLEAR_GAIN
    numbers = interval_text(v, lo, hi, unit=unit, digits=digits)
    if unit == "pts" and style == "full":
        numbers = numbers.replace(" [", " pts [", 1) if " [" in numbers else numbers + " pts"
    if _nan(lo):
        return f"{numbers} (no interval)"
    if style == "short":
        return numbers if verdict == CLEAR_GAIN else verdict
    if style == "suffix":
        return numbers + ("" if verdict == CLEAR_GAIN else f" ({verdict})")
    return numbers if verdict == CLEAR_GAIN else f"{verdict} ({numbers})"


def difference_text(v: float, lo: float, hi: float, *, unit: str = "pts", verdict: str | None = None) -> str:
    """A two-sided comparison (model vs its random-init twin): 'no clear difference (...)' when it contains 0,
    'borderline (...)' when `verdict` (difference_verdict's) says so."""
    numbers = interval_text(v, lo, hi, unit=unit)
    if _nan(lo):
        return numbers + (" pts" if unit == "pts" else "")
    if verdict is None or (isinstance(verdict, float) and math.isnan(verdict)):
        verdict = CLEAR_DIFFERENCE if clear(lo, hi) else NO_CLEAR_DIFFERENCE
    return numbers if verdict == CLEAR_DIFFERENCE else f"{verdict} ({numbers})"


def training_text(v: float, lo: float, hi: float, verdict: str | None = None, *, unit: str = "pts") -> str:
    """The share of a gain that training caused (the model's gain minus its random-init twin's):
    'of which training: +4.1 [+1.6, +6.7]', with the verdict when it is not clear ('' without a value)."""
    if _nan(v):
        return ""
    return "of which training: " + difference_text(v, lo, hi, unit=unit, verdict=verdict)


def seeds_gain_text(mean: float, sd: float, n: int, lo: float, hi: float, is_clear: bool) -> str:
    """A design's gain over seeds: '+4.6 ± 2.0 pts over 6 seeds [+2.6, +6.5]' (t interval of the mean), or
    'no clear gain (...)' when that interval contains 0."""
    d = _digits_for(lo, hi, 1) if is_clear else 1
    numbers = f"{pts(mean, d)} ± {100 * sd:.1f} pts over {n} seeds [{pts(lo, d)}, {pts(hi, d)}]"
    return numbers if is_clear else f"{NO_CLEAR_GAIN} ({numbers})"
