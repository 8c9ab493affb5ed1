"""Signed checkpoints of a service's log (docs/events.md).

A checkpoint is a C2SP tlog-checkpoint (c2sp.org/tlog-checkpoint): the origin
`passerelle/<service>`, the tree size and the base64 root hash, one per line. It
is published as a C2SP signed note (c2sp.org/signed-note) signed with the
service's Ed25519 key, so that transparency-log tools the project did not write
(Go's golang.org/x/mod/sumdb/note, transparency-dev's witnesses) can check it.
The key is a file outside the repository (`PASSERELLE_CHECKPOINT_KEY_PATH`; for
development `<keys_dir>/<service>.checkpoint.ed25519.pem`, made by `python -m shared.cli
keys` or on first start, see shared/keys.py); its public half is served at
`GET /v1/keys` and, for development, written to `<keys_dir>/<service>.verifier`.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.keys import create_private_file, keys_lock, verifier_path, write_public_file

if TYPE_CHECKING:  # the audit's reader processes import this module: they start faster without pydantic
    from shared.settings import Settings

ED25519 = b"\x01"  # the signed-note signature type of Ed25519
SIGNATURE_PREFIX = "\u2014 "  # em dash, space


def origin(service: str) -> str:
    return f"passerelle/{service}"


class InvalidNote(ValueError):
    """A note that is malformed, or not signed by the expected key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def text(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        lines = text.split("\n")
        if len(lines) < 4 or lines[-1] != "" or not lines[1].isdigit():
            raise InvalidNote("a checkpoint is origin, size and root hash, one per line")
        root = base64.b64decode(lines[2], validate=True)
        if len(root) != 32:
            raise InvalidNote("a checkpoint's root hash is 32 bytes")
        return cls(lines[0], int(lines[1]), root)


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || public key)[:4], as signed-note recommends."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The key in the text form of Go's note package: `<name>+<key id hex>+<base64(0x01 || key)>`."""
    return f"{name}+{key_id(name, public_key).hex()}+{base64.b64encode(ED25519 + public_key).decode()}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, Ed25519 public key) of a verifier key `<name>+<key id hex>+<base64(0x01 || key)>`."""
    name, key_hash, encoded = text.strip().split("+", 2) if text.count("+") >= 2 else ("", "", "")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except ValueError as exc:
        raise ValueError(f"not a verifier key: {text!r}") from exc
    if not name or blob[:1] != ED25519 or len(blob) != 33 or key_id(name, blob[1:]).hex() != key_hash:
        raise ValueError(f"not an Ed25519 verifier key: {text!r}")
    return name, blob[1:]


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class NoteSigner:
    """Signs note texts with one Ed25519 key under one key name."""

    def __init__(self, name: str, key: Ed25519PrivateKey):
        self.name = name
        self.key = key
        self.public_key = raw_public_key(key.public_key())
        self.key_id = key_id(name, self.public_key)

    def sign(self, text: str) -> str:
        if not text.endswith("\n"):
            raise ValueError("a note text ends with a newline")
        signature = base64.b64encode(self.key_id + self.key.sign(text.encode())).decode()
        return f"{text}\n{SIGNATURE_PREFIX}{self.name} {signature}\n"

    def describe(self) -> dict[str, str]:
        """What `GET /v1/keys` says of this key."""
        return {
            "name": self.name,
            "algorithm": "Ed25519",
            "key_id": self.key_id.hex(),
            "public_key": base64.b64encode(self.public_key).decode(),
            "verifier_key": verifier_key(self.name, self.public_key),
        }


def open_note(note: str, name: str, public_key: bytes) -> str:
    """The text of a signed note, once a signature by (name, public_key) verifies.

    Signatures by other keys are ignored, as the specification asks; a note with no valid
    signature by this key is refused.
    """
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise InvalidNote("a signed note is a text, a blank line and signature lines")
    text += "\n"
    wanted = key_id(name, public_key)
    verifier = Ed25519PublicKey.from_public_bytes(public_key)
    for line in signatures[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise InvalidNote(f"not a signature line: {line!r}")
        signer, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except ValueError as exc:
            raise InvalidNote(f"signature of {signer} is not base64") from exc
        if signer != name or blob[:4] != wanted:
            continue  # someone else's signature (a witness, another key)
        try:
            verifier.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise InvalidNote(f"the signature of {name} does not verify") from exc
        return text
    raise InvalidNote(f"no signature by {name} ({wanted.hex()})")


def signing_key_path(settings: Settings) -> Path:
    return settings.checkpoint_key_path or settings.keys_dir / f"{settings.service}.checkpoint.ed25519.pem"


def load_signer(settings: Settings) -> NoteSigner:
    """The service's checkpoint signer.

    For development (no `checkpoint_key_path`) the key is made on first use under keys_dir,
    and its public verifier key is written beside it (`<service>.verifier`, what the audit
    reads). An explicit path must exist: nothing is made, nothing written.
    """
    path = signing_key_path(settings)
    if settings.checkpoint_key_path:
        if not path.exists():
            raise FileNotFoundError(f"checkpoint signing key {path} does not exist")
        return _read_signer(path, settings.service)
    with keys_lock(path.parent):
        if not path.exists():
            key = Ed25519PrivateKey.generate()
            create_private_file(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        signer = _read_signer(path, settings.service)
        public = verifier_path(settings.keys_dir, settings.service)
        text = signer.describe()["verifier_key"] + "\n"
        if not public.exists() or public.read_text() != text:
            write_public_file(public, text)
    return signer


def _read_signer(path: Path, service: str) -> NoteSigner:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return NoteSigner(origin(service), key)
