"""Promoters' personal data, encrypted under a key per person (crypto-shredding).

Each person's data key is itself encrypted (wrapped) with the service's master
key and kept in intake's own database; only intake holds keys. Deleting a
person's key makes every copy of their personal data unreadable (store, Kafka,
backups) while amounts and decisions stay whole.

The pseudonymous `person_id` is an HMAC of the normalised identity, so the same
person submitting twice gets the same id (duplicate detection) without the id
revealing who they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.exc import IntegrityError
from sqlalchemy import Column, DateTime, Engine, LargeBinary, MetaData, String, Table, delete, insert, select


def person_keys_table(metadata: MetaData) -> Table:
    return Table(
        "person_keys", metadata,
        Column("person_id", String(36), primary_key=True),
        Column("wrapped_key", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
    )


class KeyErased(Exception):
    """The person's key was deleted: their data is gone for good."""


def load_master_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode())
        tmp.chmod(0o600)
        os.replace(tmp, path) if not path.exists() else tmp.unlink()
    key = base64.b64decode(path.read_text().strip())
    if len(key) != 32:
        raise ValueError(f"{path}: the master key must be 32 bytes, base64")
    return key


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().replace("-", " ").split())


class PersonalDataVault:
    def __init__(self, engine: Engine, table: Table, master_key: bytes):
        self.engine = engine
        self.table = table
        self._master = AESGCM(master_key)
        self._pepper = hmac.new(master_key, b"passerelle person id", hashlib.sha256).digest()

    def person_id(self, given_name: str, family_name: str, birth_date: str) -> UUID:
        identity = f"{_normalise(family_name)}|{_normalise(given_name)}|{birth_date}"
        digest = hmac.new(self._pepper, identity.encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16], version=4)

    def _data_key(self, person_id: UUID, create: bool) -> bytes:
        try:
            return self._read_or_make_key(person_id, create)
        except IntegrityError:  # made concurrently by another request: read it
            return self._read_or_make_key(person_id, create=False)

    def _read_or_make_key(self, person_id: UUID, create: bool) -> bytes:
        with self.engine.begin() as conn:
            row = conn.execute(select(self.table.c.wrapped_key).where(self.table.c.person_id == str(person_id))).first()
            if row is None:
                if not create:
                    raise KeyErased(str(person_id))
                key = AESGCM.generate_key(bit_length=256)
                nonce = os.urandom(12)
                wrapped = nonce + self._master.encrypt(nonce, key, str(person_id).encode())
                conn.execute(insert(self.table).values(person_id=str(person_id), wrapped_key=wrapped,
                                                        created_at=datetime.now(timezone.utc)))
                return key
            wrapped = bytes(row[0])
            return self._master.decrypt(wrapped[:12], wrapped[12:], str(person_id).encode())

    def encrypt(self, person_id: UUID, data: dict[str, Any]) -> str:
        key = self._data_key(person_id, create=True)
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key).encrypt(nonce, json.dumps(data, sort_keys=True).encode(), str(person_id).encode())
        return base64.b64encode(sealed).decode()

    def decrypt(self, person_id: UUID, ciphertext: str) -> dict[str, Any]:
        key = self._data_key(person_id, create=False)
        sealed = base64.b64decode(ciphertext)
        return json.loads(AESGCM(key).decrypt(sealed[:12], sealed[12:], str(person_id).encode()))

    def forget(self, person_id: UUID) -> bool:
        """Delete the person's key. True if there was one."""
        with self.engine.begin() as conn:
            return conn.execute(delete(self.table).where(self.table.c.person_id == str(person_id))).rowcount > 0
