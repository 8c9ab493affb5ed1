"""The Kafka topics, defined once (docs/events.md), and their idempotent creation.

    python -m shared.topics create      # creates what is missing, fixes retention
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

if TYPE_CHECKING:  # light for the audit's reader processes, which only need the names
    from shared.settings import Settings

FOREVER = "-1"
THIRTY_DAYS_MS = str(30 * 24 * 3600 * 1000)
SERVICES = ("intake", "partners", "funding", "followup")
# Every relay's signed checkpoints, keyed by service: one partition keeps them in order.
CHECKPOINTS_TOPIC = "audit.checkpoints"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int = 3
    config: dict[str, str] = field(default_factory=dict)


def event_topic(service: str) -> str:
    return f"{service}.events"


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def partner_feed_topic(partner_id: str) -> str:
    return f"partner.{partner_id}.events"


def definitions(replication: int = 1) -> list[Topic]:
    """Every topic Passerelle writes, with its settings. Partner feeds are made on demand."""
    durable = {"retention.ms": FOREVER, "retention.bytes": "-1", "cleanup.policy": "delete",
               "min.insync.replicas": "2" if replication >= 3 else "1"}
    topics = [Topic(event_topic(s), 3, durable) for s in SERVICES]
    topics.append(Topic(CHECKPOINTS_TOPIC, 1, durable))
    topics += [Topic(dlq_topic(event_topic(s)), 3, {"retention.ms": THIRTY_DAYS_MS}) for s in SERVICES]
    return topics


async def create_topics(settings: Settings, topics: list[Topic] | None = None, replication: int = 1) -> list[str]:
    """Create the missing topics and set the retention of all; returns the names created."""
    topics = topics or definitions(replication)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    await admin.start()
    created = []
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if settings.topic(t.name) not in existing]
        for t in missing:
            try:
                await admin.create_topics(
                    [NewTopic(settings.topic(t.name), t.partitions, replication, topic_configs=t.config)]
                )
                created.append(settings.topic(t.name))
            except TopicAlreadyExistsError:
                pass
        present = [t for t in topics if t not in missing and t.config]
        if present:
            await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, settings.topic(t.name), configs=t.config) for t in present]
            )
    finally:
        await admin.close()
    return created


def main(argv: list[str]) -> int:
    if argv[1:] != ["create"]:
        print("usage: python -m shared.topics create", file=sys.stderr)
        return 2
    from shared.settings import Settings

    settings = Settings()
    created = asyncio.run(create_topics(settings))
    print(f"topics ready on {settings.kafka_bootstrap_servers}" + (f" (created {', '.join(created)})" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
