"""Records checked against the published contract (asyncapi.yaml), as a partner would check them."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import yaml

ASYNCAPI = Path(__file__).resolve().parents[1] / "asyncapi.yaml"


@cache
def _document() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())


# The formats the contract names, checked as a partner's validator would (jsonschema checks
# neither of these two by itself without optional packages).
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("uuid", raises=ValueError)
def _uuid(value: object) -> bool:
    return not isinstance(value, str) or str(uuid.UUID(value)) == value.lower()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return "T" in value and datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None


def validate_record(value: bytes, *, channel: str = "") -> str:
    """Validate one event record against its message's payload schema, formats included; returns
    the event's type. `channel` "partner" for a record of a partner's topic (the event as the feed
    minimised it). Raises jsonschema.ValidationError (or KeyError for a type the contract does not
    know)."""
    event = orjson.loads(value)
    _, service, name, _ = event["type"].split(".")
    prefix = f"{channel}." if channel else ""
    message = _document()["components"]["messages"][f"{prefix}{service}.{name}"]
    # The payload's "#/components/..." references resolve against the whole document.
    schema = {**message["payload"], "components": _document()["components"]}
    jsonschema.validate(event, schema, cls=jsonschema.Draft7Validator, format_checker=FORMATS)
    return event["type"]


def validate_checkpoint(value: bytes) -> None:
    """Validate a record of `audit.checkpoints` (a signed note, text) against its message's schema."""
    payload = _document()["components"]["messages"]["Checkpoint"]["payload"]
    jsonschema.validate(value.decode(), payload, cls=jsonschema.Draft7Validator)
