"""Settings: typed fields declared once with their rules; flags, JSON, app defaults and help all come from them.

Why one layer: a sweep and a training run each have dozens of settings, and
every new capability adds more. Each setting is declared once (`setting(...)`:
default, help, label and the rules a value must satisfy, in the spirit of
scikit-learn's `_param_validation`: `Interval(int, 1, None)`, `Options(...)`,
`Items(...)`); from that declaration come the CLI flag and its parser, the JSON
key (run.json, the training card), the app widget's default, range and help,
and the check that runs once when a settings object is built. Inner layers then
trust typed values. Nothing here imports torch or the packages a setting
describes: the names they may take live in `names.py`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import re
import shlex
import stat
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator

from .errors import ConfigError, did_you_mean

# ----------------------------------------------------------------------------------------------
# rules


class Rule:
    """A declared constraint: `accepts(value)` and the text that says what is valid."""

    #: how a command-line word becomes a value of this rule (see parse_flag)
    kind = "str"

    def accepts(self, v) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def hint(self, v) -> str:
        """Extra words for a rejected value (e.g. 'did you mean ...'); empty by default."""
        return ""


def is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Interval(Rule):
    """A number of `type` (int or float) between `lo` and `hi` (None: unbounded); `closed` says which ends count."""

    type: type
    lo: float | None
    hi: float | None
    closed: str = "both"  # both | left | right | neither
    example: Any = None

    @property
    def kind(self) -> str:
        return "int" if self.type is int else "float"

    def accepts(self, v) -> bool:
        if not (is_int(v) if self.type is int else is_number(v)):
            return False
        left = self.closed in ("both", "left")
        right = self.closed in ("both", "right")
        if self.lo is not None and (v < self.lo or (v == self.lo and not left)):
            return False
        return not (self.hi is not None and (v > self.hi or (v == self.hi and not right)))

    def describe(self) -> str:
        what = "an integer" if self.type is int else "a number"
        if self.lo is not None and self.hi is not None:
            if self.closed == "both":
                text = f"{what} from {_num(self.lo)} to {_num(self.hi)}"
            elif self.closed == "neither":
                text = f"{what} strictly between {_num(self.lo)} and {_num(self.hi)}"
            else:
                lb = "[" if self.closed == "left" else "("
                rb = "]" if self.closed == "right" else ")"
                text = f"{what} in {lb}{_num(self.lo)}, {_num(self.hi)}{rb}"
        elif self.lo is not None:
            if self.lo == 0 and self.closed in ("neither", "right"):
                text = "a positive " + ("integer" if self.type is int else "number")
            else:
                text = f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {_num(self.lo)}"
        elif self.hi is not None:
            text = f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {_num(self.hi)}"
        else:
            text = what
        return text + (f" (e.g. {self.example})" if self.example is not None else "")


@dataclass(frozen=True)
class Options(Rule):
    """One of a set of names (a tuple, or a `names.py` registry whose keys are the names); the names in `counted`
    also take a count, `<name>:N` with N satisfying `count` (e.g. `random-init:5`)."""

    names: tuple | dict
    counted: tuple[str, ...] = ()
    count: Interval | None = None

    def accepts(self, v) -> bool:
        if not isinstance(v, str):
            return False
        if v in self.names:
            return True
        name, sep, n = v.partition(":")
        return bool(sep) and name in self.counted and n.isdigit() and self.count.accepts(int(n))

    def describe(self) -> str:
        text = ", ".join(self.names)
        if self.counted:
            text += f", or {'/'.join(self.counted)}:N (N: {self.count.describe()})"
        return text

    def hint(self, v) -> str:
        close = difflib.get_close_matches(str(v), list(self.names), n=1)
        return f"did you mean {close[0]!r} for {v!r}?" if close else ""


@dataclass(frozen=True)
class Text(Rule):
    """A non-empty string (optionally matching `pattern`, described by `what`)."""

    what: str = "a non-empty string"
    pattern: str | None = None

    def accepts(self, v) -> bool:
        if not isinstance(v, str) or not v.strip():
            return False
        return self.pattern is None or re.fullmatch(self.pattern, v) is not None

    def describe(self) -> str:
        return self.what


@dataclass(frozen=True)
class Items(Rule):
    """A list (stored as a tuple) whose items each satisfy `rule`: comma-separated on the command line."""

    rule: Rule
    what: str = ""  # e.g. "probes"; the description is built from the item rule when empty
    min_len: int = 1
    length: int | None = None  # exactly this many (e.g. a min,max pair)
    unique: bool = True
    example: str = ""

    @property
    def kind(self) -> str:
        return {"int": "ints", "float": "floats", "count_word": "counts"}.get(self.rule.kind, "strs")

    def accepts(self, v) -> bool:
        if not isinstance(v, tuple) or len(v) < self.min_len or (self.length is not None and len(v) != self.length):
            return False
        if not all(self.rule.accepts(x) for x in v):
            return False
        return not (self.unique and len(set(v)) != len(v))

    def describe(self) -> str:
        if self.length is not None:
            text = f"{self.length} comma-separated values, each {self.rule.describe()}"
        else:
            item = self.rule.describe()
            head = "a non-empty list" if self.min_len else "a list"
            text = f"{head} of {self.what}" + (f" from: {item}" if isinstance(self.rule, Options) else "") if self.what \
                else f"{head} of {_plural(item)}"
        if self.unique:
            text += ", each named once"
        return text + (f" (e.g. {self.example})" if self.example else "")

    def hint(self, v) -> str:
        if isinstance(v, tuple):
            for x in v:
                if not self.rule.accepts(x):
                    return self.rule.hint(x)
        return ""


@dataclass(frozen=True)
class JSONObject(Rule):
    """A JSON object (a dict with string keys)."""

    kind = "json"

    def accepts(self, v) -> bool:
        return isinstance(v, dict) and all(isinstance(k, str) for k in v)

    def describe(self) -> str:
        return "a JSON object, e.g. '{\"img_size\": 32}'"


@dataclass(frozen=True)
class Flag(Rule):
    """True or False: a switch on the command line."""

    kind = "bool"

    def accepts(self, v) -> bool:
        return isinstance(v, bool)

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class Count(Rule):
    """A positive integer, or the word `word` (shots per class: 1, 5, 10 or all); a list item (Items) of counts."""

    word: str = "all"
    kind = "count_word"

    def accepts(self, v) -> bool:
        return v == self.word or (is_int(v) and v >= 1)

    def describe(self) -> str:
        return f"a positive integer or {self.word!r}"


@dataclass(frozen=True)
class Null(Rule):
    """None is a valid value; `means` says what it stands for (`'all'` on the command line when `word` is set)."""

    means: str = "null"
    word: str | None = None  # the command-line spelling of None, e.g. 'all'

    def accepts(self, v) -> bool:
        return v is None

    def describe(self) -> str:
        return self.means


#: the largest settings file read (a run.json is a few kB)
MAX_JSON_BYTES = 1 << 20
#: the compute device, as every settings class spells it
DEVICE = Text("auto, cpu, cuda, cuda:N or mps", pattern=r"auto|cpu|mps|cuda(:\d+)?")
#: a seed: 32 bits, as NumPy's legacy seeding and most libraries take one; larger seeds overflowed int64 where a
#: seed is combined with others (e.g. seed x 1,000,003 for the invariance metric's augmentations)
MAX_SEED = 2**32 - 1
SEED = Interval(int, 0, MAX_SEED, example=0)
#: images per split a setting may ask for: more than any dataset here holds (ImageNet-1k has 1.28M), so a larger
#: number is a typo that would otherwise reach NumPy as a MemoryError
MAX_IMAGES = 100_000_000
IMAGES = Interval(int, 1, MAX_IMAGES)


def _num(v) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


def _plural(text: str) -> str:
    for a in ("an ", "a "):
        if text.startswith(a):
            noun = text[len(a):]
            head, _, tail = noun.partition(" ")
            return (head + "s " + tail).strip()
    return text


# ----------------------------------------------------------------------------------------------
# declarations


@dataclass
class Setting:
    """What is declared once about a setting. `default` is read when a settings object is built."""

    default: Any
    help: str
    rules: tuple[Rule, ...]
    label: str = ""  # the app's widget label (default: the field name in words)
    flag: str | None = None  # the CLI flag (default: --field-name)
    app: bool = True  # the app offers it (False: CLI / JSON only, e.g. server paths)
    cli: bool = True  # the CLI offers it as a flag
    bookkeeping: bool = False  # where / how a run is written, not what it computes (seed groups ignore it)
    seed: bool = False  # a seed: runs that differ only in seeds are seeds of one design
    name: str = ""

    @property
    def kind(self) -> str:
        """How the command line spells the value: the first non-None rule's kind ('count' for int-or-'all')."""
        real = [r for r in self.rules if not isinstance(r, Null)]
        kind = real[0].kind if real else "str"
        if kind == "int" and any(isinstance(r, Null) and r.word == "all" for r in self.rules):
            return "count"
        return kind

    def accepts(self, v) -> bool:
        return any(r.accepts(v) for r in self.rules)

    def describe(self) -> str:
        """What is valid, the rules in their declared order ('an integer >= 1, or null / 'all' ...')."""
        return ", or ".join(r.describe() for r in self.rules)

    def problem(self, v) -> str | None:
        """None when `v` is valid, else 'name=value is invalid. Valid: ...' (with a hint where one helps)."""
        if self.accepts(v):
            return None
        hints = [h for h in (r.hint(v) for r in self.rules) if h]
        why = self.describe() + (f"; {hints[0]}" if hints else "")
        end = "" if why.endswith(("?", ".")) else "."
        return f"{self.name}={_show(v)} is invalid. Valid: {why}{end}"

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def widget_label(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def default_text(self) -> str:
        """The default as the CLI help shows it ('' when there is nothing to show)."""
        d = self.default
        if d is None:
            return "all" if self.kind == "count" else ""
        if isinstance(d, tuple):
            return ",".join(map(str, d))
        if isinstance(d, bool):
            return "on" if d else ""
        return str(d)


def setting(default, help: str, *rules: Rule, required: bool = False, **meta):
    """Declare a dataclass field as a setting. `required`: no default (e.g. the models of a sweep)."""
    spec = Setting(_normalise(default), help, tuple(rules), **meta)
    if required:
        return field(metadata={"setting": spec})
    return field(default_factory=lambda: spec.default, metadata={"setting": spec})


def _normalise(v):
    """Lists become tuples, so settings are frozen and hashable; JSON objects stay dicts."""
    return tuple(_normalise(x) for x in v) if isinstance(v, list | tuple) else v


def _show(v) -> str:
    return repr(list(v)) if isinstance(v, tuple) else repr(v)


def _listed(v):
    """A value as JSON holds it: tuples become lists, dicts are copied (a settings object is never shared)."""
    if isinstance(v, dict):
        return {k: _listed(x) for k, x in v.items()}
    return [_listed(x) for x in v] if isinstance(v, tuple) else v


class Settings:
    """Base of every settings dataclass: checks on construction, and every view generated from the declarations.

    Subclasses are `@dataclass(frozen=True)` with fields declared by `setting(...)`, and may override
    `error` (the exception raised), `cross_checks()` (rules that relate fields) and the JSON tag/version.
    """

    error: ClassVar[type[Exception]] = ConfigError
    json_tag: ClassVar[str | None] = None  # e.g. "gr_explorer_run": the key that carries the JSON version
    json_version: ClassVar[int] = 1
    json_versions: ClassVar[tuple[int, ...]] = (1,)
    what: ClassVar[str] = "settings"

    def __post_init__(self):
        for name, spec in self.declared():
            value = _normalise(getattr(self, name))
            if spec.kind == "strs" and isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, value)
        problems = [p for p in (spec.problem(getattr(self, name)) for name, spec in self.declared()) if p]
        if not problems:
            problems = list(self.cross_checks())
        if problems:
            raise self.error(" ".join(problems))

    def cross_checks(self) -> Iterator[str]:
        """Rules between fields (each a full sentence); none by default."""
        return iter(())

    # -- declarations ---------------------------------------------------------------------------
    @classmethod
    def declared(cls) -> list[tuple[str, Setting]]:
        """(name, Setting) of every field, in declaration order (names filled in from the fields)."""
        out = []
        for f in fields(cls):
            spec = f.metadata["setting"]
            spec.name = f.name
            out.append((f.name, spec))
        return out

    @classmethod
    def spec(cls, name: str) -> Setting:
        return dict(cls.declared())[name]

    @classmethod
    def defaults(cls) -> dict:
        """Every default (the app's widgets and the CLI's help start from these)."""
        return {name: spec.default for name, spec in cls.declared() if not _required(cls, name)}

    # -- JSON ------------------------------------------------------------------------------------
    def as_dict(self) -> dict:
        return {name: _listed(getattr(self, name)) for name, _ in self.declared()}

    def to_json(self) -> str:
        head = {self.json_tag: self.json_version} if self.json_tag else {}
        return json.dumps({**head, **self.as_dict()}, indent=2)

    def replace(self, **changes):
        return type(self).from_dict({**self.as_dict(), **changes})

    @classmethod
    def from_dict(cls, d: dict, source: str | None = None):
        source = source or f"the {cls.what}"
        if not isinstance(d, dict):
            raise cls.error(f"{source} must be a JSON object{cls._required_hint()}.")
        if cls.json_tag:
            version = d.get(cls.json_tag, cls.json_version)
            if version not in cls.json_versions:
                raise cls.error(f"{source} has {cls.json_tag}={version!r}, a version this gr-explorer cannot read. "
                                f"Valid: {', '.join(map(str, cls.json_versions))}.")
        known = [name for name, _ in cls.declared()]
        extra = sorted(set(d) - set(known) - {cls.json_tag})
        if extra:
            raise cls.error(f"Unknown key(s) {extra} in {source}. {did_you_mean(extra[0], known)}")
        for name in known:
            if _required(cls, name) and name not in d:
                raise cls.error(f"{source} has no {name!r} list. Valid: e.g. {{\"{name}\": [...]}}.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def _required_hint(cls) -> str:
        req = [name for name, _ in cls.declared() if _required(cls, name)]
        return f" with at least a {req[0]!r} list" if req else ""

    @classmethod
    def load(cls, path: str | Path):
        """Settings from a JSON file: a regular file of at most MAX_JSON_BYTES (a named pipe, a device such as /dev/zero
        or a huge file is refused before it is opened, so nothing blocks or fills the memory), nested at most as deep
        as the JSON parser goes."""
        p = Path(path)
        what = f"{cls.what.capitalize()} {str(p)!r}"
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a named pipe" if stat.S_ISFIFO(st.st_mode) else \
                    "a device or socket"
                raise cls.error(f"{what} is {kind}, not a file. Valid: a JSON file such as the run.json an earlier run "
                                "wrote.")
            if st.st_size > MAX_JSON_BYTES:
                raise cls.error(f"{what} has {st.st_size:,} bytes, more than a settings file ever needs. Valid: a JSON "
                                f"file of at most {MAX_JSON_BYTES:,} bytes, such as the run.json an earlier run wrote.")
            d = json.loads(p.read_bytes().decode("utf-8"))
        except FileNotFoundError as e:
            raise cls.error(f"{what} does not exist.") from e
        except (OSError, UnicodeDecodeError) as e:
            raise cls.error(f"{what} cannot be read: {e}.") from e
        except json.JSONDecodeError as e:
            raise cls.error(f"{what} is not valid JSON: {e}.") from e
        except RecursionError:
            raise cls.error(f"{what} is nested too deeply to be a settings file. Valid: a JSON object of settings, "
                            "such as the run.json an earlier run wrote.") from None
        return cls.from_dict(d, source=what)

    # -- command line ----------------------------------------------------------------------------
    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser, *, repeat: tuple[str, ...] = (),
                  only: tuple[str, ...] | None = None) -> None:
        """One flag per setting (or per setting named in `only`), its help ending with the default; `repeat` names
        settings whose flag may repeat.

        Every flag defaults to None, meaning 'not given', so a run.json or the declaration supplies the value.
        """
        for name, spec in cls.declared():
            if not spec.cli or (only is not None and name not in only):
                continue
            shown = spec.default_text()
            text = spec.help + (f" (default: {shown})" if shown and "(default:" not in spec.help else "")
            text = text.replace("%", "%%")
            if spec.kind == "bool":
                parser.add_argument(spec.flag_name, dest=name, action="store_true", default=None, help=text)
            else:
                extra = {"action": "append"} if name in repeat else {}
                parser.add_argument(spec.flag_name, dest=name, default=None, metavar=spec.kind.upper(), help=text,
                                    **extra)

    @classmethod
    def given_flags(cls, args: argparse.Namespace) -> dict:
        """{name: typed value} of the flags given on the command line (a repeated flag's values joined)."""
        out = {}
        for name, spec in cls.declared():
            value = getattr(args, name, None)
            if value is None or not spec.cli:
                continue
            if spec.kind == "bool":
                out[name] = bool(value)
            elif isinstance(value, list):
                out[name] = tuple(v for text in value for v in parse_flag(spec.kind, text, spec.flag_name, cls.error))
            else:
                out[name] = parse_flag(spec.kind, value, spec.flag_name, cls.error)
        return out

    def to_command(self, head: list[str], always: tuple[str, ...] = ()) -> str:
        """The command line that rebuilds exactly these settings: `head` + the flags that differ from the defaults."""
        parts = list(head)
        for name, spec in self.declared():
            value = getattr(self, name)
            if name not in always and value == spec.default:
                continue
            if spec.kind == "bool":
                if value:
                    parts.append(spec.flag_name)
                continue
            if value is None:
                continue
            parts += [spec.flag_name, format_flag(spec.kind, value)]
        return " ".join(shlex.quote(p) for p in parts)

    def changed(self) -> dict:
        """The settings that differ from their declared defaults."""
        return {name: getattr(self, name) for name, spec in self.declared()
                if _required(type(self), name) or getattr(self, name) != spec.default}


