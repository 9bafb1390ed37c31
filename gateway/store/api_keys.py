"""Users and their API keys.

A user has a stable id and any number of keys, so a key can be replaced (create a new one, revoke
the old) without orphaning the user's sessions, runs and checkpoints, which belong to the id.
Only a hash of each key is stored.
"""

import hashlib
import secrets

import sqlalchemy as sa

from gateway.store.rows import ApiKeyRow, now_iso
from gateway.store.tables import api_keys, users

KEY_PREFIX = "tml-"
# characters of a key kept in the clear, to tell keys apart in `anvil keys list`
SHOWN_PREFIX = len(KEY_PREFIX) + 6


def key_hash(api_key: str) -> str:
    # A plain SHA-256 is enough here: a generated key carries 256 random bits, so no dictionary or
    # brute-force search can invert its hash (salted slow hashes guard low-entropy passwords), and
    # an unsalted hash lets a request find its key with one index lookup.
    return hashlib.sha256(api_key.encode()).hexdigest()


class ApiKeys:
    def __init__(self, engine: sa.Engine):
        self._engine = engine

    def create(self, user_name: str) -> tuple[str, ApiKeyRow]:
        """A new key for `user_name` (the user is created on their first key): the key itself,
        which is shown once and never stored, and its row."""
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        stamp = now_iso()
        with self._engine.begin() as db:
            user_id = db.scalar(sa.select(users.c.user_id).where(users.c.name == user_name))
            if user_id is None:
                user_id = f"user-{secrets.token_hex(8)}"
                db.execute(sa.insert(users).values(user_id=user_id, name=user_name, created=stamp))
            row = ApiKeyRow(
                key_id=f"key-{secrets.token_hex(6)}", user_id=user_id, user_name=user_name,
                prefix=api_key[:SHOWN_PREFIX], created=stamp, revoked_at=None,
            )
            db.execute(sa.insert(api_keys).values(
                key_id=row.key_id, user_id=user_id, key_hash=key_hash(api_key), prefix=row.prefix, created=stamp,
            ))
        return api_key, row

    def keys(self) -> list[ApiKeyRow]:
        with self._engine.connect() as db:
            return [ApiKeyRow(**row._mapping) for row in db.execute(_listed().order_by(api_keys.c.created))]

    def revoke(self, key_id: str) -> ApiKeyRow | None:
        """Revoke the key (a key revoked before keeps its first revocation time); None if unknown."""
        with self._engine.begin() as db:
            db.execute(
                sa.update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=now_iso())
            )
            row = db.execute(_listed().where(api_keys.c.key_id == key_id)).first()
        return ApiKeyRow(**row._mapping) if row else None

    def key_of(self, api_key: str) -> ApiKeyRow | None:
        """The row of a key created here (revoked or not), None for any other key."""
        with self._engine.connect() as db:
            row = db.execute(_listed().where(api_keys.c.key_hash == key_hash(api_key))).first()
        return ApiKeyRow(**row._mapping) if row else None

    def active_keys(self) -> int:
        with self._engine.connect() as db:
            return db.scalar(sa.select(sa.func.count()).select_from(api_keys).where(api_keys.c.revoked_at.is_(None)))


def _listed() -> sa.Select:
    return sa.select(
        api_keys.c.key_id, api_keys.c.user_id, users.c.name.label("user_name"), api_keys.c.prefix,
        api_keys.c.created, api_keys.c.revoked_at,
    ).select_from(api_keys.join(users, api_keys.c.user_id == users.c.user_id))
