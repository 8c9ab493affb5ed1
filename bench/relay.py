"""Part 2: `shared.relay.Relay` beside raw aiokafka produce of the same records.

K events are pre-written in bulk to a fresh store (database bench_relay): real intake
aggregates (Project: ProjectSubmitted, EligibilityAssessed; Person: PersonRegistered,
DossierOpened), 500 events per save, each save with its own command context
(actor, W3C traceparent) as a request would store it.

Relay: `Relay.drain(producer)` (pipelined, as the running relay), from the first read of the store to
the return of the batch holding the last event (its broker acknowledgements and its
tracking row), with the kernel's own producer (`shared.relay.producer`: idempotent,
acks=all, linger 2 ms, 256 KiB batches) and batch size (`Settings.relay_batch_size`).
Each repeat publishes the whole log again, to a fresh topic (3 partitions).

Raw: the records the relay published, read back from Kafka (the very same key, value
and header bytes), sent again in the same order with the same producer settings:
  - "same batching": sends of `relay_batch_size` records, then await all their acks, as
    the relay does per batch (the fair comparison);
  - "streamed": every send at once, then await all acks (what the broker and client can
    do at best, for reference).
Also measured, to explain the relay's rate: reading the log alone
(`log_after`) and building the records alone (`Relay._records`: decode, the
CloudEvent, RFC 8785 JSON, the leaf hash, the trace link; the publish span is one per batch).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
import uuid
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import CpuMeter, Infra, median, short_cpu
from bench.report import Figure
from services.intake.application import load_rules, new_reference
from services.intake.domain import Person, Project
from shared import telemetry
from shared.relay import Relay, producer
from shared.store import CommandContext, ServiceApplication, acting
from shared.topics import Topic

PART = "2 relay"
TARGET_PCT = 50.0
PARTITIONS = 3  # as intake.events (shared.topics.definitions)


class RelaySource(ServiceApplication):
    """A store holding intake's events (tables intake_events...), in its own database."""

    name = "intake"


