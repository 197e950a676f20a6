"""The classes of the preflight plan (``plan``): what each means, whether it blocks, what to do.

A party gets every finding that applies to it; its class is the worst of them, in the order
of ``CLASSES`` (blocking classes first). ``docs/operations.md`` ("Preflight plan") has the
table and the reasons for each choice.

A class **blocks** when the migration as the file describes it would fail, or could lose
messages, unless a person decides something first; the plan then exits 1. A warning is worth
reading but the migration can go ahead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PlanClass:
    name: str
    blocking: bool
    action: str  # what to do about it, addressed to the operator


_TABLE = (
    PlanClass(
        "scheme_removed",
        True,
        "the identifier scheme cannot be registered: re-register the party under the successor scheme, then migrate",
    ),
    PlanClass(
        "not_registered",
        True,
        "the party is registered nowhere: it needs a registration at eConnect, not a migration; take it out of the "
        "batch",
    ),
    PlanClass(
        "not_econnect",
        True,
        "eConnect does not serve the party now, so it cannot move it out: check the party id, take it out of the batch",
    ),
    PlanClass(
        "already_econnect",
        True,
        "the SML already points at eConnect's SMP: nothing to migrate; take it out of the batch",
    ),
    PlanClass(
        "other_provider",
        True,
        "the party is at a different provider than the file names: its key must come from the provider that serves "
        "it now; correct current_provider and ask that provider for the key",
    ),
    PlanClass(
        "smp_unreachable",
        True,
        "the lookup failed (DNS or the SMP did not answer in time, or answered an error): run the plan again later",
    ),
    PlanClass(
        "smp_inconsistent",
        True,
        "the SML has a record but the SMP does not know the party or answers garbage: what the party receives is "
        "unknown; ask its provider to fix the SMP, or confirm the document types by hand before migrating",
    ),
    PlanClass(
        "scheme_deprecated",
        False,
        "the identifier scheme is deprecated or will be removed soon: plan a move to its successor",
    ),
    PlanClass(
        "key_suspect",
        False,
        "the migration key breaks the SML's key rule: the PSB has the last word, but `import` refuses such a key; "
        "ask the current provider for a new key",
    ),
    PlanClass(
        "id_suspect",
        False,
        "the value fails its scheme's format or check digits: check the party id",
    ),
    PlanClass("ready", False, "nothing to do"),
)

CLASSES: dict[str, PlanClass] = {c.name: c for c in _TABLE}
ORDER: dict[str, int] = {c.name: i for i, c in enumerate(_TABLE)}
BLOCKING = frozenset(c.name for c in _TABLE if c.blocking)
WARNINGS = frozenset(c.name for c in _TABLE if not c.blocking and c.name != "ready")
READY = "ready"


def worst(names: list[str]) -> str:
    """The class that decides: the first of ``names`` in ``CLASSES`` order; ``ready`` when none."""
    return min(names, key=ORDER.__getitem__) if names else READY
