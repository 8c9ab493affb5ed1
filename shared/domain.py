"""What every service's domain shares. Pure: no I/O, no HTTP, no Kafka.

Aggregates are the eventsourcing library's `Aggregate`, their methods the
programme's verbs. A method that would break a rule raises `RuleViolated`
naming the rule; the HTTP edge turns it into a 409 problem.
"""

from __future__ import annotations


class DomainError(Exception):
    """Base of the errors a domain raises on purpose."""


class RuleViolated(DomainError):
    """A command would break a rule of the programme (illegal transition, cap, four-eyes...)."""

    def __init__(self, rule: str, detail: str):
        super().__init__(f"{rule}: {detail}")
        self.rule = rule
        self.detail = detail


class InvalidValue(DomainError):
    """A value is outside what the programme accepts (unknown country, negative amount...)."""

    def __init__(self, field: str, detail: str):
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class NotFound(DomainError):
    def __init__(self, what: str, id: object):
        super().__init__(f"{what} {id} not found")
        self.what = what
        self.id = id


def require(condition: bool, rule: str, detail: str) -> None:
    """Raise `RuleViolated(rule, detail)` unless `condition` holds."""
    if not condition:
        raise RuleViolated(rule, detail)


def same_human(actor: str, other: str) -> bool:
    """Whether two recorded actors are the same person (four eyes compares people).

    An actor is `user:<issuer>#<subject>`. Acts stored before the issuer was recorded say
    `user:<subject>`: such an actor is the same person as any `user:<issuer>#<subject>` with that
    subject, so that a proposal made before the change cannot be approved by its own author after it.
    """
    if actor == other:
        return True
    a, b = actor.removeprefix("user:"), other.removeprefix("user:")
    if a == actor or b == other:  # a service or an old partner actor: compared whole, above
        return False
    if ("#" in a) == ("#" in b):
        return False
    return a.partition("#")[2] == b if "#" in a else b.partition("#")[2] == a
