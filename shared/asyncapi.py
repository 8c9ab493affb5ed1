"""The AsyncAPI 3 document of every topic and event, generated from the code.

    python -m shared.asyncapi > asyncapi.yaml

A test checks the committed `asyncapi.yaml` equals what this prints, so the
contract with auditors and partners can never drift from the events the
services actually publish.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import importlib
import inspect
import sys
import types
import typing
from datetime import date, datetime
from typing import Any
from uuid import UUID

import yaml
from eventsourcing.domain import BaseAggregate, CanMutateAggregate

from shared.topics import CHECKPOINTS_TOPIC, dlq_topic, event_topic

# The services whose events are published, and where their aggregates live.
SERVICES = {
    "intake": "services.intake.domain",
    "partners": "services.partners.domain",
    "funding": "services.funding.domain",
    "followup": "services.followup.domain",
}
_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def json_schema(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        schema = json_schema(options[0]) if len(options) == 1 else {"oneOf": [json_schema(a) for a in options]}
        if len(options) < len(typing.get_args(annotation)):
            schema = {"anyOf": [schema, {"type": "null"}]}
        return schema
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(annotation)
        return {"type": "array", "items": json_schema(args[0]) if args else {}}
    if origin is dict or annotation is dict:
        return {"type": "object"}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is UUID:
        return {"type": "string", "format": "uuid"}
    if annotation is datetime:
        return {"type": "string", "format": "date-time"}
    if annotation is date:
        return {"type": "string", "format": "date"}
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return {"type": "string", "enum": [member.value for member in annotation]}
    if inspect.isclass(annotation) and issubclass(annotation, str):
        return {"type": "string"}
    return {}


def events_of(module_name: str) -> list[type]:
    module = importlib.import_module(module_name)
    found = []
    for aggregate in vars(module).values():
        if not (inspect.isclass(aggregate) and issubclass(aggregate, BaseAggregate)
                and aggregate.__module__ == module_name):
            continue
        for value in vars(aggregate).values():
            if (inspect.isclass(value) and issubclass(value, CanMutateAggregate)
                    and value.__qualname__.startswith(aggregate.__name__ + ".")
                    and value.__name__ not in ("Event", "Created", "Snapshot")):
                found.append(value)
    return sorted(found, key=lambda c: c.__qualname__)


def event_message(service: str, cls: type) -> dict[str, Any]:
    all_hints = typing.get_type_hints(cls)
    hints = {f.name: all_hints[f.name] for f in dataclasses.fields(cls)}
    fields = {k: json_schema(v) for k, v in hints.items() if k not in _BASE_FIELDS and not k.startswith("_")}
    required = [k for k, v in hints.items() if k in fields and not (
        typing.get_origin(v) in (typing.Union, types.UnionType) and type(None) in typing.get_args(v))]
    version = getattr(cls, "class_version", 1)
    aggregate = cls.__qualname__.split(".")[0]
    return {
        "name": cls.__name__,
        "title": f"{cls.__name__} (v{version})",
        "summary": f"An event of the {aggregate} aggregate; CloudEvent type passerelle.{service}.{cls.__name__}.v{version}",
        "contentType": "application/cloudevents+json",
        "headers": {"$ref": "#/components/schemas/RecordHeaders"},
        "payload": {
            "allOf": [
                {"$ref": "#/components/schemas/CloudEvent"},
                {"type": "object", "properties": {
                    "type": {"const": f"passerelle.{service}.{cls.__name__}.v{version}"},
                    "source": {"const": f"/passerelle/{service}"},
                    "data": {"type": "object", "properties": fields, "required": sorted(required),
                             "additionalProperties": False},
                }},
            ]
        },
    }


CLOUD_EVENT = {
    "type": "object",
    "description": "CloudEvents 1.0, structured mode, canonical JSON (RFC 8785). The leaf of the "
                   "service's Merkle log is this object without `leafhash`.",
    "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data",
                 "sequence", "aggregateversion", "actor", "correlationid", "causationid", "leafhash"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": "stable across re-publishes"},
        "source": {"type": "string", "pattern": "^/passerelle/[a-z]+$"},
        "type": {"type": "string", "pattern": "^passerelle\\.[a-z]+\\.[A-Za-z]+\\.v[0-9]+$"},
        "subject": {"type": "string", "description": "the aggregate id (also the record key)"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
        "sequence": {"type": "integer", "minimum": 0, "description": "index in the service's log: 0, 1, 2, ..."},
        "aggregateversion": {"type": "integer", "minimum": 1},
        "actor": {"type": "string", "pattern": "^(user|service|partner):.+$",
                  "description": "who acted: a human, user:<issuer>#<subject> (user:<subject> or "
                                 "partner:<partner id> in events recorded before), or service:<name>"},
        "correlationid": {"type": "string", "description": "the dossier's flow id"},
        "causationid": {"type": "string", "description": "the event or request that caused this one"},
        "leafhash": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                     "description": "sha256(0x00 || JCS(envelope without leafhash)), hex"},
        "codeversion": {"type": "string", "description": "version of the code that recorded the event"},
    },
}

RECORD_HEADERS = {
    "type": "object",
    "properties": {
        "content-type": {"const": "application/cloudevents+json"},
        "traceparent": {"type": "string", "description": "W3C trace context of the request that caused the event"},
    },
}


CHECKPOINT_MESSAGE = {
    "name": "Checkpoint",
    "title": "Signed checkpoint",
    "summary": "A C2SP tlog-checkpoint (origin `passerelle/<service>`, tree size, base64 root hash, one per "
               "line) in a C2SP signed note, signed with the service's Ed25519 key (GET /v1/keys).",
    "contentType": "text/plain; charset=utf-8",
    "payload": {"type": "string", "pattern": "^passerelle/[a-z]+\\n[0-9]+\\n[A-Za-z0-9+/=]{44}\\n",
                "examples": ["passerelle/intake\n12\n<base64 root>\n\n\u2014 passerelle/intake <base64 key id and signature>\n"]},
}


PARTNER_FEED_EVENT = {
    "type": "object",
    "description": "What a partner receives on its own topic: the original event's id, type, time and subject, "
                   "its data minimised to an allow-list, `source` the partner feed and `origin` the service that "
                   "recorded it. Canonical JSON (RFC 8785). Published in Kafka transactions: read with "
                   "isolation.level=read_committed.",
    "required": ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data", "origin",
                 "projectid", "partnerrole", "correlationid"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": "the original event's id"},
        "source": {"const": "/passerelle/partners/feed"},
        "type": {"type": "string", "pattern": "^passerelle\\.[a-z]+\\.[A-Za-z]+\\.v[0-9]+$"},
        "subject": {"type": "string", "description": "the original event's aggregate id"},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
        "origin": {"type": "string", "pattern": "^/passerelle/[a-z]+$", "description": "the original source"},
        "projectid": {"type": "string", "format": "uuid", "description": "the dossier (also the record key)"},
        "partnerrole": {"enum": ["support_structure", "local_operator"]},
        "correlationid": {"type": "string", "description": "the dossier's flow id"},
    },
}


def partner_feed(messages: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The partner topics' channel and messages: one per event type partners receive, its data the
    shared fields (typed as in the original event when its service is documented here)."""
    from shared.partner_share import SHARED

    feed_messages = {}
    for kind, share in SHARED.items():
        service, name = kind.split(".")
        original = messages.get(kind)
        source_fields = original["payload"]["allOf"][1]["properties"]["data"]["properties"] if original else {}
        fields = {field: copy.deepcopy(source_fields.get(field, {})) for field in share.fields}
        feed_messages[f"partner.{kind}"] = {
            "name": f"{name}ForPartners",
            "title": f"{name}, as a partner receives it",
            "summary": f"passerelle.{service}.{name} minimised, sent to the {' and '.join(sorted(share.roles))}",
            "contentType": "application/cloudevents+json",
            "payload": {"allOf": [
                {"$ref": "#/components/schemas/PartnerFeedEvent"},
                {"type": "object", "properties": {
                    "type": {"pattern": f"^passerelle\\.{service}\\.{name}\\.v[0-9]+$"},
                    "data": {"type": "object", "properties": fields, "additionalProperties": False},
                }},
            ]},
        }
    channel = {
        "address": "partner.{partnerId}.events",
        "description": "One partner's feed: the events about the dossiers assigned to it, from the dossier's "
                       "assignment and the feed's enablement (PartnerFeedEnabled) on, up to the assignment's end "
                       "(AssignmentEnded, the last event of the dossier it receives), minimised, keyed by the "
                       "dossier's id, each dossier's events in the order they happened (their `time`) across the "
                       "services; written by the partners service only, read by that partner's principal "
                       "only; kept forever.",
        "parameters": {"partnerId": {"description": "the partner's id"}},
        "messages": {m["name"]: {"$ref": f"#/components/messages/{key}"} for key, m in feed_messages.items()},
    }
    return channel, feed_messages