def prewrite(app: ServiceApplication, events: int, per_save: int = 500) -> int:
    rules = load_rules()
    written = 0
    while written < events:
        aggregates: list[Any] = []
        for _ in range(min(per_save, events - written) // 4 or 1):
            person_id = uuid.uuid4()
            project = Project(
                reference=new_reference(), person_id=person_id,
                promoter_ciphertext=base64.b64encode(os.urandom(200)).decode(), country="SN",
                french_region="FR-IDF", sector="trade", title="Boutique", description="",
                requested_amount_cents=500000, own_contribution_cents=100000, planned_jobs=2,
            )
            person = Person(person_id=person_id)
            person.open_dossier(project.id)
            project.screen(rules)
            aggregates += [project, person]
        context = CommandContext(actor="user:bench", causation_id=f"request:{uuid.uuid4()}",
                                 traceparent=f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01")
        with acting(context):
            app.save(*aggregates)
        written += 2 * len(aggregates)
    return written


async def relay_once(app: ServiceApplication, topic: str, bootstrap: str, batch_size: int, total: int,
                     cpu_names: dict[int, str]) -> dict[str, Any]:
    relay = Relay(app, topic, batch_size=batch_size)
    kafka = producer(bootstrap)
    await kafka.start()
    try:
        await kafka.partitions_for(topic)  # metadata fetched before the clock starts, as for raw
        meter = CpuMeter(cpu_names).start()
        t0 = time.perf_counter()
        await relay.drain(kafka)  # pipelined, as the running relay publishes
        batches = -(-relay.published // batch_size)
        seconds = time.perf_counter() - t0
        cpu = meter.stop()
    finally:
        await kafka.stop()
    return {"published": relay.published, "batches": batches, "seconds": seconds,
            "events_per_s": relay.published / seconds, "cpu": cpu}


async def read_back(bootstrap: str, topic: str, partitions: int, expect: int, timeout: float = 60) -> list[tuple[bytes, bytes, list]]:
    """The records of `topic` as published (key, value, headers), in the log's order (`sequence`)."""
    import json

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list[Any] = []
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_beginning(*assigned)
        deadline = time.monotonic() + timeout
        while len(records) < expect and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    records.sort(key=lambda r: json.loads(r.value)["sequence"])
    return [(r.key, r.value, list(r.headers)) for r in records]


async def raw_once(records: list[tuple[bytes, bytes, list]], topic: str, bootstrap: str, chunk: int | None,
                   cpu_names: dict[int, str]) -> dict[str, Any]:
    kafka = producer(bootstrap)
    await kafka.start()
    try:
        await kafka.partitions_for(topic)
        meter = CpuMeter(cpu_names).start()
        t0 = time.perf_counter()
        step = chunk or len(records)
        for start in range(0, len(records), step):
            acks = [await kafka.send(topic, value=v, key=k, headers=h) for k, v, h in records[start:start + step]]
            await asyncio.gather(*acks)
        seconds = time.perf_counter() - t0
        cpu = meter.stop()
    finally:
        await kafka.stop()
    return {"sent": len(records), "seconds": seconds, "events_per_s": len(records) / seconds, "cpu": cpu}


def time_store_read(app: ServiceApplication, batch_size: int) -> tuple[int, float, list[Any]]:
    t0 = time.perf_counter()
    position, notes = 0, []
    while True:
        batch = app.recorder.log_after(position, batch_size)
        if not batch:
            break
        notes.extend(batch)
        position = batch[-1].id
    return len(notes), time.perf_counter() - t0, notes


def time_build(app: ServiceApplication, topic: str, notes: list[Any], batch_size: int) -> float:
    relay = Relay(app, topic, batch_size=batch_size)
    t0 = time.perf_counter()
    for start in range(0, len(notes), batch_size):
        relay._records(notes[start:start + batch_size], relay.sequence)
        relay.sequence += min(batch_size, len(notes) - start)
    return time.perf_counter() - t0


async def run(infra: Infra, stack: Any, *, events: int, repeats: int,
              log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    # As in a service process: the SDK tracer provider (spans made, not exported), JSON logs.
    telemetry.setup("bench", "none", "WARNING")
    prefix = infra.prefix("relay")
    infra.reset_database("bench_relay")
    settings = infra.settings("intake", "bench_relay", prefix, infra.work_dir / "relay")
    batch_size = settings.relay_batch_size
    topics = {kind: [f"{kind}{i}.events" for i in range(repeats)] for kind in ("relay", "rawbatched", "rawstreamed")}
    durable = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}
    await infra.create_topics(settings, [Topic(name, PARTITIONS, durable) for names in topics.values() for name in names])

    app = RelaySource(settings)
    stack.callback(app.close)
    log(f"pre-writing {events} intake events to bench_relay (500 per save)")
    t0 = time.perf_counter()
    written = await asyncio.to_thread(prewrite, app, events)
    prewrite_s = time.perf_counter() - t0
    cpu_names = infra.cpu_names()

    runs: dict[str, list[dict[str, Any]]] = {"relay": [], "rawbatched": [], "rawstreamed": []}
    records: list[tuple[bytes, bytes, list]] = []
    for i in range(repeats):
        log(f"relay run {i + 1}/{repeats}: {written} events, batches of {batch_size}")
        result = await relay_once(app, settings.topic(topics["relay"][i]), settings.kafka_bootstrap_servers,
                                  batch_size, written, cpu_names)
        runs["relay"].append(result)
        log(f"  relay {result['events_per_s']:,.0f} events/s ({result['seconds']:.2f} s)")
        if not records:
            records = await read_back(settings.kafka_bootstrap_servers, settings.topic(topics["relay"][0]), PARTITIONS,
                                        written)
            if len(records) != written:
                raise RuntimeError(f"read back {len(records)} records of {written}")
        for kind, chunk in (("rawbatched", batch_size), ("rawstreamed", None)):
            result = await raw_once(records, settings.topic(topics[kind][i]), settings.kafka_bootstrap_servers, chunk,
                                    cpu_names)
            runs[kind].append(result)
            log(f"  raw produce ({kind}) {result['events_per_s']:,.0f} events/s ({result['seconds']:.2f} s)")

    count, read_s, notes = await asyncio.to_thread(time_store_read, app, batch_size)
    build_s = await asyncio.to_thread(time_build, app, settings.topic("scratch"), notes, batch_size)

    rate = {kind: median([r["events_per_s"] for r in results]) for kind, results in runs.items()}
    pct = 100 * rate["relay"] / rate["rawbatched"]
    pct_streamed = 100 * rate["relay"] / rate["rawstreamed"]
    value_bytes = sum(len(v) for _, v, _ in records) / max(1, len(records))
    relay_cpu = runs["relay"][len(runs["relay"]) // 2]["cpu"]
    each = {kind: ", ".join(f"{r['events_per_s']:,.0f}" for r in results) for kind, results in runs.items()}
    figures = [
        Figure(PART, f"Relay, {written} events", rate["relay"], "events/s",
               note=f"median of {repeats}: {each['relay']}; "
                    f"{short_cpu(relay_cpu)}"),
        Figure(PART, "raw produce, same batching", rate["rawbatched"], "events/s",
               note=f"{batch_size} sends then await acks; runs {each['rawbatched']}"),
        Figure(PART, "raw produce, streamed", rate["rawstreamed"], "events/s",
               note=f"all sends then await acks (reference); runs {each['rawstreamed']}"),
        Figure(PART, "relay / raw produce (same batching)", pct, "%", (">=", TARGET_PCT),
               note=f"relay / raw streamed: {pct_streamed:.0f} %; mean record value {value_bytes:.0f} B"),
        Figure(PART, "store read alone (log_after)", count / read_s, "events/s",
               note=f"{count} notifications in batches of {batch_size}"),
        Figure(PART, "records built alone (Relay._records)", count / build_s, "events/s",
               note=f"{1e6 * build_s / count:.0f} µs/event: decode, CloudEvent, canonical JSON, leaf hash, trace link"),
    ]
    details = {"events": written, "prewrite_s": round(prewrite_s, 2), "batch_size": batch_size,
               "mean_value_bytes": round(value_bytes), "runs": runs,
               "store_read_events_per_s": round(count / read_s), "build_events_per_s": round(count / build_s)}
    return figures, details
