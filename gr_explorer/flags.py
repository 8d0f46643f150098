"""Command-line text -> typed values, one parser for every generated flag (sweep and train).

Kinds: int, count (an int, or 'all' for the whole split), float, ints / floats / strs (comma-separated),
json (an object), str. A bad value raises the caller's error class with the flag, the text and the form
that would be valid.
"""

from __future__ import annotations

import json

from .errors import ConfigError

FORMS = {"int": "an integer", "count": "an integer >= 1 or 'all'", "float": "a number",
         "floats": "comma-separated numbers, e.g. 0.01,0.1,1", "ints": "comma-separated integers, e.g. 5,10,20",
         "json": "a JSON object, e.g. '{\"img_size\": 32}'"}


def parse_flag(kind: str, text: str, flag: str, error: type[Exception] = ConfigError):
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
