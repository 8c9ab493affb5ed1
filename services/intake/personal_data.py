"""Promoters' personal data, encrypted under a key per person (crypto-shredding).

Each person's data key is wrapped (encrypted) with the service's master key and
kept in intake's own store, written in the same transaction as the events that
first use it; only intake holds keys. Deleting a person's key makes every copy
of their personal data unreadable (store, Kafka, backups) while amounts and
decisions stay whole.

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
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class KeyErased(Exception):
    """The person's key was deleted: their data is gone for good."""


class KeyStore(Protocol):
    def find_data_key(self, key_id: str) -> bytes | None: ...

    def delete_data_key(self, key_id: str) -> None: ...


@dataclass(frozen=True)
class Sealed:
    """Personal data sealed under a person's key; `new_key` is the wrapped key to store with it, if new."""

    ciphertext: str
    new_key: tuple[str, bytes] | None


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(text.lower().replace("-", " ").split())


class PersonalDataVault:
    def __init__(self, keys: KeyStore, master_key: bytes):
        self.keys = keys
        self._master = AESGCM(master_key)
        self._pepper = hmac.new(master_key, b"passerelle person id", hashlib.sha256).digest()

    def person_id(self, given_name: str, family_name: str, birth_date: str) -> UUID:
        identity = f"{_normalise(family_name)}|{_normalise(given_name)}|{birth_date}"
        digest = hmac.new(self._pepper, identity.encode(), hashlib.sha256).digest()
        return UUID(bytes=digest[:16], version=4)

    def _unwrap(self, person_id: UUID, wrapped: bytes) -> bytes:
        return self._master.decrypt(wrapped[:12], wrapped[12:], str(person_id).encode())

    def seal(self, person_id: UUID, data: dict[str, Any], new_person: bool = False) -> Sealed:
        """Encrypt `data` under the person's key, making the key if the person has none yet."""
        wrapped = None if new_person else self.keys.find_data_key(str(person_id))
        new_key = None
        if wrapped is None:
            key = AESGCM.generate_key(bit_length=256)
            nonce = os.urandom(12)
            new_key = (str(person_id), nonce + self._master.encrypt(nonce, key, str(person_id).encode()))
        else:
            key = self._unwrap(person_id, wrapped)
        nonce = os.urandom(12)
        sealed = nonce + AESGCM(key).encrypt(nonce, json.dumps(data, sort_keys=True).encode(), str(person_id).encode())
        return Sealed(base64.b64encode(sealed).decode(), new_key)

    def open(self, person_id: UUID, ciphertext: str) -> dict[str, Any]:
        wrapped = self.keys.find_data_key(str(person_id))
        if wrapped is None:
            raise KeyErased(str(person_id))
        sealed = base64.b64decode(ciphertext)
        return json.loads(AESGCM(self._unwrap(person_id, wrapped)).decrypt(sealed[:12], sealed[12:], str(person_id).encode()))

    def forget(self, person_id: UUID) -> None:
        """Delete the person's key: their personal data can never be read again."""
        self.keys.delete_data_key(str(person_id))
