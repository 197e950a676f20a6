"""The key vault table: each key-encryption key's check value, KDF and salt, and the one
place where a configured key is checked against it before migration keys are touched.

``open_vault`` is what every command that encrypts or decrypts a migration key goes through
(``engine.runtime.Runtime.vault``): the configured key must match the ``current`` row's check
value, or the command stops (``SecretError``, exit 2) before it does anything. The first such
command on a database stores the row (after checking, on a database from before the vault,
that the key opens the ``v1`` keys already stored). ``keys rotate`` adds a ``next`` row,
reseals every key in short batches and then makes ``next`` current (``finish_rotation``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

from sqlalchemy import RowMapping, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from migration_engine.errors import SecretError, StoreError
from migration_engine.keys import DEFAULT_SCRYPT, KEY_SETTING, KeyRecord, KeyVault, ScryptParams, key_id_of
from migration_engine.store.database import Database
from migration_engine.store.queries import RECORD_COLUMNS, a_stored_key, records_from
from migration_engine.store.records import MigrationRecord
from migration_engine.store.schema import KEY_VAULT_LIVE_PREDICATE, key_vault, migrations

CURRENT = "current"
NEXT = "next"
RETIRED = "retired"

m = migrations.c
k = key_vault.c


def _record(row: RowMapping) -> KeyRecord:
    cost = None if row["scrypt_n"] is None else ScryptParams(row["scrypt_n"], row["scrypt_r"], row["scrypt_p"])
    return KeyRecord(
        key_id=row["key_id"],
        kdf=row["kdf"],
        salt=base64.b64decode(row["salt"]),
        check_value=row["check_value"],
        scrypt=cost,
    )


def live_keys(db: Database) -> dict[str, KeyRecord]:
    """The ``current`` key's record and, during a rotation, the ``next`` one's, by status."""
    with db.read("read the key vault") as conn:
        rows = conn.execute(select(key_vault).where(k.status != RETIRED)).mappings().all()
    return {row["status"]: _record(row) for row in rows}


def add_key(db: Database, record: KeyRecord, status: str) -> KeyRecord:
    """Store ``record`` as the ``status`` key unless there is one already; return the stored one."""
    cost = record.scrypt
    values: dict[str, Any] = {
        "key_id": record.key_id,
        "status": status,
        "kdf": record.kdf,
        "salt": base64.b64encode(record.salt).decode("ascii"),
        "scrypt_n": cost.n if cost else None,
        "scrypt_r": cost.r if cost else None,
        "scrypt_p": cost.p if cost else None,
        "check_value": record.check_value,
        "created_at": db.clock.now(),
        "retired_at": None,
    }
    dialect_insert: Any = sqlite.insert if db.is_sqlite else postgresql.insert
    stmt = dialect_insert(key_vault).values(values)
    stmt = stmt.on_conflict_do_nothing(index_elements=[k.status], index_where=text(KEY_VAULT_LIVE_PREDICATE))
    with db.write(f"store the {status} key-encryption key") as conn:
        conn.execute(stmt)
        row = conn.execute(select(key_vault).where(k.status == status)).mappings().one()
    return _record(row)


def open_vault(
    db: Database,
    secret: str | None,
    *,
    create: bool = True,
    setting: str = KEY_SETTING,
    scrypt: ScryptParams = DEFAULT_SCRYPT,
    allow_weak: bool = False,
) -> KeyVault:
    """The vault of the configured key, checked against the database's check value first.

    ``SecretError`` (naming ``setting``) for a missing, weak or wrong key. Without a vault row
    yet: a database with ``v1`` keys must have them open with ``secret``; then (``create``)
    the row is stored. No transaction is open while a passphrase is stretched.
    """
    current = live_keys(db).get(CURRENT)
    if current is not None:
        return KeyVault(secret, record=current, setting=setting, allow_weak=allow_weak)
    vault = KeyVault(secret, scrypt=scrypt, setting=setting, allow_weak=allow_weak)
    stored = a_stored_key(db)
    if stored is not None and key_id_of(stored) is not None:
        raise SecretError(
            f"the database holds sealed migration keys (key id {key_id_of(stored)}) but no key vault row: "
            "it was altered; restore it from a backup"
        )
    if stored is not None and not vault.opens_legacy(stored):
        raise SecretError(
            f"{setting} does not open the migration keys already stored (v1, from before the key vault): "
            "it is not the key they were stored with"
        )
    if not create:
        return vault
    kept = add_key(db, vault.record, CURRENT)
    if kept.key_id != vault.key_id:  # another command stored the vault meanwhile
        return KeyVault(secret, record=kept, setting=setting, allow_weak=allow_weak)
    return vault


def keys_to_reseal(db: Database, *, key_id: str, after_id: int, limit: int) -> list[MigrationRecord]:
    """Migrations with a stored key not sealed by ``key_id``, in id order after ``after_id``."""
    query = (
        select(*RECORD_COLUMNS)
        .where(m.key_ciphertext.is_not(None), ~m.key_ciphertext.startswith(f"v2:{key_id}:", autoescape=True))
        .where(m.id > after_id)
        .order_by(m.id)
        .limit(limit)
    )
    with db.read("read keys to reseal") as conn:
        return records_from(db, conn, conn.execute(query).mappings().all())


def key_counts(db: Database, key_id: str) -> tuple[int, int]:
    """(keys sealed by ``key_id``, keys stored)."""
    sealed = func.count().filter(m.key_ciphertext.startswith(f"v2:{key_id}:", autoescape=True))
    query = select(sealed, func.count()).where(m.key_ciphertext.is_not(None))
    with db.read("count stored keys") as conn:
        row = conn.execute(query).one()
    return int(row[0]), int(row[1])


def finish_rotation(db: Database, *, old_id: str, new_id: str, unreadable: Sequence[int] = ()) -> None:
    """Retire ``old_id`` and make ``new_id`` current, in one transaction, once every stored key
    but the ``unreadable`` ones (which opened with neither key) is sealed by ``new_id``
    (``StoreError`` when one is not: run the rotation again)."""
    left = (
        select(func.count())
        .where(m.key_ciphertext.is_not(None), ~m.key_ciphertext.startswith(f"v2:{new_id}:", autoescape=True))
        .where(m.id.not_in(list(unreadable)))
        .scalar_subquery()
    )
    with db.write("finish the key rotation") as conn:
        remaining = int(conn.execute(select(left)).scalar_one())
        if remaining:
            raise StoreError(f"{remaining} stored key(s) are not sealed by the new key yet; run `keys rotate` again")
        now = db.clock.now()
        conn.execute(
            update(key_vault).where(k.key_id == old_id, k.status == CURRENT).values(status=RETIRED, retired_at=now)
        )
        done = conn.execute(update(key_vault).where(k.key_id == new_id, k.status == NEXT).values(status=CURRENT))
        if done.rowcount != 1:
            raise StoreError(f"the key vault has no next key {new_id}: another rotation finished meanwhile")
