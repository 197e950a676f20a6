"""`keys rotate`: reseal every stored migration key under a new key-encryption key.

The old key is the configured one (``PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY``, checked first
like every command's); the new one comes from ``PEPPOL_MIGRATE_KEYS__NEW_ENCRYPTION_KEY``
(or ``--new-key-file``). The new key's record is stored as the vault's ``next`` key first;
then the keys are resealed in batches, each batch one short transaction: a compare-and-set
per migration with its audit event (``operator``, action ``keys rotate``, the key ids from
and to, never a key). A ciphertext says which key sealed it, so a rotation killed midway is
resumed by running it again with the same two keys: what the new key sealed already is
skipped. When every key is resealed the old key is retired and the new one made current in
one transaction; from then on the old key opens nothing and every command refuses it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from migration_engine.engine.changes import Actor, stay
from migration_engine.errors import InputError, SecretError, StoredKeyUnreadable, StoreError
from migration_engine.keys import DEFAULT_SCRYPT, NEW_KEY_SETTING, KeyVault, ScryptParams, key_id_of, raw_key
from migration_engine.store import Change, MigrationRecord, Store

log = logging.getLogger("migration_engine.backoffice.key_rotation")

ACTION = "keys rotate"
BATCH_SIZE = 500
_PASSES = 5  # rows an operator moved during a pass are retried in the next


@dataclass
class RotationResult:
    old_key_id: str
    new_key_id: str
    resealed: int = 0  # by this run
    already: int = 0  # sealed by the new key before this run (a resumed rotation)
    unreadable: list[tuple[int, str, str]] = field(default_factory=list)  # (migration id, party, why)

    def as_dict(self) -> dict[str, object]:
        return {
            "old_key_id": self.old_key_id,
            "new_key_id": self.new_key_id,
            "resealed": self.resealed,
            "already": self.already,
            "unreadable": [{"migration_id": m, "party_id": p, "why": w} for m, p, w in self.unreadable],
        }


def _refuse_running_workers(store: Store) -> None:
    """A worker running with the old key would go on sealing new keys with it."""
    now = store.clock.now()
    running = [w for w in store.workers(since=now - timedelta(days=1)) if w.stopped_at is None and w.alive_until > now]
    if running:
        names = ", ".join(w.worker_id for w in running)
        raise InputError(f"{ACTION}: stop every worker first; running: {names}")


def _same_key(old: str, new: str) -> bool:
    old_raw, new_raw = raw_key(old), raw_key(new)
    if old_raw is not None or new_raw is not None:
        return old_raw == new_raw
    return old == new


def _new_vault(store: Store, secret: str, scrypt: ScryptParams) -> KeyVault:
    """The new key's vault: the ``next`` record of a rotation in progress, or a new one stored as ``next``."""
    pending = store.live_keys().get("next")
    if pending is not None:
        try:
            return KeyVault(secret, record=pending, setting=NEW_KEY_SETTING)
        except SecretError as exc:
            raise SecretError(
                f"a rotation to key id {pending.key_id} is under way and {NEW_KEY_SETTING} is not its key ({exc}); "
                "give the new key it started with and run `keys rotate` again"
            ) from None
    vault = KeyVault(secret, scrypt=scrypt, setting=NEW_KEY_SETTING)
    kept = store.add_vault_key(vault.record, "next")
    return vault if kept.key_id == vault.key_id else KeyVault(secret, record=kept, setting=NEW_KEY_SETTING)


def _reseal(record: MigrationRecord, old: KeyVault, new: KeyVault, actor: str) -> Change:
    token = record.key_ciphertext or ""
    key = old.decrypt(token, migration_id=record.id, party_id=record.party_id)
    detail = {"action": ACTION, "from_key_id": key_id_of(token) or "v1", "to_key_id": new.key_id}
    return stay(
        record,
        by=Actor.operator(actor),
        kind="operator",
        detail=detail,
        key_ciphertext=new.encrypt(key, migration_id=record.id, party_id=record.party_id),
    )


def rotate_keys(
    store: Store,
    *,
    old_secret: str | None,
    new_secret: str | None,
    actor: str,
    batch_size: int = BATCH_SIZE,
    scrypt: ScryptParams = DEFAULT_SCRYPT,
    on_batch: Callable[[int, int], None] | None = None,
) -> RotationResult:
    """Reseal every stored key under ``new_secret``, then retire ``old_secret``'s key.

    ``on_batch(resealed so far, keys stored)`` is told after each committed batch. A key that
    does not open with the old key (moved from another row, altered) is left as it is, listed
    in ``unreadable`` and logged: it could not be used before the rotation either.
    """
    if batch_size < 1:
        raise InputError(f"--batch-size must be at least 1, not {batch_size}")
    if not new_secret:
        raise SecretError(f"{ACTION}: no new key: set {NEW_KEY_SETTING} (or give --new-key-file)")
    _refuse_running_workers(store)
    old = store.open_vault(old_secret, allow_weak=True)  # the configured key, checked first
    if old_secret and _same_key(old_secret, new_secret):
        raise SecretError(f"{ACTION}: {NEW_KEY_SETTING} is the current key; give a new one")
    new = _new_vault(store, new_secret, scrypt)
    result = RotationResult(old_key_id=old.key_id, new_key_id=new.key_id)
    result.already, total = store.key_counts(new.key_id)
    skip: set[int] = set()
    for _ in range(_PASSES):
        missed, after = 0, 0
        while batch := store.keys_to_reseal(key_id=new.key_id, after_id=after, limit=batch_size):
            after = batch[-1].id
            changes: list[Change] = []
            for record in batch:
                if record.id in skip:
                    continue
                try:
                    changes.append(_reseal(record, old, new, actor))
                except StoredKeyUnreadable as exc:
                    skip.add(record.id)
                    result.unreadable.append((record.id, record.party_id, str(exc)))
                    log.warning(f"{ACTION}: not resealed: {exc}", extra={"action": ACTION, "party_id": record.party_id})
            applied = store.apply_many(changes)
            done = sum(a is not None for a in applied)
            result.resealed += done
            missed += len(applied) - done
            if on_batch is not None:
                on_batch(result.already + result.resealed, total)
            log.info(
                f"{ACTION}: {result.already + result.resealed} of {total} key(s) sealed by key id {new.key_id}",
                extra={"action": ACTION},
            )
        if not missed:
            break
    else:
        raise StoreError(f"{ACTION}: migrations kept changing during the rotation; run it again")
    store.finish_key_rotation(old_id=old.key_id, new_id=new.key_id, unreadable=sorted(skip))
    return result
