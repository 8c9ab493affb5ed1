"""The auditor's principal on a broker of the secured profile (SASL/SCRAM, the authorizer, ACLs).

The audit (its service and `make audit`) authenticates as `audit`, granted by the same code
as the services' principals (`python -m deploy.kafka_access services`): it replays and
verifies a service's real log (published by the service's relay, as the service's
principal, with its signed checkpoints) from offset 0 without any consumer group, and it may
write nowhere. A partner may not read the checkpoints.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from deploy.kafka_access import (
    audit_acls,
    audit_principal,
    partner_acls,
    partner_group_prefix,
    partner_principal,
    service_acls,
)
from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.checkpoint import load_signer
from shared.envelope import record_from_state
from shared.relay import Checkpoints, Relay
from shared.settings import Settings
from shared.topics import CHECKPOINTS_TOPIC, SERVICES, create_topics, event_topic
from tests.conftest import create_database, drop_database
from tests.integration.sample import SampleApplication
from tests.integration.secured_kafka import SecuredKafka, produce_as, refusal, try_reading, try_writing

pytestmark = pytest.mark.integration
EVENTS = 10  # intake's, through its relay, signed in checkpoints
OTHERS = 3  # each other service's, written by its own principal


class Intake(SampleApplication):
    """A log published on intake.events by intake's principal (the audit replays the four services' topics)."""

    name = "intake"


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[SecuredKafka]:
    broker = SecuredKafka()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def granted(secured_kafka, postgres, tmp_path) -> Iterator[dict[str, Any]]:
    """A fresh topic prefix on the secured broker, its topics, and the principals as
    `deploy.kafka_access services` (and `partner`) grant them; intake's store on PostgreSQL."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    partner = str(uuid.uuid4())
    asyncio.run(create_topics(secured_kafka.settings("admin", topic_prefix=prefix)))
    acls = [a for s in SERVICES for a in service_acls(s, prefix)] + audit_acls(prefix) + partner_acls(partner, prefix)
    secured_kafka.grant([*SERVICES, audit_principal(), partner_principal(partner)], acls)
    database = f"test_{prefix[:-1]}_intake"
    create_database(database)
    intake = secured_kafka.settings(
        "intake", service="intake", persistence="postgres", postgres_dbname=database,
        postgres_host=str(postgres["host"]), postgres_port=int(postgres["port"]),
        postgres_user=str(postgres["user"]), postgres_password=str(postgres["password"]),
        topic_prefix=prefix, data_dir=tmp_path, keys_dir=tmp_path / "keys", poll_interval=0.1)
    try:
        yield {"prefix": prefix, "partner": partner, "intake": intake,
               "audit": secured_kafka.settings(audit_principal(), service="audit", topic_prefix=prefix,
                                               data_dir=tmp_path, keys_dir=tmp_path / "keys"),
               "as": lambda principal: secured_kafka.settings(principal, topic_prefix=prefix)}
    finally:
        drop_database(database)


def publish_with_relay(app: Intake) -> None:
    """Intake's relay, as intake's principal, until every event is on Kafka and signed in a checkpoint."""
    checkpoints = Checkpoints(app.settings.topic(CHECKPOINTS_TOPIC), load_signer(app.settings), every_events=4,
                              every_seconds=0.1)

    async def scenario() -> None:
        relay = Relay(app, app.settings.topic(event_topic("intake")), batch_size=3, poll_interval=0.05,
                      checkpoints=checkpoints)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        deadline = time.monotonic() + 30
        while (relay.sequence < EVENTS or relay.checkpointed[0] < EVENTS) and time.monotonic() < deadline:
            if task.done():
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(scenario())


def log_of(service: str, count: int) -> list[tuple[bytes, bytes]]:
    """`count` records of `service`'s log, in the form its relay publishes."""
    records = []
    for sequence in range(count):
        subject = uuid.uuid4()
        state = {"timestamp": datetime.now(timezone.utc), "_meta": {"actor": f"service:{service}"}, "n": sequence}
        _, value = record_from_state(service, "Noted", 1, subject, 1, state, sequence)
        records.append((str(subject).encode(), value))
    return records


