"""Part 6: the auditor's replay-and-verify beside raw aiokafka consumption of the same topics.

K events (default 1,000,000) are written straight to the four services' topics of a
fresh prefix as the relays write them: CloudEvents with `sequence` and `leafhash`
(funding's follow a dossier's life, two thirds of them decisions for the ledger),
keyed by aggregate, 3 partitions each, with a checkpoint signed (Ed25519) every 1,000
events of each log. Then, in the same run, R rounds (default 3), each:

- raw: an aiokafka consumer (no group) reads every record of those topics from offset 0
  to the end, doing nothing with them;
- audit: `services.audit.consumers.Replay.replay_once`, the very replay of the audit
  service and `make audit`: in the reader processes (two per core, at most one per log, each
  its own consumer of whole logs), every record's leaf hash checked, every tree rebuilt,
  every checkpoint's signature and root verified; in this process, what they found taken
  and funding's decisions parsed into the ledger. It must find no problem and every
  decision. The readers' CPU is counted when they end (CpuMeter: this process's children).

Each round's ratio compares the two runs side by side (the speed of this machine drifts from
minute to minute); the figures are the medians of the rounds.

Targets: audit >= 50 % of raw; 1,000,000 events in 60 s or less.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench.infra import CpuMeter, Infra, median, short_cpu
from bench.report import Figure
from services.audit.application import AuditApplication
from services.audit.consumers import Replay
from shared.checkpoint import Checkpoint, NoteSigner, origin
from shared.envelope import record_from_state
from shared.ledger import DECISIONS
from shared.merkle import CompactTree
from shared.relay import producer
from shared.topics import CHECKPOINTS_TOPIC, SERVICES, event_topic

PART = "6 audit"
TARGET_PCT = 50.0
TARGET_SECONDS_PER_MILLION = 60.0
CHECKPOINT_EVERY = 1000
FUNDING_LIFE = ("DossierRegistered", "FeasibilityGrantRequested", "FeasibilityGrantAwarded", "FinancingRequested",
                "FinancingProposed", "FinancingApproved", "AgreementSigned", "OperatorFeesCommitted", "FundsDisbursed",
                "SpendingEvidenceRecorded", "TrancheReconciled", "FundsDisbursed")


def records_of(service: str, count: int, signer: NoteSigner) -> tuple[list[tuple[bytes, bytes]], list[bytes]]:
    """`count` events of one service's log as its relay publishes them, and the signed checkpoints."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    aggregates = [uuid.uuid4() for _ in range(max(1, count // 8))]
    versions = [0] * len(aggregates)
    tree, records, notes = CompactTree(), [], []
    for sequence in range(count):
        a = sequence % len(aggregates)
        versions[a] += 1
        state = {"timestamp": start + timedelta(milliseconds=sequence), "project_id": str(aggregates[a]),
                 "amount_cents": 500_000 + sequence, "status": "eligible", "rule_version": "2026-1",
                 "reasons": ["country in the programme", "amount under the ceiling"],
                 "_meta": {"actor": "user:bench", "correlationid": str(aggregates[a]), "causationid": None,
                           "traceparent": None, "codeversion": "bench"}}
        # Funding's records follow a dossier's life, two thirds of them decisions the ledger keeps
        # (parsed and recorded); the other logs' content matters to the audit only by its size.
        name = FUNDING_LIFE[(versions[a] - 1) % len(FUNDING_LIFE)] if service == "funding" else "DossierScreened"
        envelope, value = record_from_state(service, name, 1, aggregates[a], versions[a], state, sequence)
        records.append((envelope["subject"].encode(), value))
        tree.append(bytes.fromhex(envelope["leafhash"]))
        if tree.size % CHECKPOINT_EVERY == 0 or tree.size == count:
            notes.append(signer.sign(Checkpoint(signer.name, tree.size, tree.root()).text()).encode())
    return records, notes


