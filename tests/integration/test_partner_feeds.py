"""Partner feeds on a broker of the secured profile (SASL/SCRAM, the authorizer, ACLs).

Each partner reads its own topic as its own principal, with its own consumer group:
only its dossiers, minimised, each dossier's events in the order they happened, every event once, even
when the feed job dies inside a transaction. The broker refuses it everything else, and
refuses a service any topic but its own.

The upstream records are the services' own form (the kernel's envelope): partners' from
its store, the others written by the test as those services' principals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError

from deploy.kafka_access import partner_acls, partner_group_prefix, partner_principal, service_acls
from services.partners.feeds import PartnerFeed
from services.partners.main import build
from shared.envelope import record_from_state, record_from_stored_json
from shared.http import Runtime
from shared.settings import Settings
from shared.topics import SERVICES, Topic, create_topics, event_topic, partner_feed_topic
from tests.conftest import create_database, drop_database
from tests.contract import validate_record
from tests.integration.secured_kafka import (
    SecuredKafka,
    produce_as,
    read_as,
    refusal,
    try_reading,
    try_writing,
)

pytestmark = pytest.mark.integration

# What the upstream services know of the promoter and of their own staff: none of it may
# reach a partner.
SECRETS = ("Mamadou", "06 12 34 56 78", "v1.c2VjcmV0", "user:ana", "user:bob", "trésorerie tendue",
           "FR76 3000", "Épicerie")


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[SecuredKafka]:
    broker = SecuredKafka()
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()  # also after a failed start: kafka.sh stops whatever it left running


@dataclass
class World:
    """The partners service (its application and store, not its HTTP side) on the secured broker."""

    kafka: SecuredKafka
    settings: Settings  # as the partners principal
    runtime: Runtime
    prefix: str

    @property
    def app(self) -> Any:
        return self.runtime.app

    def topic(self, name: str) -> str:
        return self.prefix + name

    def as_principal(self, principal: str) -> Settings:
        return self.kafka.settings(principal, topic_prefix=self.prefix)

    def grant(self, partner_ids: list[str]) -> None:
        """The four services and these partners, as `python -m deploy.kafka_access` grants them."""
        acls = [a for s in SERVICES for a in service_acls(s, self.prefix)]
        acls += [a for p in partner_ids for a in partner_acls(p, self.prefix)]
        self.kafka.grant(list(SERVICES) + [partner_principal(p) for p in partner_ids], acls)

    def as_partner(self, partner_id: str) -> Settings:
        return self.as_principal(partner_principal(partner_id))

    def group_of(self, partner_id: str, name: str = "reader") -> str:
        return partner_group_prefix(partner_id, self.prefix) + name


@pytest.fixture
def world(secured_kafka, postgres, tmp_path) -> Iterator[World]:
    prefix = f"t{uuid.uuid4().hex[:10]}."
    database = f"test_{prefix[:-1]}_partners"
    create_database(database)
    settings = secured_kafka.settings(
        "partners", service="partners", persistence="postgres", postgres_dbname=database,
        postgres_host=str(postgres["host"]), postgres_port=int(postgres["port"]),
        postgres_user=str(postgres["user"]), postgres_password=str(postgres["password"]),
        topic_prefix=prefix, data_dir=tmp_path, keys_dir=tmp_path / "keys", poll_interval=0.1,
    )
    asyncio.run(create_topics(secured_kafka.settings("admin", topic_prefix=prefix)))
    runtime = build(settings)  # the test drives the feed itself: no lifespan
    try:
        yield World(secured_kafka, settings, runtime, prefix)
    finally:
        runtime.app.close()
        drop_database(database)


def now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Upstream:
    """Records of the services' topics in the kernel's envelope form, as their relays publish them."""

    records: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=lambda: defaultdict(list))
    _versions: Counter = field(default_factory=Counter)

    def event(self, service: str, name: str, subject: uuid.UUID, at: datetime | None = None,
              **data: Any) -> dict[str, Any]:
        self._versions[subject] += 1
        state = {"timestamp": at or now(), "_meta": {"actor": "user:ana", "causationid": "request:1"}, **data}
        envelope, value = record_from_state(service, name, 1, subject, self._versions[subject], state,
                                            len(self.records[service]))
        self.records[service].append((str(subject).encode(), value))
        return envelope

    def visit(self, dossier: uuid.UUID, number: int, at: datetime | None = None) -> dict[str, Any]:
        return self.event("followup", "FollowUpVisitLogged", dossier, at, project_id=str(dossier),
                          visit_id=f"visit-{number}", visit_number=number, month=number, due_on="2027-01-01",
                          on_time=True, local_operator_id=None, visited_on="2027-01-02",
                          business_status="active", jobs_paid=2, jobs_family=1, revenue_band="low",
                          observations="Mamadou: trésorerie tendue", recommendations="")

    async def publish(self, world: World) -> None:
        """Each service's records on its own topic, written as that service's principal."""
        for service, records in self.records.items():
            await produce_as(world.as_principal(service), world.topic(event_topic(service)), records)


def partners_records(app: Any) -> list[tuple[bytes, bytes]]:
    """Partners' stored events as its relay publishes them on partners.events."""
    records = []
    for sequence, n in enumerate(app.recorder.log_after(0, 10_000)):
        name = n.topic.rpartition(".")[2].rpartition(":")[2]
        envelope, value, _ = record_from_stored_json("partners", name, n.originator_id, n.originator_version,
                                                     n.state, sequence)
        records.append((envelope["subject"].encode(), value))
    return records


