"""The catalog group: every object deploy created still exists and matches the catalog
definition recorded right after it was applied (drift: someone edited a function or a policy
by hand), and nothing unknown sits on syncpipe's tables."""

from __future__ import annotations

import difflib
from typing import Any

from syncpipe.services.catalog import OBJECT_TYPES, CatalogObject
from syncpipe.services.verify.result import VerifyResult

_ATTACHED = ("column", "constraint", "index", "trigger", "policy")


def check_catalog(
    snapshot: dict[tuple[str, str], CatalogObject],
    live: dict[tuple[str, str], CatalogObject],
    result: VerifyResult,
) -> None:
    deploy_id = result.deploy["id"] if result.deploy else "?"
    missing_tables = {i for (t, i) in snapshot if t == "table" and (t, i) not in live}
    for key in _ordered(snapshot):
        want = snapshot[key]
        have = live.get(key)
        table = ".".join(want.identity.split(".")[:2])
        if have is None and want.object_type != "table" and table in missing_tables:
            continue  # reported once, with its table
        if have is None:
            parts = ""
            if want.object_type == "table":
                parts = _parts_of(snapshot, want.identity)
            result.add(
                "catalog",
                "present",
                want.label,
                "fail",
                f"missing{parts}; deploy #{deploy_id} created it.",
                "Find out who dropped it, then restore it from sql/ (a new DDL file) and deploy.",
                expected=want.definition,
            )
        elif have.fingerprint != want.fingerprint:
            result.add(
                "catalog",
                "unchanged",
                want.label,
                "fail",
                f"differs from what deploy #{deploy_id} installed (drift): "
                f"{_first_difference(want.definition, have.definition)}.",
                _drift_remedy(want.object_type),
                expected=want.definition,
                actual=have.definition,
            )
        else:
            result.add("catalog", "unchanged", want.label, "pass", "matches the deploy")
    our_tables = {i for (t, i) in snapshot if t == "table"}
    for key in _ordered(live):
        if key in snapshot:
            continue
        obj = live[key]
        table = ".".join(obj.identity.split(".")[:2])
        if obj.object_type in _ATTACHED and table in our_tables:
            result.add(
                "catalog",
                "unknown",
                obj.label,
                "fail",
                f"not created by syncpipe deploy, yet it is on {table} (drift).",
                "Add it to sql/ and deploy, or drop it.",
                actual=obj.definition,
            )
        elif obj.object_type in ("table", "function") or (
            obj.object_type in _ATTACHED
            and table not in our_tables
            and obj.object_type in ("trigger", "policy")
        ):
            result.add("catalog", "unknown", obj.label, "warn", "not created by syncpipe deploy.")


# -- security lints --------------------------------------------------------------------


def _drift_remedy(object_type: str) -> str:
    if object_type in ("function", "trigger", "policy", "table"):
        return (
            "Keep the change by putting it in sql/ and deploying, or run `syncpipe deploy` "
            "to restore what sql/ says (functions, triggers and policies are re-applied)."
        )
    return "Keep the change by putting it in a new sql/ddl file, or undo it by hand."


def _parts_of(snapshot: dict[tuple[str, str], CatalogObject], table: str) -> str:
    counts: dict[str, int] = {}
    for kind, ident in snapshot:
        if kind != "table" and ".".join(ident.split(".")[:2]) == table:
            counts[kind] = counts.get(kind, 0) + 1
    if not counts:
        return ""
    listed = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in counts.items())
    return f" with its {listed}"


def _ordered(objects: dict[tuple[str, str], Any]) -> list[tuple[str, str]]:
    rank = {t: i for i, t in enumerate(OBJECT_TYPES)}
    return sorted(objects, key=lambda k: (rank.get(k[0], 99), k[1]))


def _first_difference(expected: str, actual: str) -> str:
    diff = [
        line
        for line in difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), lineterm="", n=0
        )
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    removed = next((ln[1:].strip() for ln in diff if ln.startswith("-")), None)
    added = next((ln[1:].strip() for ln in diff if ln.startswith("+")), None)
    if removed and added:
        return f"expected `{_clip(removed)}`, found `{_clip(added)}`"
    if removed:
        return f"missing `{_clip(removed)}`"
    if added:
        return f"unexpected `{_clip(added)}`"
    return "the definition changed"


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
