"""What the auditor names, from records and checkpoints alone (no I/O)."""

from __future__ import annotations

import hashlib
import random

from services.audit.domain import ServiceLog
from shared.merkle import root


def leaf(i: int, text: str = "event") -> bytes:
    return hashlib.sha256(b"\x00" + f"{text} {i}".encode()).digest()


def as_read(records: list[tuple[int, bytes, str, bool]]) -> list[tuple[object, ...]]:
    """(sequence, leaf, event id, matches) as the replay reads them: domain.RECORD, at offset i."""
    return [(1000 + i, 0, i, *record, None) for i, record in enumerate(records)]


def kinds(log: ServiceLog) -> list[tuple[str, int | None]]:
    return [(p.kind, p.sequence) for p in log.problems]


def test_a_clean_log_verifies_every_checkpoint_in_any_order_of_arrival():
    log = ServiceLog("intake")
    leaves = [leaf(i) for i in range(10)]
    log.record_checkpoint(10, root(leaves), True, "c:0:1")  # before its events
    for i in (3, 0, 1, 2, 5, 4, 9, 6, 8, 7):  # partitions interleave: places arrive out of order
        log.record_event(i, leaves[i], True, f"t:0:{i}")
    log.record_event(4, leaves[4], True, "t:0:99")  # a re-publish after a crash: the same leaf
    log.record_checkpoint(6, root(leaves[:6]), True, "c:0:0")  # after them
    log.settle()
    assert log.problems == [] and log.size == 10
    assert log.verified is not None and log.verified.size == 10


def test_a_record_whose_hash_is_not_its_content_is_modified():
    log = ServiceLog("intake")
    log.record_event(0, leaf(0), False, "t:0:0")
    assert kinds(log) == [("modified", 0)]


def test_another_event_at_a_place_taken_is_named_rewritten_moved_or_inserted():
    log = ServiceLog("intake")
    ids = [f"event-{i}" for i in range(4)]
    for i in range(3):
        log.record_event(i, leaf(i), True, f"t:0:{i}", ids[i])
    log.record_event(0, leaf(0, "rewritten"), True, "t:1:5", ids[0])  # the same event, other content
    log.record_event(1, leaf(2), True, "t:1:6", ids[2])  # the event of place 2, now at 1
    log.record_event(2, leaf(9, "new"), True, "t:1:7", ids[3])  # never seen before
    log.record_event(5, leaf(5), True, "t:0:9", "event-5")  # ahead of the tree...
    log.record_event(5, leaf(5, "other"), True, "t:2:9", "event-7")  # ... and taken too
    assert kinds(log) == [("modified", 0), ("moved", 1), ("inserted", 2), ("inserted", 5)]


def test_a_checkpoint_over_places_no_record_fills_is_missing_once_caught_up():
    log = ServiceLog("intake")
    leaves = [leaf(i) for i in range(5)]
    for i in (0, 1, 3, 4):
        log.record_event(i, leaves[i], True, f"t:0:{i}")
    log.record_checkpoint(5, root(leaves), True, "c:0:0")
    assert log.problems == []  # not yet: the record may still come
    log.settle()
    assert kinds(log) == [("missing", 2)]


def test_records_beyond_a_place_no_record_fills_wait_and_say_so_until_a_checkpoint_names_it_missing():
    log = ServiceLog("intake")
    leaves = [leaf(i) for i in range(9)]
    for i in (0, 1, 3, 4, 8):
        log.record_event(i, leaves[i], True, f"t:0:{i}")
    assert log.waiting() == {"at": 2, "records": 3, "last": 8}
    log.settle()
    assert log.problems == []  # the record may still come: the relay may be retrying it
    copy = ServiceLog("intake")
    copy.take(log.changes(None)[0])
    assert copy.waiting_elsewhere == log.waiting()  # what the audit's application shows
    log.record_checkpoint(5, root(leaves[:5]), True, "c:0:0")
    log.settle()
    assert kinds(log) == [("missing", 2)]
    log.record_event(2, leaves[2], True, "t:1:0")
    assert log.waiting() == {"at": 5, "records": 1, "last": 8}