async def feed_until(feed: PartnerFeed, published: int, timeout: float = 60.0) -> None:
    """Run the feed job until it has published at least that many records, and a moment more."""
    stop = asyncio.Event()
    task = asyncio.create_task(feed.run(stop))
    deadline = time.monotonic() + timeout
    while feed.published < published and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # anything more it would publish (a duplicate) has its chance
    stop.set()
    await task


def register(app: Any, name: str, kind: str, region: str | None = None, countries: tuple[str, ...] = ()) -> str:
    return str(app.register(name=name, kind=kind, region=region, countries=list(countries), sectors=["trade"],
                            capacity=10).id)


def test_a_partner_reads_only_its_dossiers_minimised_in_order_once(world):
    app = world.app
    s1 = register(app, "Aide Île-de-France", "support_structure", region="FR-IDF")
    l1 = register(app, "Bamako Conseil", "local_operator", countries=("ML",))
    s2 = register(app, "Aide Auvergne-Rhône-Alpes", "support_structure", region="FR-ARA")
    l2 = register(app, "Dakar Conseil", "local_operator", countries=("SN",))
    for partner in (s1, l1, s2):
        app.enable_feed(uuid.UUID(partner))
    d1, d2, d3, d4 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    submitted_at = now()
    app.assign(d1, country="ML", french_region="FR-IDF", sector="trade")
    app.assign(d2, country="SN", french_region="FR-ARA", sector="trade")
    app.assign(d4, country="CM", french_region="FR-IDF", sector="trade")  # no operator in Cameroon yet
    up = Upstream()
    # While d4 waits for its operator: not after its assignment, so for nobody.
    up.event("intake", "TrainingRecorded", d4, course="gestion", hours=20, completed_on="2026-11-20")
    l3 = register(app, "Douala Conseil", "local_operator", countries=("CM",))  # d4 is assigned now
    assert app.get_assignment(d4).local_operator_id == l3
    world.grant([s1, l1, s2, l2])

    # Before its assignment: nobody's yet.
    up.event("intake", "ProjectSubmitted", d1, at=submitted_at, reference="PAS-1", person_id=str(uuid.uuid4()),
             promoter_ciphertext="v1.c2VjcmV0", country="ML", french_region="FR-IDF", sector="trade",
             title="Épicerie", description="Mamadou, 06 12 34 56 78", requested_amount_cents=700_000,
             own_contribution_cents=100_000, planned_jobs=3)
    up.event("intake", "TrainingRecorded", d1, course="gestion", hours=20, completed_on="2026-11-20")
    up.event("funding", "FinancingApproved", d1, amount_cents=550_000, approved_by="user:ana",
             proposed_by="user:bob", justification="Mamadou a un bon plan", rule_version="2026-1",
             envelope_id=str(uuid.uuid4()), dossier_version=7, code_version="x")
    up.event("funding", "AgreementSigned", d1, signed_on="2026-11-25", operator_id=l1, amount_cents=550_000,
             rule_version="2026-1")
    up.event("funding", "FundsDisbursed", d1, tranche=1, amount_cents=200_000, payee="Mamadou",
             payment_reference="FR76 3000", envelope_id=str(uuid.uuid4()))
    up.event("funding", "EnvelopeOpened", uuid.uuid4(), purpose="financing", year=2026, scope="ML",
             amount_cents=10_000_000)
    for number in (1, 2, 3):
        up.visit(d1, number)
    # d1 is withdrawn: its partners get the withdrawal and the assignment's end, nothing after it.
    up.event("intake", "ProjectWithdrawn", d1, reason="Mamadou renonce", previous_status="in_followup")
    app.end_assignment(d1, reason="dossier_withdrawn")
    up.visit(d1, 4)  # logged after the end (a late entry): not the partners' any more
    up.event("intake", "TrainingRecorded", d3, course="gestion", hours=20, completed_on="2026-11-20")
    up.visit(d2, 1)
    app.enable_feed(uuid.UUID(l2))  # from now on: later events of d2 only
    up.visit(d2, 2)

    expected = {
        # the assignment (requested and assigned in one save), then what followed
        s1: Counter({("AssignmentRequested", d1): 1, ("PartnersAssigned", d1): 1, ("TrainingRecorded", d1): 1,
                     ("FinancingApproved", d1): 1, ("FundsDisbursed", d1): 1, ("FollowUpVisitLogged", d1): 3,
                     ("ProjectWithdrawn", d1): 1, ("AssignmentEnded", d1): 1,
                     ("AssignmentRequested", d4): 1, ("PartnersAssigned", d4): 1}),
        l1: Counter({("AssignmentRequested", d1): 1, ("PartnersAssigned", d1): 1, ("FinancingApproved", d1): 1,
                     ("AgreementSigned", d1): 1, ("FundsDisbursed", d1): 1, ("FollowUpVisitLogged", d1): 3,
                     ("ProjectWithdrawn", d1): 1, ("AssignmentEnded", d1): 1}),
        s2: Counter({("AssignmentRequested", d2): 1, ("PartnersAssigned", d2): 1, ("FollowUpVisitLogged", d2): 2}),
        l2: Counter({("FollowUpVisitLogged", d2): 1}),
    }

    async def scenario() -> dict[str, list[Any]]:
        await produce_as(world.settings, world.topic(event_topic("partners")), partners_records(app))
        await up.publish(world)
        await feed_until(PartnerFeed(app, world.settings), sum(sum(c.values()) for c in expected.values()))
        return {p: await read_as(world.as_partner(p), world.topic(partner_feed_topic(p)), world.group_of(p),
                                 sum(expected[p].values()))
                for p in expected}

    feeds = asyncio.run(scenario())

    for partner, records in feeds.items():
        events = [json.loads(r.value) for r in records]
        got = Counter((e["type"].split(".")[2], uuid.UUID(e["projectid"])) for e in events)
        assert got == expected[partner], partner
        assert len({e["id"] for e in events}) == len(events), "an event reached a partner twice"
        for record, event in zip(records, events):
            validate_record(record.value, channel="partner")  # as asyncapi.yaml documents the partner topics
            assert record.key.decode() == event["projectid"] == event["subject"]
            assert event["source"] == "/passerelle/partners/feed"
            assert not [s for s in SECRETS if s.encode() in record.value], event
        # Per dossier, in the order it happened across the services (the job read them all at once,
        # topic by topic): the decision before the visits, the withdrawal after them.
        for dossier in {e["projectid"] for e in events}:
            happened = [(datetime.fromisoformat(e["time"].replace("Z", "+00:00")), e["type"].split(".")[2])
                        for e in events if e["projectid"] == dossier]
            assert happened == sorted(happened, key=lambda h: h[0]), happened
        visits = [e["data"]["visit_number"] for e in events if e["type"].endswith("FollowUpVisitLogged.v1")]
        assert visits == sorted(visits)

    for partner in (s1, l1):
        ended = next(json.loads(r.value) for r in feeds[partner] if b"AssignmentEnded" in r.value)
        assert ended["data"] == {"project_id": str(d1)}
    approved = next(json.loads(r.value) for r in feeds[l1] if b"FinancingApproved" in r.value)
    assert approved["data"] == {"amount_cents": 550_000, "rule_version": "2026-1"}
    assert approved["partnerrole"] == "local_operator"
    assert approved["origin"] == "/passerelle/funding"


