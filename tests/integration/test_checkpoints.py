"""Signed checkpoints on real PostgreSQL and Kafka: what an auditor holding nothing but the
topics and the service's public key can check (docs/events.md)."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.checkpoint import Checkpoint, load_signer, open_note
from shared.envelope import CloudEvent
from shared.merkle import consistency_proof, root, verify_consistency
from shared.relay import Checkpoints, Relay
from shared.topics import CHECKPOINTS_TOPIC, Topic, create_topics
from tests.contract import validate_checkpoint
from tests.integration.kafka_tools import read_all
from tests.integration.sample import SampleApplication

pytestmark = pytest.mark.integration


async def _relay_until(app: SampleApplication, topic: str, checkpoints: Checkpoints, published: int) -> Relay:
    relay = Relay(app, topic, batch_size=7, poll_interval=0.05, checkpoints=checkpoints)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    deadline = time.monotonic() + 30
    while (relay.sequence < published or relay.checkpointed[0] < published) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await task
    return relay


def _leaves(records) -> list[bytes]:
    events = {e.sequence: e for e in (CloudEvent.parse(r.value) for r in records)}
    assert sorted(events) == list(range(len(events)))
    return [bytes.fromhex(events[i].leafhash) for i in range(len(events))]


def test_checkpoints_sign_the_tree_of_the_published_log_and_grow_consistently_across_restarts(make_settings, kafka):
    settings = make_settings("sample")
    asyncio.run(create_topics(settings, [Topic("sample.events", 3)]))
    topic, checkpoints_topic = settings.topic("sample.events"), settings.topic(CHECKPOINTS_TOPIC)
    signer = load_signer(settings)
    every_5 = Checkpoints(checkpoints_topic, signer, every_events=5, every_seconds=0.2)
    app = SampleApplication(settings)
    try:
        tally = app.open("t")
        for i in range(11):
            app.increment(tally, cause=str(i))
        asyncio.run(_relay_until(app, topic, every_5, 12))
        # A new relay (a restart) resumes from the tree recorded with its position...
        for i in range(9):
            app.increment(tally, cause=f"again {i}")
        asyncio.run(_relay_until(app, topic, every_5, 21))
        # ... and one whose recorded tree is gone rebuilds it from the log.
        with app.recorder.datastore.transaction(commit=True) as curs:
            curs.execute(f"DELETE FROM {app.recorder.log_tree_table}")
        app.increment(tally, cause="last")
        asyncio.run(_relay_until(app, topic, every_5, 22))
    finally:
        app.close()

    leaves = _leaves(asyncio.run(read_all(kafka, topic, 22)))
    notes = asyncio.run(read_all(kafka, checkpoints_topic, 3))
    assert {r.key for r in notes} == {b"sample"}
    for note in notes:
        validate_checkpoint(note.value)  # as asyncapi.yaml describes them
    checkpoints = [Checkpoint.parse(open_note(r.value.decode(), signer.name, signer.public_key)) for r in notes]
    sizes = [c.size for c in checkpoints]
    assert sizes == sorted(sizes) and sizes[-1] == 22 and len(set(sizes)) >= 3, sizes
    for checkpoint in checkpoints:
        assert checkpoint.origin == "passerelle/sample"
        assert checkpoint.root == root(leaves[:checkpoint.size]), checkpoint.size
    for old, new in zip(checkpoints, checkpoints[1:]):
        if old.size < new.size:
            proof = consistency_proof(leaves[:new.size], old.size)
            assert verify_consistency(old.size, new.size, old.root, new.root, proof)


def test_a_forged_checkpoint_does_not_open_with_the_service_key(make_settings):
    settings = make_settings("sample")
    signer = load_signer(settings)
    note = signer.sign(Checkpoint(signer.name, 3, bytes(32)).text())
    forged = note.replace("\n3\n", "\n4\n")
    with pytest.raises(ValueError):
        open_note(forged, signer.name, signer.public_key)
    assert load_signer(settings).public_key == signer.public_key, "the key is made once and kept"
