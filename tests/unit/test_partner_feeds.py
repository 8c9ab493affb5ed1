"""What a partner's feed keeps of an event: the allow-list, the envelope, nothing personal."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from services.partners.feeds import FEED_SOURCE, SHARED, PartnerFeed, dossier_of, minimised, share_of
from services.partners.main import build
from shared.asyncapi import PARTNER_FEED_EVENT, document
from shared.envelope import record_from_state
from shared.settings import Settings

PROJECT = uuid.uuid4()
PERSON = uuid.uuid4()
AT = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def envelope(service: str, name: str, subject: uuid.UUID, **data: object) -> dict:
    state = {"timestamp": AT, "_meta": {"actor": "user:olga", "causationid": "request:abc",
                                        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, **data}
    return record_from_state(service, name, 1, subject, 3, state, 41)[0]


def test_a_submission_keeps_the_dossier_facts_and_nothing_of_the_promoter():
    event = envelope("intake", "ProjectSubmitted", PROJECT, reference="PAS-2026-000123", person_id=PERSON,
                     promoter_ciphertext="v1.Zm9vYmFy", country="ML", french_region="FR-IDF", sector="trade",
                     title="Épicerie de Mamadou", description="Mamadou Diallo, 06 12 34 56 78",
                     requested_amount_cents=700_000, own_contribution_cents=150_000, planned_jobs=3)
    value = minimised(event, share_of(event), "support_structure")
    published = json.loads(value)

    assert published["data"] == {"country": "ML", "french_region": "FR-IDF", "sector": "trade",
                                 "requested_amount_cents": 700_000, "own_contribution_cents": 150_000,
                                 "planned_jobs": 3}
    for secret in (str(PERSON), "Zm9vYmFy", "Mamadou", "06 12", "user:olga", "request:abc", "1" * 32):
        assert secret.encode() not in value
    # The original's identity, so the partner can correlate; the feed as its source.
    assert {k: published[k] for k in ("id", "type", "time", "subject")} == \
        {k: event[k] for k in ("id", "type", "time", "subject")}
    assert published["source"] == FEED_SOURCE
    assert published["origin"] == "/passerelle/intake"
    assert published["projectid"] == str(PROJECT)
    assert published["partnerrole"] == "support_structure"
    assert "leafhash" not in published and "sequence" not in published and "actor" not in published


def test_a_decision_loses_its_officers_and_justification():
    event = envelope("funding", "FinancingApproved", PROJECT, amount_cents=550_000, approved_by="user:ana",
                     proposed_by="user:bob", justification="Le porteur M. Diallo ...", rule_version="2026-1",
                     envelope_id=str(uuid.uuid4()), dossier_version=9, code_version="0.1.0+abc")
    published = json.loads(minimised(event, share_of(event), "local_operator"))
    assert published["data"] == {"amount_cents": 550_000, "rule_version": "2026-1"}


def test_the_dossier_is_the_project_id_else_the_subject():
    visit = envelope("followup", "FollowUpVisitLogged", PROJECT, project_id=str(PROJECT), visit_id="v1")
    assert dossier_of(visit) == str(PROJECT)
    assert dossier_of(envelope("intake", "ProjectWithdrawn", PROJECT, reason="x", previous_status="eligible")) \
        == str(PROJECT)


def test_events_not_on_the_allow_list_never_reach_a_partner():
    for service, name in [("intake", "PossibleDuplicateFlagged"), ("intake", "PersonForgotten"),
                          ("funding", "ReturnAidGranted"), ("funding", "EnvelopeOpened"),
                          ("partners", "PartnerFeedEnabled"), ("followup", "VisitConflictRecorded")]:
        assert share_of(envelope(service, name, PROJECT)) is None


def test_no_shared_field_is_personal_or_free_text():
    forbidden = {"person_id", "promoter_ciphertext", "title", "description", "summary", "justification",
                 "observations", "recommendations", "payee", "payment_reference", "registration", "reason",
                 "approved_by", "proposed_by", "decided_by", "items", "budget_lines"}
    for kind, share in SHARED.items():
        assert not forbidden & set(share.fields), kind


@dataclass
class Record:
    """An upstream Kafka record, as the job reads it."""

    value: bytes | None
    topic: str = "followup.events"
    partition: int = 0
    offset: int = 0


def test_the_job_asks_the_store_who_may_see_and_skips_what_it_cannot_read(tmp_path):
    settings = Settings(service="partners", data_dir=tmp_path, keys_dir=tmp_path / "keys",
                        kafka_bootstrap_servers="127.0.0.1:1")
    app = build(settings).app  # SQLite; nothing here talks to Kafka
    structure = app.register(name="Aide IDF", kind="support_structure", region="FR-IDF", countries=[],
                              sectors=[], capacity=5)
    app.register(name="Bamako Conseil", kind="local_operator", region=None, countries=["ML"], sectors=[],
                 capacity=5)
    app.enable_feed(structure.id)  # the operator's feed stays off
    dossier = uuid.uuid4()
    before = datetime.now(timezone.utc)
    app.assign(dossier, country="ML", french_region="FR-IDF", sector="trade")

    def visit(at: datetime) -> Record:
        state = {"timestamp": at, "project_id": str(dossier), "visit_number": 1}
        return Record(record_from_state("followup", "FollowUpVisitLogged", 1, dossier, 1, state, 0)[1])

    out = PartnerFeed(app, settings).transform([
        Record(b"not json"), Record(None), Record(b'{"type": "passerelle.followup.FollowUpVisitLogged.v1"}'),
        visit(before), visit(datetime.now(timezone.utc)),
    ])
    assert [(topic, key) for topic, key, _ in out] == [(f"partner.{structure.id}.events", str(dossier).encode())]
    app.close()


def test_every_shared_field_is_a_field_of_the_original_event():
    """A misspelt field would silently never reach partners: each must exist in the event it is
    taken from (checked for every service whose events the AsyncAPI document describes)."""
    messages = document()["components"]["messages"]
    checked = 0
    for kind, share in SHARED.items():
        original = messages.get(kind)
        if original is None:
            continue  # that service's events are not in this document (yet)
        data = original["payload"]["allOf"][1]["properties"]["data"]["properties"]
        assert set(share.fields) <= set(data), (kind, set(share.fields) - set(data))
        checked += 1
    assert checked >= 14  # at least intake's and partners'


def test_a_published_feed_record_matches_its_documented_message():
    event = envelope("intake", "ProjectSentToCommittee", PROJECT, requested_amount_cents=1,
                     own_contribution_cents=2, planned_jobs=3)
    published = json.loads(minimised(event, share_of(event), "local_operator"))
    message = document()["components"]["messages"]["partner.intake.ProjectSentToCommittee"]
    schema = message["payload"]["allOf"][1]["properties"]
    assert set(published["data"]) <= set(schema["data"]["properties"])
    assert set(PARTNER_FEED_EVENT["required"]) <= set(published)
    assert document()["channels"]["partner.{partnerId}.events"]["messages"]["ProjectSentToCommitteeForPartners"]


class CountingEvents:
    """Partners' event store, counting how often the job reads each aggregate."""

    def __init__(self, events: Any):
        self.events = events
        self.reads: Counter = Counter()

    def get(self, originator_id: uuid.UUID) -> Any:
        self.reads[originator_id] += 1
        return self.events.get(originator_id)