def test_a_visit_after_the_end_is_not_sent_though_it_reached_the_job_before_the_end_was_saved(world):
    """The end is stamped, its save takes a second to commit, and meanwhile a visit is logged and
    reaches the job. The job decides once the visit has settled (feed_settle_seconds): by then the
    end is in partners' store, and the visit, after it, is not sent."""
    app = world.app
    structure = register(app, "Aide Île-de-France", "support_structure", region="FR-IDF")
    register(app, "Bamako Conseil", "local_operator", countries=("ML",))
    app.enable_feed(uuid.UUID(structure))
    dossier = uuid.uuid4()
    app.assign(dossier, country="ML", french_region="FR-IDF", sector="trade")
    world.grant([structure])
    up = Upstream()
    up.visit(dossier, 1)
    partners_topic = world.topic(event_topic("partners"))
    save = app.save

    def slow_save(*aggregates: Any, **kwargs: Any) -> Any:
        time.sleep(1.0)  # the end is stamped; its commit comes a second later
        return save(*aggregates, **kwargs)

    async def scenario() -> list[Any]:
        published = partners_records(app)
        await produce_as(world.settings, partners_topic, published)
        await up.publish(world)
        feed = PartnerFeed(app, world.settings)
        stop = asyncio.Event()
        task = asyncio.create_task(feed.run(stop))
        try:
            deadline = time.monotonic() + 30
            while feed.published < 3 and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.1)  # the assignment and visit 1 are out
            assert feed.published == 3
            app.save = slow_save
            ending = asyncio.create_task(asyncio.to_thread(app.end_assignment, dossier, "dossier_withdrawn"))
            await asyncio.sleep(0.2)
            up.visit(dossier, 2)  # after the end's stamp, on Kafka before the end's commit
            await produce_as(world.as_principal("followup"), world.topic(event_topic("followup")),
                             up.records["followup"][-1:])
            await ending
            app.save = save
            await produce_as(world.settings, partners_topic, partners_records(app)[len(published):])
            while feed.published < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await asyncio.sleep(world.settings.feed_settle_seconds + 1.0)  # visit 2 had its chance
        finally:
            app.save = save
            stop.set()
            await task
        return await read_as(world.as_partner(structure), world.topic(partner_feed_topic(structure)),
                             world.group_of(structure), 4)

    events = [json.loads(r.value) for r in asyncio.run(scenario())]
    assert [e["type"].split(".")[2] for e in events] == [
        "AssignmentRequested", "PartnersAssigned", "FollowUpVisitLogged", "AssignmentEnded"]
    assert [e["data"]["visit_number"] for e in events if "visit_number" in e["data"]] == [1]


