"""The public contract of every Kafka record: a CloudEvents 1.0 JSON event (docs/events.md).

The envelope is built from stored data only (the notification, its decoded
event and the metadata stored with it) and the event's position in its
service's log, so that publishing it again yields the very same bytes. The leaf
of the service's Merkle log is the envelope without `leafhash`, in RFC 8785
canonical JSON: anyone can recompute it from the record on Kafka.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import orjson
import rfc8785
from pydantic import BaseModel, ConfigDict

from shared.store import META

CONTENT_TYPE = "application/cloudevents+json"
# Namespace of CloudEvent ids: uuid5(namespace, "<service>/<aggregate id>/<version>").
EVENT_ID_NAMESPACE = UUID("1b7c7e52-2a43-4f5e-9a55-5d1c5b0e9f10")
_NOT_DATA = {"originator_id", "originator_version", "timestamp", "originator_topic", "class_version", META}


def plain(value: Any) -> Any:
    """A domain value as plain JSON: ids and dates as strings, tuples as lists."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is list:
        return [plain(v) for v in value]
    if kind is dict:
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if hasattr(value, "__dataclass_fields__"):
        return plain(vars(value))
    raise TypeError(f"cannot publish a {type(value).__name__}")


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _plain_enough(value: Any) -> bool:
    """True when orjson's sorted compact JSON is already RFC 8785 for `value`: no floats (JCS
    has its own number form) and ASCII keys (JCS sorts keys by UTF-16 code units, orjson by
    code points; they agree on ASCII). Integers beyond 2^53 are refused by OPT_STRICT_INTEGER."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key in item:
                if type(key) is not str or not key.isascii():
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            return False
    return True


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON bytes.

    orjson with sorted keys gives the same bytes as JCS for what events hold (strings,
    safe integers, booleans, ASCII keys) at a fraction of the cost; anything else goes
    through the rfc8785 package. A unit test holds the two to the same bytes.
    """
    if _plain_enough(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
        except orjson.JSONEncodeError:
            pass  # an integer beyond 2^53, or a type orjson does not take: let rfc8785 decide
    return rfc8785.dumps(value)


def leaf_hash(leaf: dict[str, Any]) -> str:
    """RFC 9162 leaf hash of an envelope without its `leafhash`, lower-case hex."""
    return hashlib.sha256(b"\x00" + canonical_json(leaf)).hexdigest()


def build_envelope(service: str, domain_event: Any, sequence: int) -> dict[str, Any]:
    """The CloudEvent of a domain event at position `sequence` of the service's log."""
    return envelope_from_state(
        service, type(domain_event).__name__, getattr(type(domain_event), "class_version", 1),
        domain_event.originator_id, domain_event.originator_version, dict(vars(domain_event)), sequence,
    )


def envelope_from_state(service: str, name: str, version: int, originator_id: Any, originator_version: int,
                        state: dict[str, Any], sequence: int) -> dict[str, Any]:
    envelope, _ = record_from_state(service, name, version, originator_id, originator_version, state, sequence)
    return envelope


def record_from_state(service: str, name: str, version: int, originator_id: Any, originator_version: int,
                      state: dict[str, Any], sequence: int) -> tuple[dict[str, Any], bytes]:
    """The CloudEvent of an event as stored, and its record value (canonical JSON bytes).

    Its name and class version as recorded, its state
    (fields, `timestamp` and `_meta`), at position `sequence` of the service's log.

    Built from what was stored, not from today's classes, so that publishing it again
    after an upgrade still gives the same bytes and the same Merkle leaf.
    """
    data = {k: plain(v) for k, v in state.items() if k not in _NOT_DATA}
    return _record(service, name, version, str(originator_id), originator_version, rfc3339(state["timestamp"]),
                   data, state.get(META) or {}, sequence, jcs_safe=False)


def record_from_stored_json(service: str, name: str, originator_id: Any, originator_version: int,
                            stored: bytes, sequence: int) -> tuple[dict[str, Any], bytes, dict[str, Any]] | None:
    """`record_from_state` straight from the stored JSON bytes, the same envelope and bytes
    (and the stored metadata, for the record's headers).

    The relay's fast path: orjson reads the library's JSON, and the values its transcoder
    wrote as {"_type_": ..., "_data_": ...} (UUID, datetime, Decimal) become their plain
    JSON form directly, instead of becoming objects and then strings again. None when the
    stored state holds anything else (the caller takes the library's decoder then).
    """
    try:
        state = orjson.loads(stored)
    except orjson.JSONDecodeError:
        return None
    if type(state) is not dict:
        return None
    flags = [True]  # still "JCS-safe": ASCII keys only
    try:
        version = state.pop("class_version", 1)
        time = _plain_stored(state.get("timestamp"), flags)
        data = {k: _plain_stored(v, flags) for k, v in state.items() if k not in _NOT_DATA}
        meta = _plain_stored(state.get(META) or {}, flags)
    except _NotPlain:
        return None
    if type(time) is not str or type(meta) is not dict:
        return None
    envelope, value = _record(service, name, version, str(originator_id), originator_version, time, data, meta,
                              sequence, jcs_safe=flags[0])
    return envelope, value, meta


class _NotPlain(Exception):
    """A stored value the fast path does not know how to make plain."""


def _uuid_text(hex_: str) -> str:
    h = hex_.lower()
    if len(h) != 32 or len(bytes.fromhex(h)) != 16:
        raise _NotPlain(hex_)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _datetime_text(iso: str) -> str:
    if iso.endswith("+00:00"):  # as the store writes aware UTC datetimes: rfc3339() of it
        return iso[:-6] + "Z"
    return rfc3339(datetime.fromisoformat(iso))


_TRANSCODED = {"uuid_hex": _uuid_text, "datetime_iso": _datetime_text, "decimal_str": lambda text: str(Decimal(text))}


def _plain_stored(value: Any, flags: list[bool]) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            convert = _TRANSCODED.get(value["_type_"])
            if convert is None or type(value["_data_"]) is not str:
                raise _NotPlain(value["_type_"])
            return convert(value["_data_"])
        for key in value:
            if not key.isascii():
                flags[0] = False
        return {k: _plain_stored(v, flags) for k, v in value.items()}
    if kind is list:
        return [_plain_stored(v, flags) for v in value]
    # A float (orjson also reads integers beyond 64 bits as floats): the library's decoder
    # and RFC 8785's number form decide.
    raise _NotPlain(kind.__name__)


def _event_id(service: str, subject: str, originator_version: int) -> str:
    """uuid5(EVENT_ID_NAMESPACE, "<service>/<subject>/<version>") as text, without UUID objects."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{service}/{subject}/{originator_version}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_BYTES = EVENT_ID_NAMESPACE.bytes


def _record(service: str, name: str, version: int, subject: str, originator_version: int, time: str,
            data: dict[str, Any], meta: dict[str, Any], sequence: int, *, jcs_safe: bool
            ) -> tuple[dict[str, Any], bytes]:
    leaf: dict[str, Any] = {
        "specversion": "1.0",
        "id": _event_id(service, subject, originator_version),
        "source": f"/passerelle/{service}",
        "type": f"passerelle.{service}.{name}.v{version}",
        "subject": subject,
        "time": time,
        "datacontenttype": "application/json",
        "data": data,
        "sequence": sequence,
        "aggregateversion": originator_version,
        "actor": meta.get("actor") or f"service:{service}",
        "correlationid": meta.get("correlationid") or subject,
        "causationid": meta.get("causationid") or subject,
        "codeversion": meta.get("codeversion") or "unknown",
    }
    leaf_bytes = None
    if jcs_safe:  # what _plain_enough would check, already known from the walk
        try:
            leaf_bytes = orjson.dumps(leaf, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
        except orjson.JSONEncodeError:
            leaf_bytes = None
    if leaf_bytes is None:
        leaf_bytes = canonical_json(leaf)
    leafhash = hashlib.sha256(b"\x00" + leaf_bytes).hexdigest()
    # The record is the leaf with `leafhash` in its sorted place, right after the top-level
    # "id" (which follows "data", so the last occurrence is the top-level one).
    marker = f',"id":"{leaf["id"]}"'.encode()
    at = leaf_bytes.rindex(marker) + len(marker)
    value = leaf_bytes[:at] + f',"leafhash":"{leafhash}"'.encode() + leaf_bytes[at:]
    leaf["leafhash"] = leafhash
    return leaf, value


def encode(envelope: dict[str, Any]) -> bytes:
    """Record value bytes: canonical JSON, so the bytes are the same on every re-publish."""
    return canonical_json(envelope)


class CloudEvent(BaseModel):
    """An envelope as read from Kafka by a consumer in another service."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: str
    id: str
    source: str
    type: str
    subject: str
    time: datetime
    datacontenttype: str = "application/json"
    data: dict[str, Any]
    sequence: int
    aggregateversion: int
    actor: str
    correlationid: str
    causationid: str
    leafhash: str
    codeversion: str = "unknown"

    @classmethod
    def parse(cls, value: bytes) -> CloudEvent:
        return cls.model_validate(json.loads(value))

    @property
    def service(self) -> str:
        return self.type.split(".")[1]

    @property
    def name(self) -> str:
        """The event's name without service nor version: "ProjectSubmitted"."""
        return self.type.split(".")[2]

    @property
    def version(self) -> int:
        return int(self.type.rsplit(".v", 1)[1])



def verify_record(value: bytes) -> bool:
    """True when a record's `leafhash` is the hash of the rest of its envelope."""
    envelope = json.loads(value)
    claimed = envelope.pop("leafhash", None)
    return claimed == leaf_hash(envelope)