def test_a_partner_gets_the_end_of_its_assignment_and_nothing_after(tmp_path):
    settings = Settings(service="partners", data_dir=tmp_path, keys_dir=tmp_path / "keys",
                        kafka_bootstrap_servers="127.0.0.1:1")
    app = build(settings).app
    structure = app.register(name="Aide IDF", kind="support_structure", region="FR-IDF", countries=[],
                              sectors=[], capacity=5)
    app.enable_feed(structure.id)
    app.register(name="Bamako Conseil", kind="local_operator", region=None, countries=["ML"], sectors=[],
                 capacity=5)
    dossier = uuid.uuid4()
    app.assign(dossier, country="ML", french_region="FR-IDF", sector="trade")
    store = CountingEvents(app.events)
    feed = PartnerFeed(SimpleNamespace(events=store), settings)

    def visit(number: int) -> Record:
        state = {"timestamp": datetime.now(timezone.utc), "project_id": str(dossier), "visit_number": number}
        return Record(record_from_state("followup", "FollowUpVisitLogged", 1, dossier, number, state, 0)[1])

    def visits_sent(out: list) -> list[int]:
        return [json.loads(value)["data"]["visit_number"] for _, _, value in out
                if b"FollowUpVisitLogged" in value]

    # Assigned, not ended: one read of the dossier per batch, however many events it has.
    assert visits_sent(feed.transform([visit(1), visit(2), visit(3)])) == [1, 2, 3]
    assert store.reads[dossier] == 1
    assert visits_sent(feed.transform([visit(4), visit(5)])) == [4, 5]
    assert store.reads[dossier] == 2

    before_end = visit(6)
    app.end_assignment(dossier, reason="dossier_withdrawn")
    ended = next(e for e in app.events.get(dossier) if type(e).__name__ == "AssignmentEnded")
    state = {"timestamp": ended.timestamp, "project_id": str(dossier), "reason": "dossier_withdrawn",
             "support_structure_id": ended.support_structure_id, "local_operator_id": ended.local_operator_id}
    end = Record(record_from_state("partners", "AssignmentEnded", 1, dossier, 3, state, 0)[1])
    out = feed.transform([before_end, end, visit(7), visit(8)])
    # What happened up to the end (the end included) goes out, read late or not; nothing after it.
    assert visits_sent(out) == [6]
    assert [json.loads(value)["type"] for _, _, value in out if b"AssignmentEnded" in value] == \
        ["passerelle.partners.AssignmentEnded.v1"]
    assert store.reads[dossier] == 3
    # The end is for good: no more reads of the dossier, nothing more sent.
    assert feed.transform([visit(9)]) == []
    assert store.reads[dossier] == 3
    app.close()


