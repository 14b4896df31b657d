"""What deploy owns, and what it does about drift in it.

The catalog snapshot (``syncpipe.catalog_snapshot``) holds the objects syncpipe's deploys
created, as the catalog described them right after. Before applying anything, deploy compares
the live catalog with it:

* a function, trigger, policy or table setting that changed or went missing is restored by
  applying its (repeatable) SQL file again;
* a missing or changed index, and a missing constraint, is rebuilt from its recorded definition;
* a missing or changed table or column, or a changed constraint, is refused: deploy lists the
  drift and applies nothing (a DDL file runs once; restoring data structures is a person's call);
* an object nobody deployed (a column or a function added by hand) is left alone, and stays
  outside the snapshot: verify reports it after any number of deploys.

After the files ran, the new snapshot is the old one's objects as they are now, plus what this
deploy created or changed; never what was already there unowned.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncpipe.services.catalog import CatalogObject

Catalog = dict[tuple[str, str], CatalogObject]

#: Restored by applying the repeatable files (functions, triggers, rls) again.
REAPPLIED = frozenset({"function", "trigger", "policy", "table"})


@dataclass(frozen=True)
class Repair:
    """One object deploy rebuilds from its recorded definition."""

    label: str
    statements: tuple[str, ...]


@dataclass
class DriftPlan:
    """What deploy does about the drift it found."""

    reapply: list[str] = field(default_factory=list)
    repairs: list[Repair] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def plan_drift(snapshot: Catalog, live: Catalog) -> DriftPlan:
    """Sort the differences between the snapshot and the live catalog (see the module doc)."""
    plan = DriftPlan()
    if not snapshot:
        return plan
    missing_tables = {i for (t, i) in snapshot if t == "table" and (t, i) not in live}
    missing_constraints = {
        _name_of(i) for (t, i) in snapshot if t == "constraint" and (t, i) not in live
    }
    for key, want in sorted(snapshot.items()):
        have = live.get(key)
        if have is not None and have.fingerprint == want.fingerprint:
            continue
        kind, ident = key
        table = ".".join(ident.split(".")[:2])
        what = "missing" if have is None else "changed"
        if kind != "table" and table in missing_tables:
            continue  # reported with its table
        if kind in REAPPLIED and not (kind == "table" and have is None):
            plan.reapply.append(f"{want.label} ({what})")
        elif kind == "index" and not (have is None and _name_of(ident) in missing_constraints):
            drop = () if have is None else (f"DROP INDEX {_schema_of(ident)}.{_name_of(ident)}",)
            plan.repairs.append(Repair(f"{want.label} ({what})", (*drop, want.definition)))
        elif kind == "constraint" and have is None:
            plan.repairs.append(
                Repair(
                    f"{want.label} (missing)",
                    (f"ALTER TABLE {table} ADD CONSTRAINT {_name_of(ident)} {want.definition}",),
                )
            )
        elif kind == "index":
            continue  # rebuilt with its constraint
        else:
            detail = "" if have is None else f": `{_clip(have.definition)}`"
            plan.refused.append(f"{want.label} ({what}{detail})")
    return plan


def owned_after(snapshot: Catalog, before: Catalog, after: Catalog) -> Catalog:
    """The snapshot to record after a deploy: every object now present except those that were
    there before it, unowned, and that it left as they were."""
    unowned = frozenset(before) - frozenset(snapshot)
    return {
        key: obj
        for key, obj in after.items()
        if key not in unowned or obj.fingerprint != before[key].fingerprint
    }


def _name_of(identity: str) -> str:
    return identity.rsplit(".", 1)[-1]


def _schema_of(identity: str) -> str:
    return identity.split(".", 1)[0]


def _clip(text: str, width: int = 60) -> str:
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 1] + "…"
