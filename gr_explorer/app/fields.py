"""Widgets drawn from settings declarations: each widget's label, help, default and range come from settings.py.

Why: the app is one of three faces of the same settings (with the CLI flags and
the JSON files). A widget that restated a default or a range would drift from
the other two; here it reads them from the declaration, so changing a default
in `config.py` / `training/config.py` changes the widget too.
"""

from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from ..names import Entry
from ..settings import Interval, Items, Options, Settings
from .state import kept


def _interval(spec) -> Interval:
    for r in spec.rules:
        if isinstance(r, Interval):
            return r
        if isinstance(r, Items) and isinstance(r.rule, Interval):
            return r.rule
    raise TypeError(f"setting {spec.name!r} has no numeric range")


def _options(spec) -> tuple | dict:
    for r in spec.rules:
        if isinstance(r, Options):
            return r.names
        if isinstance(r, Items) and isinstance(r.rule, Options):
            return r.rule.names
    raise TypeError(f"setting {spec.name!r} has no options")


def _declared_or(spec, options: list):
    """The declared registry when the setting has one (its labels), else the options given (e.g. the devices here)."""
    try:
        return _options(spec)
    except TypeError:
        return options


def label_func(names) -> Callable[[Any], str]:
    """A registry's display labels (names.py), or the names themselves."""
    if isinstance(names, dict) and all(isinstance(e, Entry) for e in names.values()):
        return lambda n: names[n].label if n in names else str(n)
    return str


def _help(spec, extra: str) -> str:
    text = spec.help[:1].upper() + spec.help[1:]
    return f"{text}. {extra}".strip() if extra else text + "."


def number(cls: type[Settings], name: str, *, key: str, where=st, step=None, zero_means_none: bool = False,
           label: str | None = None, extra_help: str = "", value=None, hi=None):
    """A number input with the declared range and default (`zero_means_none`: 0 stands for None, e.g. 'all';
    `hi`: a lower maximum than the declared one, e.g. the server's limit)."""
    spec = cls.spec(name)
    rule = _interval(spec)
    cast = int if rule.type is int else float
    lo = 0 if zero_means_none else rule.lo
    default = spec.default if value is None else value
    default = 0 if default is None else default
    kw = dict(value=cast(default), help=_help(spec, extra_help))
    if lo is not None:
        kw["min_value"] = cast(lo) if rule.closed in ("both", "left") or zero_means_none else cast(lo) + (1 if cast is int else 0)
    top = min(v for v in (rule.hi, hi) if v is not None) if rule.hi is not None or hi is not None else None
    if top is not None:
        kw["max_value"] = cast(top)
        kw["value"] = min(kw["value"], cast(top))
    if step is not None:
        kw["step"] = cast(step)
    if cast is float:
        kw["format"] = "%.4g"
    got = kept(where.number_input, label or spec.widget_label, key=key, **kw)
    return None if zero_means_none and got == 0 else cast(got)


def slider(cls: type[Settings], name: str, *, key: str, step: float, where=st, label: str | None = None,
           hi: float | None = None, value=None, extra_help: str = "") -> float:
    """A slider over the declared range (`hi` caps an open-ended range for the widget only)."""
    spec = cls.spec(name)
    rule = _interval(spec)
    top = rule.hi if rule.hi is not None else hi
    default = spec.default if value is None else value
    return float(kept(where.slider, label or spec.widget_label, key=key, min_value=float(rule.lo), max_value=float(top),
                      value=float(default), step=step, help=_help(spec, extra_help)))


def choice(cls: type[Settings], name: str, *, key: str, where=st, options: list | None = None, label: str | None = None,
           format_func=None, extra_help: str = "", default=None):
    """A selectbox over the declared options (or `options`), starting at the declared default."""
    spec = cls.spec(name)
    names = _options(spec) if options is None else _declared_or(spec, options)
    opts = list(options if options is not None else names)
    start = spec.default if default is None else default
    return kept(where.selectbox, label or spec.widget_label, key=key, options=opts,
                index=opts.index(start) if start in opts else 0, format_func=format_func or label_func(names),
                help=_help(spec, extra_help))


def choices(cls: type[Settings], name: str, *, key: str, where=st, default=None, label: str | None = None,
            extra_help: str = "") -> list:
    """A multiselect over the declared options, in declaration order, starting at the declared default."""
    spec = cls.spec(name)
    names = _options(spec)
    start = list(spec.default) if default is None else list(default)
    got = kept(where.multiselect, label or spec.widget_label, key=key, options=list(names), default=start,
               format_func=label_func(names), help=_help(spec, extra_help))
    return [n for n in names if n in got]