def test_what_happened_first_goes_out_first_whatever_partition_is_read_first():
    """A visit (followup) read before the financing decision it follows (funding): held until the
    decision's partition is read past the visit's time or to its end, then both go out in order."""
    from aiokafka import TopicPartition

    from services.partners.feeds import CausalOrder

    funding, followup, intake = (TopicPartition(f"{s}.events", 0) for s in ("funding", "followup", "intake"))
    partitions = [followup, funding, intake]
    t = [datetime(2026, 11, 27, 9, 0, second, tzinfo=timezone.utc) for second in range(6)]

    def rec(at: datetime | None, topic: str, offset: int) -> tuple:
        return at, Record(b"{}", topic=topic, offset=offset), {}

    order = CausalOrder()
    late = t[5]  # settled: long after every event here
    order.add(followup, [rec(t[2], "followup.events", 40)])
    assert order.ready(partitions, read_to_end={intake}, settled=late) == ([], {}), "funding may still hold an earlier event"
    order.add(funding, [rec(t[1], "funding.events", 7), rec(t[3], "funding.events", 8)])
    out, offsets = order.ready(partitions, read_to_end={intake}, settled=late)
    assert [r[0] for r in out] == [t[1], t[2]], "read past the visit's time in every partition"
    assert offsets == {funding: 8, followup: 41}
    out, offsets = order.ready(partitions, read_to_end={funding, followup, intake}, settled=late)
    assert [r[0] for r in out] == [t[3]] and offsets == {funding: 9}

    # A partition goes out as a prefix: a held record is never overtaken by a later one of its
    # partition (its offset would be committed, and the held one lost at a restart).
    order.add(intake, [rec(t[5], "intake.events", 0), rec(None, "intake.events", 1), rec(t[4], "intake.events", 2)])
    order.add(funding, [rec(t[4], "funding.events", 9)])
    out, offsets = order.ready(partitions, read_to_end={followup}, settled=late)
    assert [r[0] for r in out] == [t[4]] and offsets == {funding: 10}
    assert order.waiting(intake) == 3
    out, offsets = order.ready(partitions, read_to_end=set(partitions), settled=t[4])
    assert out == [] and offsets == {}, "what happened after `settled` waits, and the prefix with it"
    out, offsets = order.ready(partitions, read_to_end=set(partitions), settled=t[5])
    assert [r[0] for r in out] == [None, t[4], t[5]], "no event first (it is skipped), then by time"
    assert offsets == {intake: 3}