def test_the_feed_killed_inside_a_transaction_publishes_each_event_once(world, tmp_path):
    app = world.app
    s1 = register(app, "Aide Île-de-France", "support_structure", region="FR-IDF")
    l1 = register(app, "Bamako Conseil", "local_operator", countries=("ML",))
    for partner in (s1, l1):
        app.enable_feed(uuid.UUID(partner))
    dossiers = [uuid.uuid4() for _ in range(3)]
    for dossier in dossiers:
        app.assign(dossier, country="ML", french_region="FR-IDF", sector="trade")
    world.grant([s1, l1])
    up = Upstream()
    visits = 30
    for number in range(1, visits + 1):
        for dossier in dossiers:
            up.visit(dossier, number)
    per_partner = len(dossiers) * (visits + 2)  # the visits, and each assignment's two events
    asyncio.run(produce_as(world.settings, world.topic(event_topic("partners")), partners_records(app)))
    asyncio.run(up.publish(world))

    marker = tmp_path / "stopped-in-transaction"

    def worker(*stop_in: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "tests.integration.feed_worker",
                                 world.settings.model_dump_json(), "10", *stop_in], cwd=os.getcwd())

    first = worker("3", str(marker))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert first.poll() is None, "the feed job died before its third transaction"
            assert time.monotonic() < deadline, "the feed job never reached its third transaction"
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    second = worker()
    try:
        feeds = {p: asyncio.run(read_as(world.as_partner(p), world.topic(partner_feed_topic(p)),
                                        world.group_of(p), per_partner)) for p in (s1, l1)}
    finally:
        second.terminate()
        second.wait()

    for partner, records in feeds.items():
        events = [json.loads(r.value) for r in records]
        assert len(events) == per_partner, partner
        assert len({e["id"] for e in events}) == per_partner, "an event reached a partner twice"
        for dossier in dossiers:
            numbers = [e["data"]["visit_number"] for e in events
                       if e["projectid"] == str(dossier) and "visit_number" in e["data"]]
            assert numbers == list(range(1, visits + 1)), "a dossier's visits out of order or missing"
    # The killed job's open transaction did reach the broker: read_committed left it out.
    everything = asyncio.run(read_as(world.as_partner(s1), world.topic(partner_feed_topic(s1)),
                                     world.group_of(s1, "uncommitted"), per_partner + 1, committed=False,
                                     timeout=5))
    assert len(everything) > per_partner