def test_a_checkpoint_of_another_history_a_fork_and_a_bad_signature_are_named():
    log = ServiceLog("intake")
    leaves = [leaf(i) for i in range(4)]
    for i, lf in enumerate(leaves):
        log.record_event(i, lf, True, f"t:0:{i}")
    other = [leaf(0), leaf(1, "other"), leaf(2), leaf(3)]
    log.record_checkpoint(4, root(other), True, "c:0:0")
    log.record_checkpoint(4, root(leaves), True, "c:0:1")
    log.record_checkpoint(2, root(leaves[:2]), False, "c:0:2")
    assert kinds(log) == [("checkpoint mismatch", 4), ("fork", 4), ("bad signature", None)]
    assert log.verified is not None and log.verified.where == "c:0:1"


def test_a_records_hash_is_checked_from_its_bytes_or_its_canonical_form():
    import json
    import uuid
    from datetime import datetime, timezone

    import orjson
    import pytest

    from services.audit.records import read_record
    from shared.envelope import record_from_state

    state = {"timestamp": datetime(2026, 1, 2, tzinfo=timezone.utc), "nested": {"leafhash": "not the top one", "a": 1},
             "_meta": {"actor": "user:a"}}
    envelope, value = record_from_state("intake", "Sample", 1, uuid.uuid4(), 1, state, 17)
    claimed = bytes.fromhex(envelope["leafhash"])
    assert read_record(value) == (17, claimed, envelope["id"], True)
    pretty = json.dumps(orjson.loads(value), indent=2).encode()  # another form, same content
    assert read_record(pretty) == (17, claimed, envelope["id"], True)
    forged = value.replace(b"not the top one", b"not the top two")
    assert read_record(forged) == (17, claimed, envelope["id"], False)
    moved = value.replace(b'"sequence":17', b'"sequence":18')
    assert read_record(moved)[3] is False
    for garbage in (b"not json", b'{"sequence": 1}', b"[]"):
        with pytest.raises(ValueError):
            read_record(garbage)


def test_many_records_at_once_are_named_as_one_by_one():
    """ServiceLog.record_events (the replay's path) appends in-order records together; any other
    record gets record_event's naming, in the same order."""
    ids = [f"event-{i}" for i in range(8)]
    records = [(0, leaf(0), ids[0], True), (1, leaf(1), ids[1], True), (3, leaf(3), ids[3], True),
               (2, leaf(2), ids[2], True), (1, leaf(1, "other"), ids[1], True), (4, leaf(4), ids[4], False),
               (4, leaf(4), ids[4], True), (5, leaf(2), ids[2], True), (6, leaf(6), ids[6], True)]
    one, many = ServiceLog("intake"), ServiceLog("intake")
    for i, (sequence, lf, event_id, matches) in enumerate(records):
        one.record_event(sequence, lf, matches, f"t:0:{i}", event_id)
    many.record_events(as_read(records), lambda record: f"t:0:{record[2]}")
    assert many.problems == one.problems and kinds(many) == [("modified", 1), ("modified", 4)]
    assert many.size == one.size == 7 and many.tree.root() == one.tree.root()
    assert many.events_seen == one.events_seen == len(records) and many.places == one.places


def test_records_a_little_out_of_sequence_are_kept_in_batches_as_one_by_one():
    """Records of one millisecond in different partitions come a little out of sequence: the
    batched path keeps them as record_event does, whatever the shuffle, the repeats and the forgeries."""
    rng = random.Random(9162)
    for _ in range(200):
        records = [(i, leaf(i), f"event-{i}", True) for i in range(40)]
        records += [rng.choice(records) for _ in range(5)]  # re-published after a crash
        records += [(rng.randrange(40), leaf(rng.randrange(40), "forged"), f"event-{rng.randrange(60)}",
                     rng.random() < 0.5) for _ in range(rng.randrange(3))]
        del records[rng.randrange(40)]  # a dropped record: everything after it waits
        for i in range(len(records) - 1):  # neighbours swapped here and there
            if rng.random() < 0.3:
                records[i], records[i + 1] = records[i + 1], records[i]
        one, many = ServiceLog("intake"), ServiceLog("intake")
        for i, (sequence, lf, event_id, matches) in enumerate(records):
            one.record_event(sequence, lf, matches, f"t:0:{i}", event_id)
        cut = rng.randrange(len(records))  # in two batches
        many.record_events(as_read(records)[:cut], lambda record: f"t:0:{record[2]}")
        many.record_events(as_read(records)[cut:], lambda record: f"t:0:{record[2]}")
        assert many.problems == one.problems
        assert (many.size, many.tree.root(), many.ahead, many.places, many.events_seen) == \
            (one.size, one.tree.root(), one.ahead, one.places, one.events_seen)