def _required(cls, name: str) -> bool:
    f = cls.__dataclass_fields__[name]
    return f.default is MISSING and f.default_factory is MISSING


# ----------------------------------------------------------------------------------------------
# command-line words <-> values

FORMS = {"int": "an integer", "count": "an integer >= 1 or 'all'", "float": "a number",
         "floats": "comma-separated numbers, e.g. 0.01,0.1,1", "ints": "comma-separated integers, e.g. 5,10,20",
         "counts": "comma-separated positive integers or 'all', e.g. 1,5,10,all",
         "json": "a JSON object, e.g. '{\"img_size\": 32}'"}


def parse_flag(kind: str, text: str, flag: str, error: type[Exception] = ConfigError):
    """Flag text -> typed value; a bad word raises `error` naming the flag, the text and the valid form."""
    try:
        if kind == "int":
            return int(text)
        if kind == "count":
            return None if text.strip().lower() == "all" else int(text)
        if kind == "float":
            return float(text)
        if kind == "floats":
            return tuple(float(v) for v in text.split(",") if v.strip())
        if kind == "ints":
            return tuple(int(v) for v in text.split(",") if v.strip())
        if kind == "counts":
            return tuple("all" if v.strip().lower() == "all" else int(v) for v in text.split(",") if v.strip())
        if kind == "strs":
            return tuple(v.strip() for v in text.split(",") if v.strip())
        if kind == "json":
            d = json.loads(text)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            return d
        return text
    except ValueError:
        raise error(f"{flag} {text!r} is invalid. Valid: {FORMS.get(kind, 'text')}.") from None


def format_flag(kind: str, value) -> str:
    """A value as the command line spells it (the inverse of parse_flag)."""
    if kind in ("ints", "floats", "strs", "counts"):
        return ",".join(_word(v) for v in value)
    if kind == "json":
        return json.dumps(value, separators=(",", ":"))
    return _word(value)


def _word(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)