def test_the_audit_principal_replays_and_verifies_every_log_without_a_group(granted):
    app = Intake(granted["intake"])
    try:
        tallies = [app.open(f"t{j}") for j in range(3)]
        for i in range(EVENTS - 3):
            app.increment(tallies[i % 3], cause=f"cause-{i}")
        publish_with_relay(app)
        signer = load_signer(app.settings)
    finally:
        app.close()
    for service in SERVICES:
        if service != "intake":
            asyncio.run(produce_as(granted["as"](service), granted["intake"].topic(event_topic(service)),
                                   log_of(service, OTHERS)))

    settings: Settings = granted["audit"]
    auditor = AuditApplication(settings, keys={signer.name: signer.public_key})
    asyncio.run(Replay(auditor, settings).replay_once())

    report = auditor.verification()
    assert report["ok"], report
    intake = report["services"]["intake"]
    assert (intake["events_seen"], intake["size"]) == (EVENTS, EVENTS), intake
    assert intake["verified_checkpoint"] is not None and intake["verified_checkpoint"]["size"] == EVENTS, intake
    assert intake["checkpoints_seen"] >= 1
    # Every other service's topic was read too, from its first record.
    assert {s: report["services"].get(s, {}).get("events_seen") for s in SERVICES if s != "intake"} == {
        s: OTHERS for s in SERVICES if s != "intake"}, report


def test_the_broker_refuses_the_audit_any_write_and_a_partner_the_checkpoints(granted):
    audit, partner = granted["audit"], granted["partner"]
    topic = granted["intake"].topic

    async def scenario() -> dict[str, BaseException | None]:
        answers: dict[str, BaseException | None] = {}
        for service in SERVICES:
            answers[f"audit writes {service}.events"] = await refusal(
                lambda service=service: try_writing(audit, topic(event_topic(service))))
        answers["audit writes audit.checkpoints"] = await refusal(
            lambda: try_writing(audit, topic(CHECKPOINTS_TOPIC)))
        answers["audit writes a partner's topic"] = await refusal(
            lambda: try_writing(audit, topic(f"partner.{partner}.events")))
        answers["audit reads with a consumer group"] = await refusal(
            lambda: try_reading(audit, topic(event_topic("intake")), topic("passerelle-audit")))
        answers["a partner reads audit.checkpoints"] = await refusal(
            lambda: try_reading(granted["as"](partner_principal(partner)), topic(CHECKPOINTS_TOPIC),
                                partner_group_prefix(partner, granted["prefix"]) + "reader"))
        # The controls: the same clients, where they are allowed.
        answers["intake writes audit.checkpoints"] = await refusal(
            lambda: try_writing(granted["intake"], topic(CHECKPOINTS_TOPIC)))
        return answers

    answers = asyncio.run(scenario())
    assert answers.pop("intake writes audit.checkpoints") is None
    assert isinstance(answers.pop("audit reads with a consumer group"), GroupAuthorizationFailedError)
    refused = {what: type(answer).__name__ for what, answer in answers.items()}
    assert refused == {what: TopicAuthorizationFailedError.__name__ for what in answers}, refused


def test_an_audit_that_may_not_read_a_log_fails_rather_than_passing_it_over(granted):
    """With a principal that may not describe the services' topics (here a partner's), the replay
    stops naming the topics refused: a log it could not read is never reported verified."""
    settings = granted["as"](partner_principal(granted["partner"])).model_copy(update={"service": "audit"})
    auditor = AuditApplication(settings, keys={})
    with pytest.raises(RuntimeError, match="TopicAuthorizationFailed") as refused:
        asyncio.run(Replay(auditor, settings).replay_once())
    assert settings.topic(event_topic("funding")) in str(refused.value)
    assert auditor.verification()["services"]["funding"]["events_seen"] == 0