async def write(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    kafka = producer(bootstrap, linger_ms=5)
    await kafka.start()
    try:
        pending = []
        for key, value in records:
            pending.append(await kafka.send(topic, value=value, key=key))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await kafka.stop()


async def raw_consume(bootstrap: str, topics: list[str]) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_bytes=16 * 1024 * 1024,
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in range(3 if t.endswith(".events") else 1)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        count = 0
        while True:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(position >= ends[tp] for position, tp in zip(positions, partitions)):
                return count
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            count += sum(len(rs) for rs in batches.values())
    finally:
        await consumer.stop()


async def run(infra: Infra, stack: Any, *, events: int, repeats: int, log: Callable[[str], None]) -> tuple[list[Figure], dict[str, Any]]:
    prefix = infra.prefix("audit")
    settings = infra.settings("audit", "bench_audit_unused", prefix, infra.work_dir / "audit")
    await infra.create_topics(settings)
    keys = {service: NoteSigner(origin(service), Ed25519PrivateKey.generate()) for service in SERVICES}
    per_service = events // len(SERVICES)
    t0 = time.perf_counter()
    log(f"writing {per_service * len(SERVICES):,} events ({per_service:,} per service) and their checkpoints")
    for service in SERVICES:
        records, notes = await asyncio.to_thread(records_of, service, per_service, keys[service])
        await write(settings.kafka_bootstrap_servers, settings.topic(event_topic(service)), records)
        await write(settings.kafka_bootstrap_servers, settings.topic(CHECKPOINTS_TOPIC),
                    [(service.encode(), note) for note in notes])
        del records
    written_s = time.perf_counter() - t0
    topics = [settings.topic(event_topic(s)) for s in SERVICES] + [settings.topic(CHECKPOINTS_TOPIC)]
    cpu_names = infra.cpu_names()

    # Raw and audit take turns, `repeats` rounds, each round's ratio from the two runs side by side:
    # this machine's speed drifts by a quarter from one minute to the next, the same for both.
    rounds: list[dict[str, Any]] = []
    for r in range(repeats):
        log(f"round {r + 1}/{repeats}: raw aiokafka consume of those topics, then the audit's replay of them")
        meter = CpuMeter(cpu_names).start()
        t0 = time.perf_counter()
        raw_count = await raw_consume(settings.kafka_bootstrap_servers, topics)
        raw_s = time.perf_counter() - t0
        raw_cpu = meter.stop()

        auditor = AuditApplication(settings, keys={s.name: s.public_key for s in keys.values()})
        meter = CpuMeter(cpu_names).start()
        t0 = time.perf_counter()
        await Replay(auditor, settings).replay_once()
        audit_s = time.perf_counter() - t0
        audit_cpu = meter.stop()
        decisions = _check(auditor, per_service)
        rounds.append({"raw_s": round(raw_s, 2), "audit_s": round(audit_s, 2), "pct": round(100 * raw_s / audit_s, 1),
                       "raw_cpu": raw_cpu, "audit_cpu": audit_cpu})
        log(f"  raw {raw_s:.2f} s, audit {audit_s:.2f} s: {100 * raw_s / audit_s:.0f} %")

    raw_s, audit_s = median([r["raw_s"] for r in rounds]), median([r["audit_s"] for r in rounds])
    pct = median([r["pct"] for r in rounds])
    typical = min(rounds, key=lambda r: abs(r["pct"] - pct))  # the round whose CPU is shown
    each = ", ".join(f"{r['pct']:.0f}" for r in rounds)
    figures = [
        Figure(PART, f"raw consume, {raw_count:,} records", raw_count / raw_s, "records/s",
               note=f"median of {repeats}: {raw_s:.1f} s; {short_cpu(typical['raw_cpu'])}"),
        Figure(PART, "audit replay + verify", raw_count / audit_s, "records/s",
               note=f"median of {repeats}: {audit_s:.1f} s; every leaf, tree and signed checkpoint checked, no "
                    f"problem, {decisions:,} decisions in the ledger; {short_cpu(typical['audit_cpu'])}"),
        Figure(PART, "audit / raw consume", pct, "%", (">=", TARGET_PCT),
               note=f"median of the rounds' ratios ({each} %), each round raw then audit"),
        Figure(PART, "audit time per 1,000,000 events", audit_s * 1_000_000 / raw_count, "s",
               ("<=", TARGET_SECONDS_PER_MILLION),
               note=f"{len(SERVICES)} logs, a checkpoint every {CHECKPOINT_EVERY} events of each"),
    ]
    details = {"events": raw_count, "write_s": round(written_s, 1), "raw_s": raw_s, "audit_s": audit_s,
               "rounds": rounds}
    return figures, details


def _check(auditor: AuditApplication, per_service: int) -> int:
    """The audit of the honest log found no problem, verified every log to its end and holds every
    decision in its ledger; the number of decisions."""
    report = auditor.verification()
    verified = {name: (s["verified_checkpoint"] or {}).get("size") for name, s in report["services"].items()}
    decisions, aggregates = len(auditor.ledger.entries), max(1, per_service // 8)
    expected = sum(FUNDING_LIFE[(i // aggregates) % len(FUNDING_LIFE)] in DECISIONS for i in range(per_service))
    if decisions != expected:
        raise RuntimeError(f"the audit's ledger holds {decisions} of funding's {expected} decisions")
    if not report["ok"] or any(size != per_service for size in verified.values()):
        raise RuntimeError(f"the audit of an honest log found problems or missed checkpoints: {verified}, "
                           f"{[p for s in report['services'].values() for p in s['problems']][:5]}")
    return decisions
