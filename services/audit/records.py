"""A record of a service's topic: what it claims (sequence, leaf hash, event id) and whether its
leaf hash is the hash of its content (docs/events.md), from its bytes.

The replay's reader processes (consumers.py) check every record with `read_record`: this module
imports nothing heavy, so that they start fast (the RFC 8785 serializer, needed only for a record
in another form than its canonical one, is imported when such a record comes).
"""

from __future__ import annotations

import binascii
import hashlib
from typing import Any

import orjson


def content_hash(envelope: dict[str, Any]) -> bytes:
    """The leaf hash of an envelope: sha256(0x00 || JCS(envelope without leafhash))."""
    from shared.envelope import canonical_json

    leaf = {k: v for k, v in envelope.items() if k != "leafhash"}
    return hashlib.sha256(b"\x00" + canonical_json(leaf)).digest()


# The end of every record the relays write: canonical JSON sorts "id", "leafhash" and "sequence"
# after "data", the only member that holds nested values:
#     ...,"id":"<36 of [0-9a-f-]>","leafhash":"<64 of [0-9a-f]>","sequence":<0|[1-9][0-9]*>,"source":"...
# It is checked with slices, not a regular expression: the replay reads a million records, and
# matching cost twice what hashing does.
_ID_START = len(b',"id":"') + 36 + 1  # from the id member to the leafhash member
_HEX_START = len(b',"leafhash":"')
_LEAFHASH_MEMBER = _HEX_START + 64 + 1
_SEQUENCE_START = _LEAFHASH_MEMBER + len(b',"sequence":')
_ID_CHARS = b"0123456789abcdef-"


def read_record(value: bytes) -> tuple[int, bytes, str, bool]:
    """(sequence, claimed leaf hash, CloudEvent id, whether the hash is the hash of the content).

    A record is its leaf's canonical JSON with `"leafhash":"<hex>"` in its sorted place:
    hashing the bytes without that member checks it, with no JSON parsing nor serializing.
    A record in any other form is parsed and gets the full RFC 8785 computation.
    Raises ValueError for what is not an event of a log at all.
    """
    # Every test below is one call into C: this runs once per record of the replay. What is
    # taken from the bytes (sequence, leafhash, id) is checked for its form; that the leafhash
    # is the content's hash is what matters, and the signed tree authenticates that hash.
    at = value.rfind(b',"leafhash":"')
    hexed_at, sequence_at = at + _HEX_START, at + _SEQUENCE_START
    end = value.find(b',"source":"', sequence_at)
    if (at >= _ID_START and end > 0 and value.startswith(b',"id":"', at - _ID_START) and value[at - 1] == 0x22
            and value.startswith(b'","sequence":', hexed_at + 64)):
        sequence = value[sequence_at:end]
        if sequence.isdigit() and (sequence[0] != 0x30 or end - sequence_at == 1):  # no leading 0
            try:
                claimed = binascii.unhexlify(value[hexed_at:hexed_at + 64])
            except binascii.Error:
                claimed = b""
            digest = hashlib.sha256(b"\x00" + value[:at])
            digest.update(value[at + _LEAFHASH_MEMBER:])
            if digest.digest() == claimed:
                event_id = value[at - 37:at - 1]
                if not event_id.translate(None, _ID_CHARS):
                    return int(sequence), claimed, event_id.decode(), True
    try:
        envelope = orjson.loads(value)
        sequence, claimed, event_id = envelope["sequence"], bytes.fromhex(envelope["leafhash"]), envelope["id"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a CloudEvent of a log ({exc})") from exc
    if type(sequence) is not int or len(claimed) != 32 or type(event_id) is not str:
        raise ValueError("sequence, leafhash or id malformed")
    return sequence, claimed, event_id, content_hash(envelope) == claimed
