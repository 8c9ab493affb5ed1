"""The CloudEvents envelope and its leaf hash: the contract with auditors and partners."""

from __future__ import annotations

import hashlib
import json
import uuid

from services.intake.domain import Project
from shared.envelope import CloudEvent, build_envelope, canonical_json, encode, leaf_hash, verify_record
from shared.store import META


def submitted() -> Project:
    return Project(reference="PAS-T", person_id=uuid.UUID(int=7), promoter_ciphertext="c2lwaGVy", country="SN",
                   french_region="FR-IDF", sector="trade", title="Boutique", description="",
                   requested_amount_cents=500_000, own_contribution_cents=100_000, planned_jobs=2)


def stored(event):
    # What the store keeps beside the fields: the command's metadata.
    object.__setattr__(event, "__dict__", {**vars(event), META: {
        "actor": "user:alice", "correlationid": "flow-1", "causationid": "request:k1",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "codeversion": "0.1.0+abc"}})
    return event


def test_the_envelope_has_every_attribute_of_the_contract():
    event = stored(submitted().collect_events()[0])
    envelope = build_envelope("intake", event, sequence=41)
    assert envelope["specversion"] == "1.0"
    assert envelope["source"] == "/passerelle/intake"
    assert envelope["type"] == "passerelle.intake.ProjectSubmitted.v1"
    assert envelope["subject"] == str(event.originator_id)
    assert envelope["time"].endswith("Z")
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["sequence"] == 41 and envelope["aggregateversion"] == 1
    assert (envelope["actor"], envelope["correlationid"], envelope["causationid"]) == ("user:alice", "flow-1", "request:k1")
    assert envelope["data"]["person_id"] == str(uuid.UUID(int=7))
    assert envelope["data"]["requested_amount_cents"] == 500_000
    assert "traceparent" not in json.dumps(envelope["data"]), "trace context travels in a header, not in the leaf"
    assert all(k == k.lower() for k in envelope), "CloudEvents attribute names are lower-case"
    CloudEvent.parse(encode(envelope))  # a consumer reads it back


def test_the_envelope_is_the_same_bytes_every_time():
    event = stored(submitted().collect_events()[0])
    assert encode(build_envelope("intake", event, 3)) == encode(build_envelope("intake", event, 3))
    assert build_envelope("intake", event, 3)["id"] == build_envelope("intake", event, 4)["id"]


def test_the_leaf_hash_is_rfc9162_over_rfc8785_json_of_the_envelope_without_it():
    event = stored(submitted().collect_events()[0])
    envelope = build_envelope("intake", event, 0)
    leaf = {k: v for k, v in envelope.items() if k != "leafhash"}
    assert envelope["leafhash"] == hashlib.sha256(b"\x00" + canonical_json(leaf)).hexdigest()
    assert verify_record(encode(envelope))
    tampered = dict(envelope, data={**envelope["data"], "requested_amount_cents": 900_000})
    assert not verify_record(encode(tampered))


def test_canonical_json_sorts_keys_and_has_no_spaces():
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()
    assert leaf_hash({"a": 1}) == hashlib.sha256(b'\x00{"a":1}').hexdigest()


def test_personal_data_is_not_in_clear():
    envelope = build_envelope("intake", stored(submitted().collect_events()[0]), 0)
    assert envelope["data"]["promoter_ciphertext"] == "c2lwaGVy"
    for word in ("given_name", "family_name", "birth_date", "phone", "email", "residence_status"):
        assert word not in json.dumps(envelope)


def test_the_fast_canonical_json_is_rfc8785():
    import rfc8785

    samples = [
        {"b": "é \u2028 \x1f \" \\\\ / \ud7ff", "a": [1, -2, True, None, {"z": "", "y": "日本語 🎉"}]},
        {"amount_cents": 2**53 - 1, "nested": {"k": [[], {}]}},
        {"float": 1.5, "small": -3},  # falls back to the rfc8785 package
        {"clé": "non-ASCII key"},
    ]
    for sample in samples:
        assert canonical_json(sample) == rfc8785.dumps(sample), sample
    event = stored(submitted().collect_events()[0])
    envelope = build_envelope("intake", event, 0)
    assert encode(envelope) == rfc8785.dumps(envelope)


def test_the_record_value_is_the_canonical_json_of_the_envelope():
    from shared.envelope import record_from_state

    event = stored(submitted().collect_events()[0])
    state = dict(vars(event))
    state["description"] = '"id":"x", a tricky description'
    envelope, value = record_from_state("intake", "ProjectSubmitted", 1, event.originator_id,
                                        event.originator_version, state, 7)
    assert value == encode(envelope)
    assert verify_record(value)


def test_the_fast_path_from_stored_json_gives_the_same_record_as_the_library_decoder():
    """The relay reads stored JSON with orjson; every record must be byte for byte the one the
    library's decoder and `record_from_state` give (the Merkle leaves depend on it)."""
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex

    from shared.envelope import record_from_state, record_from_stored_json

    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    meta = {"actor": "user:alice", "correlationid": "flow-1", "causationid": None, "traceparent": None,
            "codeversion": "0.1.0+abc"}
    utc_now = datetime(2026, 11, 26, 15, 52, 37, 985745, tzinfo=timezone.utc)
    samples = [
        {"timestamp": utc_now, "person_id": uuid.uuid4(), "title": "Boutique", "amount_cents": 500_000},
        {"timestamp": utc_now.replace(microsecond=0), "ids": [uuid.uuid4(), uuid.uuid4()], "ok": True, "x": None},
        {"timestamp": utc_now.astimezone(timezone(timedelta(hours=2))), "rate": Decimal("0.125")},
        {"timestamp": utc_now, "nested": {"b": [1, {"c": "é", "when": utc_now}], "a": "日本"}, "class_version": 2},
        {"timestamp": utc_now, "clé": "non-ASCII key", "tricky": '"id":"x"'},
        {"timestamp": utc_now, "big": 2**53 - 1, "negative": -(2**53) + 1},
        {"timestamp": utc_now, "share": 0.5},
    ]
    originator = uuid.uuid4()
    for state in samples:
        stored_bytes = transcoder.encode({**state, META: meta, "originator_topic": "m:Project"})
        decoded = transcoder.decode(stored_bytes)
        version = decoded.pop("class_version", 1)
        expected = record_from_state("intake", "Sample", version, originator, 3, decoded, 11)
        fast = record_from_stored_json("intake", "Sample", originator, 3, stored_bytes, 11)
        if fast is None:  # the fast path may decline (floats): never differ
            assert "share" in state, state
            continue
        assert (fast[0], fast[1]) == expected, state
        assert fast[2] == meta
        assert verify_record(fast[1])
