"""Promoters' personal data, encrypted under a key per person record (crypto-shredding), and the
keyed hashes that find possible duplicates.

Each person record's data key is wrapped (encrypted) with the service's master key and kept in
intake's own store, written in the same transaction as the events that first use it; only intake
holds keys. Deleting a person's key makes every copy of their personal data unreadable (store,
Kafka, backups) while amounts and decisions stay whole.

A `person_id` is random: it says nothing of who the person is, and two people with the same
name and birth date are two records. Possible duplicates are found apart, with keyed hashes
(HMAC under a pepper derived from the master key) of normalised identifiers: the name in its own
script and in a Latin transliteration, the birth date, the phone in E.164, an identity document's
number. The hashes are pseudonymous personal data: they rest in a side table of intake's store
(never in an event, never on Kafka) and go with the person's key when the person is forgotten.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import phonenumbers
from anyascii import anyascii
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.intake.domain import DuplicateKind

# Promoters live in France: a phone written without its country code is French.
DEFAULT_PHONE_REGION = "FR"
# Arabic vowel marks (harakat), the superscript alef and the tatweel: optional in writing a name.
_ARABIC_OPTIONAL = re.compile("[\u064b-\u065f\u0670\u0640]")


class KeyErased(Exception):
    """The person's key was deleted: their data is gone for good."""


class KeyStore(Protocol):
    def find_data_key(self, key_id: str) -> bytes | None: ...

    def delete_data_key(self, key_id: str) -> None: ...

    def find_identifiers(self, digests: list[str]) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class Sealed:
    """Personal data sealed under a person's key; `new_key` is the wrapped key to store with it, if new."""

    ciphertext: str
    new_key: tuple[str, bytes] | None


def name_forms(given_name: str, family_name: str) -> set[str]:
    """A name as compared: in its own script (every script kept) and transliterated to Latin.

    Case, compatibility forms, punctuation, spacing, optional Arabic marks and the order of the
    words do not count: "Nguyễn Văn An" and "NGUYEN van-an", "محمد" and "مُحَمَّد" meet.
    """
    text = _ARABIC_OPTIONAL.sub("", unicodedata.normalize("NFKC", f"{given_name} {family_name}").casefold())
    # Letters, marks and digits of every script stay; punctuation, symbols and separators split words.
    words = "".join(c if unicodedata.category(c)[0] in "LMN" else " " for c in text).split()
    latin = re.sub(r"[^a-z0-9]+", " ", anyascii(" ".join(words)).lower()).split()
    return {form for form in (" ".join(sorted(words)), " ".join(sorted(latin))) if form}


def phone_form(phone: str) -> str:
    """A phone in E.164 (French when it has no country code); its digits when it is no phone number."""
    try:
        number = phonenumbers.parse(phone, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_possible_number(number):
        return re.sub(r"\D", "", phone)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def document_form(number: str) -> str:
    return re.sub(r"[\W_]", "", unicodedata.normalize("NFKC", number).upper())


# Which matches make two records a possible duplicate: a name and a birth date, a phone or a
# document number. A name or a birth date alone is shared by too many people.
_ENOUGH = ({DuplicateKind.name, DuplicateKind.birth_date}, {DuplicateKind.phone}, {DuplicateKind.document})


class PersonalDataVault:
    def __init__(self, keys: KeyStore, master_key: bytes):
        self.keys = keys
        self._master = AESGCM(master_key)
        # Keys of their own, derived from the master key: a new purpose never reuses another's key.
        self._pepper = hmac.new(master_key, b"passerelle duplicate detection", hashlib.sha256).digest()
        self._notes = AESGCM(hmac.new(master_key, b"passerelle notes of forgetting", hashlib.sha256).digest())

    # --- duplicate detection -----------------------------------------------------------

    def _digest(self, kind: DuplicateKind, value: str) -> str:
        return hmac.new(self._pepper, f"{kind.value}:{value}".encode(), hashlib.sha256).hexdigest()

    def identifiers(self, promoter: dict[str, Any]) -> list[tuple[str, str]]:
        """The keyed hashes of a promoter's identifiers: (kind, digest) pairs, to store with the person."""
        found = [(DuplicateKind.name, form) for form in name_forms(promoter["given_name"], promoter["family_name"])]
        found.append((DuplicateKind.birth_date, str(promoter["birth_date"])))
        if promoter.get("phone"):
            found.append((DuplicateKind.phone, phone_form(promoter["phone"])))
        if promoter.get("document_number") and document_form(promoter["document_number"]):
            found.append((DuplicateKind.document, document_form(promoter["document_number"])))
        return sorted({(kind.value, self._digest(kind, value)) for kind, value in found if value})

    def matches(self, identifiers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """(person_id, kind) of every stored identifier equal to one of these."""
        return self.keys.find_identifiers([digest for _, digest in identifiers])

    def possible_duplicates(self, identifiers: list[tuple[str, str]],
                            matches: list[tuple[str, str]] | None = None) -> dict[str, list[DuplicateKind]]:
        """The person records whose identifiers match enough of these: person id -> what matched.
        `matches`: what `matches(identifiers)` gave, when already read."""
        matched: dict[str, set[DuplicateKind]] = {}
        for person_id, kind in self.matches(identifiers) if matches is None else matches:
            matched.setdefault(person_id, set()).add(DuplicateKind(kind))
        return {person: sorted(kinds) for person, kinds in sorted(matched.items())
                if any(enough <= kinds for enough in _ENOUGH)}

    # --- the note of a forgetting ----------------------------------------------------------

    def seal_note(self, person_id: UUID, note: str) -> str:
        """Seal an officer's note under the programme's notes key: it outlives the person's key."""
        nonce = os.urandom(12)
        return base64.b64encode(nonce + self._notes.encrypt(nonce, note.encode(), str(person_id).encode())).decode()

    def open_note(self, person_id: UUID, sealed: str) -> str:
        raw = base64.b64decode(sealed)
        return self._notes.decrypt(raw[:12], raw[12:], str(person_id).encode()).decode()

    # --- personal data -----------------------------------------------------------------

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
        """The data in clear; KeyErased when the key is gone, or is not the one it was sealed with.

        The second happened when ids were derived from identities: a forgotten person who came
        back got a new key under the same id, which cannot open the old dossier's data.
        """
        wrapped = self.keys.find_data_key(str(person_id))
        if wrapped is None:
            raise KeyErased(str(person_id))
        sealed = base64.b64decode(ciphertext)
        key = AESGCM(self._unwrap(person_id, wrapped))  # a wrong master key fails here, loudly
        try:
            return json.loads(key.decrypt(sealed[:12], sealed[12:], str(person_id).encode()))
        except InvalidTag:
            raise KeyErased(str(person_id)) from None

    def forget(self, person_id: UUID) -> None:
        """Delete the person's key: their personal data can never be read again."""
        self.keys.delete_data_key(str(person_id))
