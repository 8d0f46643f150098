"""How a difference reads, everywhere: one rule for the verdict and one formatter for its numbers.

Why one module: the CLI, the app's tables, the plot labels, the cards' README
and Compare all print a gain with its interval and say whether it is clear.
Written out in each place, the wording and the rounding drifted (a clear gain
once showed as "+3 [0, 6]"); here a difference is *clear* when its 95%
interval excludes 0, and its numbers never round a clear bound onto 0.
"""

from __future__ import annotations

import math

NO_CLEAR_GAIN = "no clear gain"
NO_CLEAR_DIFFERENCE = "no clear difference"


def _nan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def clear(lo: float, hi: float) -> bool:
    """A difference is clear when its interval excludes 0 (either side)."""
    return not _nan(lo) and (lo > 0 or hi < 0)


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


def gain_text(v: float, lo: float, hi: float, is_clear: bool | None = None, *, style: str = "full",
              unit: str = "pts", digits: int = 1) -> str:
    """A guillotine gain with its interval and verdict.

    style: `full` ('+12.3 pts [+8.1, +16.4]', or 'no clear gain (...)'), `suffix` (the numbers, then
    ' (no clear gain)' when not clear), `short` (the numbers when clear, else just 'no clear gain').
    `is_clear` defaults to the interval rule; seed-level verdicts pass their own.
    """
    is_clear = (not _nan(lo) and lo > 0) if is_clear is None else bool(is_clear)
    numbers = interval_text(v, lo, hi, unit=unit, digits=digits)
    if unit == "pts" and style == "full":
        numbers = numbers.replace(" [", " pts [", 1) if " [" in numbers else numbers + " pts"
    if _nan(lo):
        return f"{numbers} (no interval)"
    if style == "short":
        return numbers if is_clear else NO_CLEAR_GAIN
    if style == "suffix":
        return numbers + ("" if is_clear else f" ({NO_CLEAR_GAIN})")
    return numbers if is_clear else f"{NO_CLEAR_GAIN} ({numbers})"


def difference_text(v: float, lo: float, hi: float, *, unit: str = "pts") -> str:
    """A two-sided comparison (model vs its random-init twin): 'no clear difference (...)' when it contains 0."""
    numbers = interval_text(v, lo, hi, unit=unit)
    if _nan(lo):
        return numbers + (" pts" if unit == "pts" else "")
    return numbers if clear(lo, hi) else f"{NO_CLEAR_DIFFERENCE} ({numbers})"


def seeds_gain_text(mean: float, sd: float, n: int, lo: float, hi: float, is_clear: bool) -> str:
    """A design's gain over seeds: '+4.6 ± 2.0 pts over 6 seeds [+2.6, +6.5]' (t interval of the mean), or
    'no clear gain (...)' when that interval contains 0."""
    d = _digits_for(lo, hi, 1) if is_clear else 1
    numbers = f"{pts(mean, d)} ± {100 * sd:.1f} pts over {n} seeds [{pts(lo, d)}, {pts(hi, d)}]"
    return numbers if is_clear else f"{NO_CLEAR_GAIN} ({numbers})"