def test_the_broker_refuses_what_a_principal_was_not_granted(world):
    mine, theirs = str(uuid.uuid4()), str(uuid.uuid4())
    world.grant([mine, theirs])
    admin = world.as_principal("admin")
    partner = world.as_partner(mine)
    own_topic, their_topic = (world.topic(partner_feed_topic(p)) for p in (mine, theirs))

    async def scenario() -> dict[str, BaseException | None]:
        await create_topics(admin, [Topic(partner_feed_topic(p)) for p in (mine, theirs)])
        await produce_as(admin, own_topic, [(b"d", b"{}")])
        await produce_as(admin, their_topic, [(b"d", b"{}")])
        return {
            "own topic, own group": await refusal(lambda: try_reading(partner, own_topic, world.group_of(mine))),
            "another partner's topic": await refusal(
                lambda: try_reading(partner, their_topic, world.group_of(mine))),
            "intake.events": await refusal(
                lambda: try_reading(partner, world.topic("intake.events"), world.group_of(mine))),
            "a group outside its prefix": await refusal(
                lambda: try_reading(partner, own_topic, world.topic(f"partner.{theirs}.reader"))),
            "partner writes its own topic": await refusal(lambda: try_writing(partner, own_topic)),
            "intake writes intake.events": await refusal(
                lambda: try_writing(world.as_principal("intake"), world.topic("intake.events"))),
            "intake writes funding.events": await refusal(
                lambda: try_writing(world.as_principal("intake"), world.topic("funding.events"))),
            "partners writes intake.events": await refusal(
                lambda: try_writing(world.settings, world.topic("intake.events"))),
        }

    answers = asyncio.run(scenario())
    assert answers["own topic, own group"] is None
    assert answers["intake writes intake.events"] is None
    assert isinstance(answers["another partner's topic"], TopicAuthorizationFailedError)
    assert isinstance(answers["intake.events"], TopicAuthorizationFailedError)
    assert isinstance(answers["a group outside its prefix"], GroupAuthorizationFailedError)
    assert isinstance(answers["partner writes its own topic"], TopicAuthorizationFailedError)
    assert isinstance(answers["intake writes funding.events"], TopicAuthorizationFailedError)
    assert isinstance(answers["partners writes intake.events"], TopicAuthorizationFailedError)
