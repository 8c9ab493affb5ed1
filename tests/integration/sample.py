"""A small service for the kernel's tests: tallies, and a consumer that counts upstream events."""

from __future__ import annotations

from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from shared.envelope import CloudEvent
from shared.store import ServiceApplication


class Tally(Aggregate):
    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"tally/{name}")

    @event("TallyOpened")
    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.seen: list[str] = []

    @event("TallyIncremented")
    def increment(self, by: int, cause: str = "") -> None:
        self.count += by
        self.seen.append(cause)


class SampleApplication(ServiceApplication):
    name = "sample"

    def open(self, name: str) -> UUID:
        tally = Tally(name)
        self.save(tally)
        return tally.id

    def increment(self, tally_id: UUID, by: int = 1, cause: str = "") -> None:
        tally = self.repository.get(tally_id)
        tally.increment(by, cause)
        self.save(tally)

    def count_upstream(self, name: str, cause: str) -> None:
        """One save: opens the tally if needed and increments it (a consumer's effect)."""
        try:
            tally = self.repository.get(Tally.create_id(name))
        except AggregateNotFoundError:
            tally = Tally(name)
        tally.increment(1, cause)
        self.save(tally)

    def tally(self, name: str) -> Tally | None:
        try:
            return self.repository.get(Tally.create_id(name))
        except AggregateNotFoundError:
            return None


def upstream_handler(app: SampleApplication, poison: set[str] | None = None):
    """Counts every upstream event in a tally named after its subject; subjects in `poison` fail."""
    poison = poison if poison is not None else set()

    def handle(event: CloudEvent) -> None:
        if event.subject in poison:
            raise ValueError(f"cannot process {event.subject}")
        app.count_upstream(event.subject, event.id)

    return handle