def document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for service, module in SERVICES.items():
        topic = event_topic(service)
        channel_messages = {}
        for cls in events_of(module):
            key = f"{service}.{cls.__name__}"
            messages[key] = event_message(service, cls)
            channel_messages[cls.__name__] = {"$ref": f"#/components/messages/{key}"}
        channels[topic] = {
            "address": topic,
            "description": f"Every event of the {service} service, keyed by aggregate id; kept forever (retention.ms=-1).",
            "messages": channel_messages,
        }
        channels[dlq_topic(topic)] = {
            "address": dlq_topic(topic),
            "description": f"Records of {topic} a consumer could not process, with `dlq-error`, `dlq-source` "
                           "and `dlq-consumer` headers; kept 30 days.",
            "messages": copy.deepcopy(channel_messages),
        }
        operations[f"publish{service.title()}Events"] = {
            "action": "send", "channel": {"$ref": f"#/channels/{topic}"},
            "summary": f"The {service} relay publishes its event store, in order, with an idempotent producer.",
        }
    # Funding counts return aid per person as intake knows them: which records exist and which are one person.
    funding_reads = importlib.import_module("services.funding.consumers")
    operations["receivePersonsInFunding"] = {
        "action": "receive", "channel": {"$ref": f"#/channels/{event_topic('intake')}"},
        "summary": "Funding learns the persons intake knows (return aid is only for them) and which records an "
                   "officer confirmed to be one person (their return aids count together, until the merge is undone).",
        "messages": [{"$ref": f"#/channels/{event_topic('intake')}/messages/{name}"}
                     for name in sorted(funding_reads.PERSON_EVENTS | funding_reads.MERGE_EVENTS)],
    }
    channels[CHECKPOINTS_TOPIC] = {
        "address": CHECKPOINTS_TOPIC,
        "description": "Every relay's signed checkpoints of its service's log (RFC 9162 Merkle tree over "
                       "`sequence`), keyed by service name, one partition; kept forever.",
        "messages": {"Checkpoint": {"$ref": "#/components/messages/Checkpoint"}},
    }
    messages["Checkpoint"] = CHECKPOINT_MESSAGE
    channels["partner.{partnerId}.events"], feed_messages = partner_feed(messages)
    messages.update(feed_messages)
    operations["publishPartnerFeeds"] = {
        "action": "send", "channel": {"$ref": "#/channels/partner.{partnerId}.events"},
        "summary": "The partners worker publishes each partner's feed in Kafka transactions (records and the "
                   "offsets they came from commit together).",
    }
    operations["publishCheckpoints"] = {
        "action": "send", "channel": {"$ref": f"#/channels/{CHECKPOINTS_TOPIC}"},
        "summary": "Each relay publishes a checkpoint every N events or T seconds, once the events it covers "
                   "are acknowledged.",
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Passerelle events",
            "version": "1.0.0",
            "description": "Domain events of Passerelle on Apache Kafka: the audit trail of every public-funds "
                           "decision. Topic names, event types and envelope fields are a contract: they change "
                           "only with a versioned migration. Generated by `python -m shared.asyncapi`.",
        },
        "defaultContentType": "application/cloudevents+json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": {"CloudEvent": CLOUD_EVENT, "RecordHeaders": RECORD_HEADERS,
                                                          "PartnerFeedEvent": PARTNER_FEED_EVENT}},
    }


def render() -> str:
    return yaml.safe_dump(document(), sort_keys=False, allow_unicode=True, width=110)


if __name__ == "__main__":
    sys.stdout.write(render())
