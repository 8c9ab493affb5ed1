"""What an auditor checks of each service's log, from Kafka alone (docs/operations.md, the audit).

A service's log is the sequence of its events, `sequence` 0, 1, 2, ... The relay
publishes each once (again after a crash: the same bytes), with its leaf hash, and
signs checkpoints of the tree. From the records alone the auditor rebuilds every
tree and names what is wrong:

- `modified`: a record whose leafhash is not the hash of its own content, the
  same event (same CloudEvent id) republished with other content, or a record
  that is no event of the log at all (no place: named where it is);
- `inserted`: an event never seen before takes a place already taken;
- `moved`: an event seen at one place shows up at another (an event before it was
  deleted or inserted, or two were swapped);
- `missing`: a checkpoint covers a place no record fills (a dropped record);
- `checkpoint mismatch`: a signed checkpoint whose root is not the tree of the
  records: the service signed another history than the one on Kafka;
- `fork`: two signed checkpoints of the same size with two roots: the log showed
  two histories;
- `bad signature`: a checkpoint not signed by the service's key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.merkle import MerkleLog


# A record of a service's topic as the replay reads it (`ServiceLog.record_events`): when it was
# written and where it is (the order records are taken in), what it claims and whether its leaf
# hash is the hash of its content, and what the ledger may take of it (funding's; else None).
RECORD = ("timestamp", "partition", "offset", "sequence", "leaf", "event_id", "matches", "for_the_ledger")


@dataclass(frozen=True)
class Problem:
    service: str
    kind: str
    sequence: int | None
    detail: str


@dataclass(frozen=True)
class Checkpoint:
    """A signed checkpoint as read from `audit.checkpoints` (signature already checked)."""

    size: int
    root: bytes
    where: str  # topic:partition:offset, to find the record again


@dataclass
class ServiceLog:
    """One service's log as the records show it."""

    service: str
    tree: MerkleLog = field(default_factory=MerkleLog)
    # Records beyond the contiguous prefix, waiting for the places before them.
    ahead: dict[int, bytes] = field(default_factory=dict)
    # Where each event (CloudEvent id) was first seen, to tell a moved event from a new one.
    places: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    pending: list[Checkpoint] = field(default_factory=list)
    verified: Checkpoint | None = None
    checkpoints_seen: int = 0
    events_seen: int = 0
    _signed: dict[int, tuple[bytes, str]] = field(default_factory=dict)  # size -> (root, where) of signed checkpoints
    _reported: set[tuple[str, int | None, str]] = field(default_factory=set)
    # A copy's `waiting`, as the log checked elsewhere last said (`take`).
    waiting_elsewhere: dict[str, Any] | None = None

    @property
    def size(self) -> int:
        return self.tree.size

    def waiting(self) -> dict[str, Any] | None:
        """Records read beyond a place no record fills yet: the tree stops at that place (`at`),
        `records` wait, the last at `last`. Not a problem yet: across partitions a record may
        still be on its way (the relay retrying it); a signed checkpoint covering the place names
        it missing (`settle`). None when nothing waits."""
        if not self.ahead:
            return None
        return {"at": self.tree.size, "records": len(self.ahead), "last": max(self.ahead)}

    def problem(self, kind: str, sequence: int | None, detail: str) -> None:
        key = (kind, sequence, detail)
        if key not in self._reported:
            self._reported.add(key)
            self.problems.append(Problem(self.service, kind, sequence, detail))

    # --- events -------------------------------------------------------------------------

    def record_event(self, sequence: int, leaf: bytes, content_matches: bool, where: str,
                     event_id: str = "") -> None:
        """A record of the service's topic: its place, its claimed leaf hash, whether that hash
        is the hash of its content, and its CloudEvent id."""
        self.events_seen += 1
        if not content_matches:
            self.problem("modified", sequence, f"the leafhash of {where} is not the hash of its content")
            return
        if sequence < 0:
            self.problem("inserted", sequence, f"{where} claims a place before the log's start")
            return
        first = self.tree.leaf(sequence) if sequence < self.tree.size else self.ahead.get(sequence)
        if first is not None:
            if first != leaf:
                self._name_conflict(sequence, event_id, where)
            if event_id:
                self.places.setdefault(event_id, sequence)
            return
        self.ahead[sequence] = leaf
        if event_id:
            self.places.setdefault(event_id, sequence)
        while self.tree.size in self.ahead:
            self.tree.append(self.ahead.pop(self.tree.size))
        self._check_pending()

    def record_events(self, records: Iterable[tuple[Any, ...]], where: Callable[[tuple[Any, ...]], str]) -> None:
        """`record_event` for many records in the order they were written, each as the replay reads
        it (`RECORD`), `where(record)` naming it in a problem. A record that takes a free place (in
        an honest log, every one: records of one millisecond in different partitions come a little
        out of sequence) is kept as `record_event` keeps it, and the contiguous leaves are added to
        the tree together (MerkleLog.extend); a record whose place is taken goes through
        `record_event`."""
        tree, ahead, places = self.tree, self.ahead, self.places
        run: list[bytes] = []  # leaves after the tree's, in order, not added yet
        following = tree.size  # the place after them
        seen = 0
        for record in records:
            _, _, _, sequence, leaf, event_id, matches, _ = record
            seen += 1
            if sequence == following and matches and not ahead:  # the next in line: most records
                run.append(leaf)
                following += 1
                if event_id:
                    places.setdefault(event_id, sequence)
                continue
            if matches and sequence >= following and sequence not in ahead:
                if event_id:
                    places.setdefault(event_id, sequence)
                if sequence == following:
                    run.append(leaf)
                    following += 1
                    while following in ahead:
                        run.append(ahead.pop(following))
                        following += 1
                else:
                    ahead[sequence] = leaf
                continue
            if run:
                tree.extend(run)
                run = []
            seen -= 1  # record_event counts it
            self.record_event(sequence, leaf, matches, where(record), event_id)
            following = tree.size
        if run:
            tree.extend(run)
        self.events_seen += seen
        self._check_pending()

    def _name_conflict(self, sequence: int, event_id: str, where: str) -> None:
        """Another event at a place already taken: say what it most likely is."""
        seen_at = self.places.get(event_id)
        if seen_at == sequence:
            self.problem("modified", sequence, f"{where} is the event at {sequence} with other content")
        elif seen_at is not None:
            self.problem("moved", sequence, f"{where} is the event first seen at {seen_at}, now at {sequence}")
        else:
            self.problem("inserted", sequence, f"{where} is an event never seen before, at a place already taken")

    # --- a log checked elsewhere --------------------------------------------------------------

    def changes(self, mark: tuple[list[int], int] | None) -> tuple[dict[str, Any], tuple[list[int], int]]:
        """What the log learnt since `mark` (None: since its start), for a copy of it elsewhere
        (`take`), and the new mark. The replay's readers check the logs; the audit's
        application holds copies, to answer the auditor."""
        marks, problems = mark or ([], 0)
        size, nodes = self.tree.tail(marks)
        change = {"size": size, "nodes": nodes, "problems": self.problems[problems:],
                  "events_seen": self.events_seen, "checkpoints_seen": self.checkpoints_seen,
                  "verified": self.verified, "waiting": self.waiting()}
        return change, (self.tree.marks(), len(self.problems))

    def take(self, change: dict[str, Any]) -> None:
        """The changes of the same log checked elsewhere (`changes`, marked at this copy's state)."""
        self.tree.add_tail(change["size"], change["nodes"])
        for problem in change["problems"]:
            self.problem(problem.kind, problem.sequence, problem.detail)
        self.events_seen, self.checkpoints_seen = change["events_seen"], change["checkpoints_seen"]
        self.verified = change["verified"]
        self.waiting_elsewhere = change["waiting"]

    # --- checkpoints ----------------------------------------------------------------------

    def record_checkpoint(self, size: int, root: bytes, signed: bool, where: str) -> None:
        self.checkpoints_seen += 1
        if not signed:
            self.problem("bad signature", None, f"checkpoint {where} is not signed by {self.service}'s key")
            return
        earlier = self._signed.get(size)
        if earlier is not None and earlier[0] != root:
            self.problem("fork", size, f"checkpoints {earlier[1]} and {where} give two roots for {size} events")
        self._signed.setdefault(size, (root, where))
        checkpoint = Checkpoint(size, root, where)
        if size <= self.tree.size:
            self._check(checkpoint)
        else:
            self.pending.append(checkpoint)
            self.pending.sort(key=lambda c: c.size)

    def _check_pending(self) -> None:
        while self.pending and self.pending[0].size <= self.tree.size:
            self._check(self.pending.pop(0))

    def _check(self, checkpoint: Checkpoint) -> None:
        if self.tree.root(checkpoint.size) != checkpoint.root:
            self.problem("checkpoint mismatch", checkpoint.size,
                         f"checkpoint {checkpoint.where} signs a tree of {checkpoint.size} events that is not the "
                         f"tree of the records")
            return
        if self.verified is None or checkpoint.size >= self.verified.size:
            self.verified = checkpoint

    def settle(self) -> None:
        """Once the replay has caught up with every topic: what is still waiting is missing."""
        for checkpoint in self.pending:
            gaps = [s for s in range(self.tree.size, checkpoint.size) if s not in self.ahead]
            shown = ", ".join(map(str, gaps[:10])) + (" ..." if len(gaps) > 10 else "")
            self.problem("missing", gaps[0] if gaps else None,
                         f"checkpoint {checkpoint.where} covers {checkpoint.size} events; no record at {shown}")
