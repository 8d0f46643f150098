"""Session-state helpers: widget values that survive page switches, and this session's own models.

Streamlit forgets the value of a widget that is not drawn in a run (e.g. the
Explore settings while the user is on Compare). `kept` stores every value
under a second, non-widget key and restores it when the widget comes back.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

_KEEP = "_kept:"
#: spec -> {"label": ..., "description": ..., "kind": "trained"|"uploaded", "path": ...}
SESSION_MODELS = "session_models"


def kept(widget: Callable, label: str, *, key: str, options: list | None = None, **kwargs) -> Any:
    """Draw `widget(label, key=key, ...)` with its last value restored (also after visiting another page)."""
    ss = st.session_state
    store = _KEEP + key
    if key not in ss and store in ss:
        value = ss[store]
        ok = True
        if options is not None:
            if isinstance(value, list):
                value = [v for v in value if v in options]
            else:
                ok = value in options
        if ok:
            ss[key] = value
    if key in ss:  # the value comes from the session; a default as well would make Streamlit warn
        if options is not None and not isinstance(ss[key], list) and ss[key] not in options:
            del ss[key]
        else:
            for k in ("value", "index", "default"):
                kwargs.pop(k, None)
    if options is not None:
        kwargs["options"] = options
    value = widget(label, key=key, **kwargs)
    ss[store] = value
    return value


def preset(key: str, value: Any) -> None:
    """Make a widget (on any page) show `value` the next time it is drawn (call before it is drawn)."""
    st.session_state[_KEEP + key] = value
    st.session_state[key] = value


def session_id() -> str:
    ss = st.session_state
    if "_session_uuid" not in ss:
        ss["_session_uuid"] = uuid.uuid4().hex[:12]
    return ss["_session_uuid"]


def session_alive() -> Callable[[], bool] | None:
    """For a Job: a check that this browser session is still connected (Runtime.is_active_session, safe on any
    thread). None when there is no connected session to watch (AppTest, a bare script run)."""
    ctx = get_script_run_ctx()
    if ctx is None or not Runtime.exists():
        return None
    runtime, sid = Runtime.instance(), ctx.session_id
    if not runtime.is_active_session(sid):
        return None
    return lambda: runtime.is_active_session(sid)


def session_models() -> dict[str, dict]:
    return st.session_state.setdefault(SESSION_MODELS, {})


def add_session_model(spec: str, *, label: str, description: str, kind: str, path: Path | None = None) -> None:
    session_models()[spec] = {"label": label, "description": description, "kind": kind, "path": str(path) if path else None}
