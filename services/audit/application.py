"""The audit's application: every service's log rebuilt from Kafka records, nothing else.

It has no store of its own and trusts only the records and the services' public
keys: on every start it replays every topic from offset 0 (consumers.py).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from services.audit.domain import Problem, ServiceLog
from services.audit.projections import Ledger, compare, compare_envelopes
from shared.checkpoint import Checkpoint, InvalidNote, open_note, origin, parse_verifier_key
from shared.domain import InvalidValue, NotFound
from shared.keys import verifier_path
from shared.topics import SERVICES

if TYPE_CHECKING:  # the replay's reader processes run this application too: they start faster without pydantic
    from shared.settings import Settings

log = logging.getLogger(__name__)


def trusted_keys(settings: Settings) -> dict[str, bytes]:
    """Key name (the checkpoint origin, `passerelle/<service>`) -> Ed25519 public key.

    `audit_verifier_keys` when set; for development, the public verifier files the services
    write under keys_dir (`<service>.verifier`). Never a private key: a service whose file is
    missing or unreadable is named in a warning, and its checkpoints have no trusted key.
    """
    if settings.audit_verifier_keys.strip():
        keys = [parse_verifier_key(k) for k in settings.audit_verifier_keys.replace(",", " ").split()]
        return dict(keys)
    found: dict[str, bytes] = {}
    for service in SERVICES:
        path = verifier_path(settings.keys_dir, service)
        try:
            name, key = parse_verifier_key(path.read_text())
        except FileNotFoundError:
            log.warning("no verifier key for %s: %s does not exist (run `python -m shared.cli keys`, or start "
                        "the service once); its checkpoints have no trusted key", service, path)
            continue
        except (OSError, ValueError) as exc:
            log.warning("no verifier key for %s: %s cannot be read (%s); its checkpoints have no trusted key",
                        service, path, exc)
            continue
        if name != origin(service):
            log.warning("no verifier key for %s: %s is the key of %s, not of %s", service, path, name,
                        origin(service))
            continue
        found[name] = key
    return found


class AuditApplication:
    def __init__(self, settings: Settings, keys: dict[str, bytes] | None = None, *, keeps_ledger: bool = True):
        self.settings = settings
        self.keys = trusted_keys(settings) if keys is None else keys
        # False in the replay's readers: the records for the ledger are handed on as read
        # (`changes`), and the application that takes them parses them and keeps the ledger.
        self.keeps_ledger = keeps_ledger
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything: a replay starts from offset 0."""
        with getattr(self, "_lock", threading.Lock()):
            self.logs: dict[str, ServiceLog] = {service: ServiceLog(service) for service in SERVICES}
            self.ledger = Ledger()
            self._for_the_ledger: list[bytes] = []  # not keeps_ledger: what `changes` hands on

    def _log(self, service: str) -> ServiceLog:
        log = self.logs.get(service)
        if log is None:
            log = self.logs[service] = ServiceLog(service)
        return log

    # --- what the records say -------------------------------------------------------------

    def record_read(self, service: str, records: list[tuple[Any, ...]], where: Callable[[Any], str]) -> None:
        """Records of a service's topic as the replay's readers read them (`domain.RECORD`), in the
        order they were written; `where(record)` names one in a problem."""
        with self._lock:
            self._log(service).record_events(records, where)
            for_the_ledger = [record[7] for record in records if record[7] is not None]
            if self.keeps_ledger:
                for value in for_the_ledger:
                    self.ledger.record(value)
            else:
                self._for_the_ledger += for_the_ledger

    def record_unreadable(self, service: str, where: str, why: str) -> None:
        """A record of a service's topic that is no event of a log at all."""
        with self._lock:
            self._log(service).problem("modified", None, f"{where} is not a CloudEvent of the log: {why}")

    def record_checkpoint(self, key: bytes | None, value: bytes, where: str) -> None:
        """A record of `audit.checkpoints`, keyed by the service whose log it signs."""
        service = (key or b"").decode(errors="replace")
        name = f"passerelle/{service}"
        public_key = self.keys.get(name)
        with self._lock:
            log = self._log(service)
            if public_key is None:
                log.problem("bad signature", None, f"checkpoint {where}: no trusted key for {name}")
                return
            try:
                checkpoint = Checkpoint.parse(open_note(value.decode(), name, public_key))
                if checkpoint.origin != name:
                    raise InvalidNote(f"origin {checkpoint.origin} under the key of {name}")
            except (InvalidNote, UnicodeDecodeError, ValueError) as exc:
                log.record_checkpoint(0, b"", False, f"{where} ({exc})")
                return
            log.record_checkpoint(checkpoint.size, checkpoint.root, True, where)

    def changes(self, marks: dict[str, Any]) -> dict[str, Any]:
        """What every log learnt since `marks` (updated in place; {} at the start) and the records
        for the ledger read since the last call: what the replay's readers hand to the audit's
        application (`take`)."""
        with self._lock:
            logs = {}
            for service, log in self.logs.items():
                change, marks[service] = log.changes(marks.get(service))
                if change["nodes"][0] or change["problems"] or change["events_seen"] or change["checkpoints_seen"]:
                    logs[service] = change
            for_the_ledger, self._for_the_ledger = self._for_the_ledger, []
            return {"logs": logs, "ledger": for_the_ledger}

    def take(self, changes: dict[str, Any]) -> None:
        """The changes of logs checked elsewhere (a reader's `changes`), and the verified records
        for the ledger, which this application keeps."""
        with self._lock:
            for service, change in changes["logs"].items():
                self._log(service).take(change)
            for value in changes["ledger"]:
                self.ledger.record(value)

    def settle(self) -> None:
        with self._lock:
            for log in self.logs.values():
                log.settle()

    # --- what the auditor asks --------------------------------------------------------------

    def verification(self) -> dict[str, Any]:
        with self._lock:
            services = {}
            for name, log in sorted(self.logs.items()):
                services[name] = {
                    "size": log.size,
                    "root": log.tree.root().hex(),
                    "events_seen": log.events_seen,
                    "checkpoints_seen": log.checkpoints_seen,
                    "verified_checkpoint": None if log.verified is None else {
                        "size": log.verified.size, "root": log.verified.root.hex(), "record": log.verified.where},
                    "unverified_events": log.size - (log.verified.size if log.verified else 0),
                    "waiting": log.waiting_elsewhere or log.waiting(),
                    "problems": [_problem(p) for p in log.problems],
                }
            return {"ok": not any(s["problems"] for s in services.values()), "services": services}

    def ledger_as_of(self, moment: datetime | None = None) -> dict[str, Any]:
        """Funding's decisions and the envelopes' totals rebuilt from Kafka, as they stood then."""
        if moment is not None and moment.tzinfo is None:
            raise InvalidValue("as_of", "give a time zone (e.g. 2026-03-01T12:00:00Z)")
        with self._lock:
            return {"as_of": moment.isoformat() if moment else None, **self.ledger.as_of(moment)}

    def compare_ledger(self, rebuilt: dict[str, Any], kept: list[dict[str, Any]],
                       kept_envelopes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """What differs between the ledger rebuilt (`ledger_as_of`) and funding's decisions, and
        its envelopes' totals when given (funding serves them as they stand now only)."""
        comparison = compare(rebuilt["decisions"], kept)
        if kept_envelopes is None:
            comparison["envelopes"] = None
        else:
            comparison["envelopes"] = compare_envelopes(rebuilt["envelopes"], kept_envelopes)
            comparison["matches"] = comparison["matches"] and comparison["envelopes"]["matches"]
        return comparison

    def problems(self) -> list[Problem]:
        with self._lock:
            return [p for log in self.logs.values() for p in log.problems]

    def inclusion_proof(self, service: str, sequence: int, size: int | None = None) -> dict[str, Any]:
        with self._lock:
            log = self._known(service)
            size = self._size(log, size)
            if not 0 <= sequence < size:
                raise InvalidValue("seq", f"the tree of {size} events has no event {sequence}")
            return {
                "service": service, "sequence": sequence, "tree_size": size,
                "leaf_hash": log.tree.leaf(sequence).hex(), "root": log.tree.root(size).hex(),
                "root_base64": base64.b64encode(log.tree.root(size)).decode(),
                "proof": [p.hex() for p in log.tree.inclusion_proof(sequence, size)],
            }

    def consistency_proof(self, service: str, first: int, second: int | None = None) -> dict[str, Any]:
        with self._lock:
            log = self._known(service)
            second = self._size(log, second)
            if not 0 < first <= second:
                raise InvalidValue("from", f"a consistency proof goes from 1..{second} events to {second}")
            return {
                "service": service, "from": first, "to": second,
                "from_root": log.tree.root(first).hex(), "to_root": log.tree.root(second).hex(),
                "proof": [p.hex() for p in log.tree.consistency_proof(first, second)],
            }

    def _known(self, service: str) -> ServiceLog:
        if service not in self.logs:
            raise NotFound("service", service)
        return self.logs[service]

    @staticmethod
    def _size(log: ServiceLog, size: int | None) -> int:
        """The tree size a proof is against: the last verified checkpoint's by default."""
        if size is None:
            if log.verified is None:
                raise InvalidValue("size", f"no verified checkpoint of {log.service} yet: give a size")
            return log.verified.size
        if not 0 < size <= log.size:
            raise InvalidValue("size", f"the log of {log.service} has {log.size} events")
        return size


def _problem(p: Problem) -> dict[str, Any]:
    return {"kind": p.kind, "sequence": p.sequence, "detail": p.detail}