def test_the_replay_puts_each_logs_records_back_in_the_order_written():
    """Readers send each partition's records in offset order, one partition read ahead of another:
    a record is applied once no unread record of its log can come before it."""
    from services.audit.consumers import _Order, _Partition

    partitions = [_Partition("audit.checkpoints", 0, None, 0, 1, 0),
                  _Partition("intake.events", 0, "intake", 0, 3, 0), _Partition("intake.events", 1, "intake", 0, 3, 0)]
    order = _Order(partitions)
    order.add(1, [(10, 1, 0, "a"), (20, 1, 1, "c"), (30, 1, 2, "e")])  # read ahead
    partitions[1].position = 3
    assert order.ready() == []  # partition 1 and the checkpoints tell nothing yet
    order.add(2, [(15, 2, 0, "b"), (25, 2, 1, "d")])
    order.add(0, [(12, 0, 0, b"intake", b"note")])
    partitions[2].position, partitions[0].position = 2, 1
    ready = order.ready()
    assert [(service, [row[3] for row in rows], checkpoints) for service, rows, checkpoints in ready] == \
        [("intake", ["a", b"intake", "b", "c"], [1])]
    order.add(2, [(40, 2, 2, "f")])
    partitions[2].position = 3  # every partition read to its end: the rest in order
    assert [row[3] for _, rows, _ in order.ready() for row in rows] == ["d", "e", "f"] and order.pending == 0


def test_a_reader_hands_on_funding_decisions_as_read_and_the_ledger_keeps_each_once() -> None:
    """The replay's readers hand on funding's records the ledger may keep, as read (they parse no
    JSON: other events are told apart from their bytes, and a record in another form is handed on
    in doubt); the ledger parses them, keeps the decisions and each once."""
    import uuid
    from datetime import datetime, timezone

    from types import SimpleNamespace

    import orjson

    from services.audit.consumers import read_partition
    from shared.envelope import record_from_state

    meta = {"actor": "user:anna", "correlationid": None, "causationid": None, "traceparent": None,
            "codeversion": "test"}
    when = datetime(2026, 3, 1, tzinfo=timezone.utc)
    approved = record_from_state("funding", "FinancingApproved", 1, uuid.uuid4(), 3,
                                 {"timestamp": when, "amount_cents": 500_000, "_meta": meta}, 7)[1]
    noted = record_from_state("funding", "SpendingEvidenceRecorded", 1, uuid.uuid4(), 5,
                              {"timestamp": when, "tranche": 1, "_meta": meta}, 8)[1]
    reordered = orjson.dumps(dict(reversed(list(orjson.loads(approved).items()))))  # not canonical
    read = SimpleNamespace
    records = [read(timestamp=1, offset=10, value=value) for value in (approved, noted, b"not json", reordered)]
    rows, unreadable = read_partition("funding", 2, records)
    assert [row[:4] + row[6:] for row in rows] == [(1, 2, 10, 7, True, approved), (1, 2, 10, 8, True, None),
                                                  (1, 2, 10, 7, True, reordered)]  # in doubt: handed on
    assert len(unreadable) == 1 and unreadable[0][0] == 10
    assert all(row[7] is None for row in read_partition("intake", 2, records)[0])  # only funding's log

    from services.audit.projections import Ledger

    ledger = Ledger()
    for value in (approved, noted, reordered, approved):  # what the readers hand on, and more
        ledger.record(value)
    assert [e["kind"] for e in ledger.entries.values()] == ["FinancingApproved"]  # once, though read twice
