"""Records checked against the published contract (asyncapi.yaml), as a partner would check them."""

from __future__ import annotations

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


def validate_record(value: bytes, *, channel: str = "") -> str:
    """Validate one event record against its message's payload schema; returns the event's type.
    `channel` "partner" for a record of a partner's topic (the event as the feed minimised it).
    Raises jsonschema.ValidationError (or KeyError for a type the contract does not know)."""
    event = orjson.loads(value)
    _, service, name, _ = event["type"].split(".")
    prefix = f"{channel}." if channel else ""
    message = _document()["components"]["messages"][f"{prefix}{service}.{name}"]
    # The payload's "#/components/..." references resolve against the whole document.
    schema = {**message["payload"], "components": _document()["components"]}
    jsonschema.validate(event, schema, cls=jsonschema.Draft7Validator)
    return event["type"]
