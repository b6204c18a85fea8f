"""What a hook answers (allow, reject, rewrite, replace-rows), from JSON or a
component's verdict record, and SQL values in the JSON plugins see."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..abi_component import sql_of_value
from ..errors import (
    PluginError,
)
from ..values import SqlValue

STAGE_ACTIONS = {
    "pre-parse": {"allow", "reject", "rewrite"},
    "post-parse": {"allow", "reject", "rewrite"},
    "pre-execution": {"allow", "reject"},
    "post-execution": {"allow", "reject", "replace-rows"},
}


def guest_json(answer: str) -> Any:
    """A Basic-ABI plugin's JSON answer: anything else is the plugin's fault."""
    try:
        return json.loads(answer)
    except (ValueError, RecursionError) as exc:
        raise PluginError(f"the plugin answered with something other than JSON: {exc}") from None


@dataclass(frozen=True)
class Verdict:
    action: str
    payload: Any = None
    set_session: tuple[tuple[str, str], ...] = ()


def verdict_from_json(doc: Any) -> Verdict:
    """A Basic-ABI hook's answer (docs/plugins.md §3) as a Verdict."""
    if not isinstance(doc, dict) or "action" not in doc:
        raise PluginError('the verdict must be an object with an "action"')
    unknown = set(doc) - {"action", "set-session"}
    if unknown:
        raise PluginError(f"the verdict has unknown member(s) {sorted(unknown)}")
    action = doc["action"]
    if action == "allow":
        kind, payload = "allow", None
    elif isinstance(action, dict) and len(action) == 1:
        ((kind, payload),) = action.items()
        if kind == "reject":
            if not isinstance(payload, dict) or set(payload) != {"sqlstate", "message"}:
                raise PluginError('reject needs {"sqlstate": ..., "message": ...}')
            payload = (str(payload["sqlstate"]), str(payload["message"]))
        elif kind == "rewrite":
            if not isinstance(payload, str):
                raise PluginError("rewrite needs a string")
        elif kind == "replace-rows":
            if not isinstance(payload, list) or not all(isinstance(r, list) for r in payload):
                raise PluginError("replace-rows needs a list of rows")
            payload = [tuple(value_from_json(v) for v in row) for row in payload]
        else:
            raise PluginError(f"unknown action {kind!r}")
    else:
        raise PluginError(f"unknown action {action!r}")
    return Verdict(kind, payload, _pairs(doc.get("set-session", [])))


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, str) for x in p)
        for p in raw
    ):
        raise PluginError("set-session must be a list of [name, value] pairs of strings")
    return tuple((str(a), str(b)) for a, b in raw)


def value_to_json(value: SqlValue) -> Any:
    """A SQL value in the JSON form of the WIT `value` variant."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int):
        return {"integer": value}
    if isinstance(value, float):
        return {"real": value}
    if isinstance(value, str):
        return {"text": value}
    return {"blob": list(bytes(value))}


def value_from_json(doc: Any) -> SqlValue:
    if doc == "null":
        return None
    if isinstance(doc, dict) and len(doc) == 1:
        ((kind, v),) = doc.items()
        if kind == "integer" and isinstance(v, int) and not isinstance(v, bool):
            return v
        if kind == "real" and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
        if kind == "text" and isinstance(v, str):
            return v
        if kind == "boolean" and isinstance(v, bool):
            return v
        if kind == "blob" and isinstance(v, list):
            try:
                return bytes(v)
            except (TypeError, ValueError):
                pass
    raise PluginError(f"not a SQL value: {json.dumps(doc)[:80]}")


def verdict_from_component(raw: dict[str, Any]) -> Verdict:
    """A component hook's verdict record (a dict by WIT field name) as a Verdict."""
    tag, payload = raw["action"]
    if tag == "reject":
        payload = (str(payload["sqlstate"]), str(payload["message"]))
    elif tag == "replace-rows":
        payload = [tuple(sql_of_value(v) for v in row) for row in payload]
    return Verdict(tag, payload, tuple((str(a), str(b)) for a, b in raw["set-session"]))
