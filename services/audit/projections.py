"""The audit's read models: kept in memory, rebuilt from Kafka at every start.

The verified logs are `AuditApplication.logs` (a Merkle tree per service). The
ledger of public-funds decisions and the envelopes' totals are rebuilt here from
the records of `funding.events` alone, with the rule funding keeps its own ledger
by (`shared.ledger`), so that the two can be compared. No SQL tables: what the
audit shows must come from the records, never from a copy that could drift.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from shared import ledger


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Ledger:
    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}
        self._envelope_events: dict[str, tuple[datetime, str, str, dict[str, Any]]] = {}

    @staticmethod
    def concerns(event: dict[str, Any]) -> bool:
        """Whether `record` keeps anything of this event; a malformed one too, so that it fails
        there (a record of funding's that the ledger cannot read stops the replay)."""
        try:
            kind = event["type"].split(".")[2]
        except (KeyError, IndexError, AttributeError, TypeError):
            return True
        return Ledger.keeps(kind)

    @staticmethod
    def keeps(kind: str) -> bool:
        """Whether the ledger keeps anything of funding's events of this kind (their name)."""
        return kind in ledger.DECISIONS or kind.startswith("Envelope")

    def record(self, value: bytes) -> None:
        """A verified record of `funding.events` (a CloudEvent, as read); one the ledger keeps nothing
        of, or a re-published one, changes nothing."""
        event = orjson.loads(value)
        if not Ledger.concerns(event):
            return
        kind, subject, version = event["type"].split(".")[2], event["subject"], event["aggregateversion"]
        found = ledger.entry(kind, subject, version, event["data"], event.get("actor"), event["time"],
                             event.get("codeversion"))
        if found is not None:
            self.entries.setdefault(found["id"], found)
        key = f"{subject}/{version}"
        if kind.startswith("Envelope") and key not in self._envelope_events:
            self._envelope_events[key] = (_moment(event["time"]), kind, subject, event["data"])

    def as_of(self, moment: datetime | None = None) -> dict[str, Any]:
        """The decisions and the envelopes' totals as they stood at `moment` (now: None)."""
        decisions = sorted((e for e in self.entries.values() if moment is None or _moment(e["decided_at"]) <= moment),
                           key=lambda e: (_moment(e["decided_at"]), e["id"]))
        totals: dict[str, dict[str, Any]] = {}
        for at, kind, subject, data in sorted(self._envelope_events.values(), key=lambda e: e[0]):
            if moment is None or at <= moment:
                ledger.envelope_change(totals, kind, subject, data)
        return {"decisions": decisions, "envelopes": sorted(totals.values(), key=lambda e: e["id"])}


def compare(rebuilt: list[dict[str, Any]], kept: list[dict[str, Any]]) -> dict[str, Any]:
    """What differs between the ledger rebuilt from Kafka and the one funding keeps."""
    ours = {e["id"]: e for e in rebuilt}
    theirs = {e["id"]: e for e in kept}
    differing = []
    for key in sorted(ours.keys() & theirs.keys()):
        fields = [c for c in ledger.COLUMNS if _same(ours[key].get(c), theirs[key].get(c)) is False]
        if fields:
            differing.append({"id": key, "fields": {f: {"kafka": ours[key].get(f), "funding": theirs[key].get(f)}
                                                    for f in fields}})
    return {
        "matches": not differing and ours.keys() == theirs.keys(),
        "only_on_kafka": sorted(ours.keys() - theirs.keys()),
        "only_in_funding": sorted(theirs.keys() - ours.keys()),
        "differing": differing,
    }


TOTALS = ("allocated_cents", "reserved_cents", "disbursed_cents", "available_cents")


def compare_envelopes(rebuilt: list[dict[str, Any]], kept: list[dict[str, Any]]) -> dict[str, Any]:
    """What differs between the envelopes' totals rebuilt from Kafka and those funding keeps."""
    ours = {e["id"]: e for e in rebuilt}
    theirs = {str(e["id"]): e for e in kept}
    differing = []
    for key in sorted(ours.keys() & theirs.keys()):
        totals = {t: {"kafka": ours[key][t], "funding": theirs[key].get(t)}
                  for t in TOTALS if ours[key][t] != theirs[key].get(t)}
        if totals:
            differing.append({"id": key, "totals": totals})
    return {
        "matches": not differing and ours.keys() == theirs.keys(),
        "only_on_kafka": sorted(ours.keys() - theirs.keys()),
        "only_in_funding": sorted(theirs.keys() - ours.keys()),
        "differing": differing,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str) and a[:4].isdigit() and "T" in a and "T" in b:
        try:
            return _moment(a) == _moment(b)  # the same moment, however it is written
        except ValueError:
            pass
    return a == b
