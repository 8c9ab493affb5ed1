"""What every service's request models and query parameters share: plain text only, RFC 3339 times.

A NUL byte or another control character in a stored string breaks what reads it later
(PostgreSQL refuses NUL in text, and a projector would retry that event forever), and a
lone surrogate cannot be encoded at all: they are refused at the edge, 422, before
anything is saved.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, field_validator

# C0 and C1 control characters and DEL, and lone surrogates. Tab, line feed and carriage
# return are allowed in request bodies: people type multi-line text.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
# In a path or a query string not even those.
CONTROL_OR_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def control_character_in(value: Any) -> bool:
    """Whether a string in `value` (strings, lists, dicts, nested) holds a control character."""
    if isinstance(value, str):
        return CONTROL.search(value) is not None
    if isinstance(value, dict):
        return any(control_character_in(k) or control_character_in(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(control_character_in(v) for v in value)
    return False  # numbers, dates, and nested models (which check their own fields)


# The same, as JSON Schema patterns for the OpenAPI (ECMA-262 and Python both read \u escapes).
PLAIN_TEXT = r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$"
PLAIN_LINE = r"^[^\u0000-\u001f\u007f-\u009f]*$"


def with_pattern(schema: dict[str, Any], pattern: str) -> None:
    """Adds `pattern` to the free strings of a JSON schema (those without a pattern, format or
    closed list of their own), nested in lists, maps and unions too: the contract says what the
    edge refuses."""
    if schema.get("type") == "string" and not {"pattern", "format", "enum", "const"} & schema.keys():
        schema["pattern"] = pattern
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for part in schema.get(key, []):
            with_pattern(part, pattern)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            with_pattern(schema[key], pattern)
    for part in schema.get("properties", {}).values():
        with_pattern(part, pattern)


def _plain_text_schema(schema: dict[str, Any], model: type) -> None:
    with_pattern(schema, PLAIN_TEXT)


class Strict(BaseModel):
    """The base of every request body: no unknown field, no control character in any string."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, json_schema_extra=_plain_text_schema)

    @field_validator("*", mode="after")
    @classmethod
    def plain_text(cls, value: Any) -> Any:
        if control_character_in(value):
            raise ValueError("control characters (NUL and the like) are not allowed; "
                             "only tab, line feed and carriage return are")
        return value


# RFC 3339: a full date, a time and a zone (Z or an offset); nothing else (no timestamps).
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
# Years whose times can be moved to UTC and compared or shifted by a year without overflowing.
FIRST_YEAR, LAST_YEAR = 1970, 9998
# The same years, as the OpenAPI pattern of a date-time parameter.
MOMENT_PATTERN = r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"


def _rfc3339_only(value: Any) -> Any:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        raise ValueError("an RFC 3339 date-time with its zone is needed, e.g. 2026-03-01T12:00:00Z")
    if not FIRST_YEAR <= int(value[:4]) <= LAST_YEAR:
        raise ValueError(f"the year must be between {FIRST_YEAR} and {LAST_YEAR}")
    return value


def _in_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Moment = Annotated[
    AwareDatetime,
    BeforeValidator(_rfc3339_only),
    AfterValidator(_in_utc),
]
"""A date-time query parameter: RFC 3339 with its zone only, given back in UTC."""
MOMENT = f"RFC 3339 with its zone (e.g. 2026-03-01T12:00:00Z), years {FIRST_YEAR} to {LAST_YEAR}"
