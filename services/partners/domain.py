"""Partners' domain: the operator network and the assignment of dossiers to it.

Pure: no I/O. Each public method is a verb of the programme; it checks the
rules, then triggers one event whose (private, decorated) method only changes
state, so replaying old events never re-checks rules that may have changed.

Choosing partners for a dossier is a pure function (`choose_partners`) of the
candidates as they are now (status, coverage, accreditation, caseload) and of
the day: the application feeds it from the read models, the aggregate records
its outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import InvalidValue, require
from shared.geography import FRENCH_REGIONS, is_country_code

MAX_NAME = 200
MAX_COUNTRIES = 60
MAX_SECTORS = 30
MAX_SECTOR = 60  # as long as a dossier's sector in intake
MAX_CAPACITY = 10_000
MAX_TEXT = 500


class PartnerKind(StrEnum):
    support_structure = "support_structure"  # structure d'accompagnement, in a French region
    local_operator = "local_operator"  # bureau d'étude, in countries of origin
    financial_partner = "financial_partner"  # a funder or bank: never assigned to dossiers


class PartnerStatus(StrEnum):
    active = "active"
    suspended = "suspended"


# The roles a dossier needs filled, named after the kinds that fill them.
ROLES = (PartnerKind.support_structure, PartnerKind.local_operator)


# --- values ---------------------------------------------------------------------------------


def _text(field_name: str, value: Any, max_length: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(field_name, "must not be empty")
    value = value.strip()
    if len(value) > max_length:
        raise InvalidValue(field_name, f"must be at most {max_length} characters")
    return value


def normalise_sector(sector: str) -> str:
    """Sectors compare without case nor extra spaces: "Trade " and "trade" are one sector."""
    return " ".join(sector.split()).casefold()


@dataclass(frozen=True)
class Coverage:
    """Where and in what a partner works, and how many dossiers it takes at once."""

    region: str | None
    countries: list[str]
    sectors: list[str]
    capacity: int

    @classmethod
    def checked(cls, kind: PartnerKind, region: str | None, countries: Iterable[str], sectors: Iterable[str],
                capacity: int) -> Coverage:
        """The coverage in its normal form (sorted, without duplicates), or InvalidValue."""
        countries, sectors = list(countries), list(sectors)
        if region is not None and region not in FRENCH_REGIONS:
            raise InvalidValue("region", f"{region!r} is not an ISO 3166-2:FR region code")
        bad = [c for c in countries if not is_country_code(c)]
        if bad:
            raise InvalidValue("countries", f"not ISO 3166-1 alpha-2 codes: {', '.join(map(str, bad))}")
        if len(set(countries)) > MAX_COUNTRIES:
            raise InvalidValue("countries", f"at most {MAX_COUNTRIES} countries")
        normal_sectors = sorted({normalise_sector(_text("sectors", s, MAX_SECTOR)) for s in sectors})
        if len(normal_sectors) > MAX_SECTORS:
            raise InvalidValue("sectors", f"at most {MAX_SECTORS} sectors")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
            raise InvalidValue("capacity", f"must be a whole number from 1 to {MAX_CAPACITY}")
        # Assignment looks support structures up by region and local operators by country:
        # each kind must say where it works, and only there.
        if kind == PartnerKind.support_structure:
            if region is None:
                raise InvalidValue("region", "a support structure works in a French region: give its code")
            if countries:
                raise InvalidValue("countries", "a support structure works in France: it covers no countries")
        elif kind == PartnerKind.local_operator:
            if not countries:
                raise InvalidValue("countries", "a local operator covers at least one country")
            if region is not None:
                raise InvalidValue("region", "a local operator works abroad: it has no French region")
        return cls(region=region, countries=sorted(set(countries)), sectors=normal_sectors, capacity=capacity)


# --- the partner ----------------------------------------------------------------------------


class Partner(Aggregate):
    """An organisation of the operator network: support structure, local operator or financial partner."""

    @classmethod
    def register(cls, name: str, kind: PartnerKind | str, region: str | None, countries: Iterable[str],
                 sectors: Iterable[str], capacity: int) -> Partner:
        name = _text("name", name, MAX_NAME)
        try:
            kind = PartnerKind(kind)
        except ValueError:
            raise InvalidValue("kind", f"one of {', '.join(PartnerKind)}") from None
        coverage = Coverage.checked(kind, region, countries, sectors, capacity)
        return cls(name=name, kind=kind.value, region=coverage.region, countries=coverage.countries,
                   sectors=coverage.sectors, capacity=coverage.capacity)

    @event("PartnerRegistered")
    def __init__(self, name: str, kind: str, region: str | None, countries: list[str], sectors: list[str],
                 capacity: int):
        self.name = name
        self.kind = PartnerKind(kind)
        self.region = region
        self.countries = list(countries)
        self.sectors = list(sectors)
        self.capacity = capacity
        self.status = PartnerStatus.active
        self.suspension_reason: str | None = None
        self.accreditation: dict[str, str] | None = None
        self.feed_enabled = False

    @property
    def coverage(self) -> Coverage:
        return Coverage(self.region, list(self.countries), list(self.sectors), self.capacity)

    # --- accreditation -------------------------------------------------------------------

    def accredit(self, agreement: str, valid_from: date, valid_to: date) -> None:
        """Record the partner's agreement with the programme (a renewal replaces the previous one)."""
        agreement = _text("agreement", agreement, MAX_NAME)
        if not isinstance(valid_from, date) or not isinstance(valid_to, date):
            raise InvalidValue("valid_from", "the validity is two dates")
        if valid_to < valid_from:
            raise InvalidValue("valid_to", "the agreement cannot end before it starts")
        accreditation = {"agreement": agreement, "valid_from": valid_from.isoformat(),
                         "valid_to": valid_to.isoformat()}
        require(accreditation != self.accreditation, "accreditation_changes",
                "the partner already holds this very accreditation")
        self._accredited(**accreditation)

    @event("PartnerAccredited")
    def _accredited(self, agreement: str, valid_from: str, valid_to: str) -> None:
        self.accreditation = {"agreement": agreement, "valid_from": valid_from, "valid_to": valid_to}

    # --- coverage --------------------------------------------------------------------------

    def change_coverage(self, region: str | None, countries: Iterable[str], sectors: Iterable[str],
                        capacity: int) -> None:
        """Replace where the partner works, its sectors and capacity. Dossiers already assigned stay."""
        coverage = Coverage.checked(self.kind, region, countries, sectors, capacity)
        require(coverage != self.coverage, "coverage_changes", "the partner already has this coverage")
        self._coverage_changed(region=coverage.region, countries=coverage.countries, sectors=coverage.sectors,
                               capacity=coverage.capacity)

    @event("PartnerCoverageChanged")
    def _coverage_changed(self, region: str | None, countries: list[str], sectors: list[str], capacity: int) -> None:
        self.region = region
        self.countries = list(countries)
        self.sectors = list(sectors)
        self.capacity = capacity

    # --- suspension ------------------------------------------------------------------------

    def suspend(self, reason: str) -> None:
        """Take no new dossiers (dossiers already assigned stay with the partner)."""
        reason = _text("reason", reason, MAX_TEXT)
        require(self.status == PartnerStatus.active, "suspend_active_partner", "the partner is already suspended")
        self._suspended(reason=reason)

    @event("PartnerSuspended")
    def _suspended(self, reason: str) -> None:
        self.status = PartnerStatus.suspended
        self.suspension_reason = reason

    def reinstate(self) -> None:
        require(self.status == PartnerStatus.suspended, "reinstate_suspended_partner", "the partner is not suspended")
        self._reinstated()

    @event("PartnerReinstated")
    def _reinstated(self) -> None:
        self.status = PartnerStatus.active
        self.suspension_reason = None

    # --- feed ------------------------------------------------------------------------------

    def enable_feed(self) -> None:
        """Publish the partner's own events (the dossiers it may see) on its own topic."""
        require(not self.feed_enabled, "feed_enabled_once", "the partner's feed is already enabled")
        require(self.status == PartnerStatus.active, "feed_for_active_partner",
                "a suspended partner gets no new feed")
        self._feed_enabled()

    @event("PartnerFeedEnabled")
    def _feed_enabled(self) -> None:
        self.feed_enabled = True


# --- choosing partners -------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A partner as the choice sees it: coverage, standing and how many dossiers it follows now."""

    id: str
    name: str
    kind: PartnerKind
    region: str | None
    countries: Sequence[str]
    sectors: Sequence[str]
    capacity: int
    caseload: int
    suspended: bool = False
    accredited_from: date | None = None
    accredited_to: date | None = None

    def available_on(self, today: date) -> bool:
        """Takes a new dossier today: not suspended, accreditation (if any) in force, room left."""
        if self.suspended or self.caseload >= self.capacity:
            return False
        if self.accredited_from is not None and today < self.accredited_from:
            return False
        if self.accredited_to is not None and today > self.accredited_to:
            return False
        return True

    def covers_sector(self, sector: str) -> bool:
        return normalise_sector(sector) in {normalise_sector(s) for s in self.sectors}


@dataclass(frozen=True)
class Choice:
    """The partners chosen for a dossier; a role without a partner is missing."""

    support_structure_id: str | None
    local_operator_id: str | None
    sector_matched: bool = False

    @property
    def missing(self) -> list[str]:
        found = {PartnerKind.support_structure: self.support_structure_id,
                 PartnerKind.local_operator: self.local_operator_id}
        return [role.value for role in ROLES if found[role] is None]

    @property
    def complete(self) -> bool:
        return not self.missing


def _least_loaded(candidates: Iterable[Candidate]) -> Candidate | None:
    # Deterministic: the same candidates always give the same partner, whatever their order.
    return min(candidates, key=lambda c: (c.caseload, c.name, c.id), default=None)


def choose_partners(candidates: Iterable[Candidate], *, country: str, french_region: str, sector: str,
                    today: date) -> Choice:
    """The support structure of the promoter's region and the local operator of the country.

    Among available partners, the least loaded of each kind; local operators working in
    the dossier's sector come before the others, however loaded.
    """
    available = [c for c in candidates if c.available_on(today)]
    structure = _least_loaded(
        c for c in available if c.kind == PartnerKind.support_structure and c.region == french_region
    )
    operators = [c for c in available if c.kind == PartnerKind.local_operator and country in c.countries]
    in_sector = [c for c in operators if c.covers_sector(sector)]
    operator = _least_loaded(in_sector) or _least_loaded(operators)
    return Choice(
        support_structure_id=structure.id if structure else None,
        local_operator_id=operator.id if operator else None,
        sector_matched=bool(operator and in_sector),
    )


# --- the assignment of a dossier ---------------------------------------------------------------


class AssignmentStatus(StrEnum):
    requested = "requested"  # only between the request and its first outcome, in the same save
    pending = "pending"
    assigned = "assigned"
    ended = "ended"


class Assignment(Aggregate):
    """Which partners follow a dossier. One per dossier: its id is the project's id."""

    @staticmethod
    def create_id(project_id: UUID) -> UUID:
        return project_id

    @classmethod
    def request(cls, project_id: UUID, country: str, french_region: str, sector: str) -> Assignment:
        """An eligible dossier asks for partners; `assign` records the outcome."""
        if not is_country_code(country):
            raise InvalidValue("country", f"{country!r} is not an ISO 3166-1 alpha-2 code")
        if french_region not in FRENCH_REGIONS:
            raise InvalidValue("french_region", f"{french_region!r} is not an ISO 3166-2:FR region code")
        sector = _text("sector", sector, MAX_SECTOR)
        return cls(project_id=project_id, country=country, french_region=french_region, sector=sector)

    # A dossier can be assigned at once or only later, so creation and outcome are two events:
    # the request records the facts the choice relied on, for auditors and for the retries.
    @event("AssignmentRequested")
    def __init__(self, project_id: UUID, country: str, french_region: str, sector: str):
        self.project_id = str(project_id)
        self.country = country
        self.french_region = french_region
        self.sector = sector
        self.status = AssignmentStatus.requested
        self.missing: list[str] = []
        self.support_structure_id: str | None = None
        self.local_operator_id: str | None = None
        self.sector_matched: bool | None = None
        self.end_reason: str | None = None

    @property
    def open(self) -> bool:
        return self.status in (AssignmentStatus.requested, AssignmentStatus.pending)

    def assign(self, choice: Choice) -> bool:
        """Record the partners chosen, or that the dossier waits for the missing ones.

        False when nothing changed (still waiting for the same roles): retries write nothing.
        """
        require(self.status != AssignmentStatus.assigned, "assign_once", "the dossier already has its partners")
        require(self.status != AssignmentStatus.ended, "assignment_is_open", "the dossier's assignment has ended")
        if choice.complete:
            self._partners_assigned(project_id=self.project_id, support_structure_id=choice.support_structure_id,
                                    local_operator_id=choice.local_operator_id, sector_matched=choice.sector_matched)
            return True
        if self.status == AssignmentStatus.pending and self.missing == choice.missing:
            return False
        self._pending(project_id=self.project_id, country=self.country, french_region=self.french_region,
                      sector=self.sector, missing=choice.missing)
        return True

    @event("AssignmentPending")
    def _pending(self, project_id: str, country: str, french_region: str, sector: str, missing: list[str]) -> None:
        self.status = AssignmentStatus.pending
        self.missing = list(missing)

    @event("PartnersAssigned")
    def _partners_assigned(self, project_id: str, support_structure_id: str, local_operator_id: str,
                           sector_matched: bool) -> None:
        self.status = AssignmentStatus.assigned
        self.missing = []
        self.support_structure_id = support_structure_id
        self.local_operator_id = local_operator_id
        self.sector_matched = sector_matched

    def end(self, reason: str) -> None:
        """The dossier is withdrawn or closed: its partners' capacity is free again."""
        reason = _text("reason", reason, MAX_NAME)
        require(self.status != AssignmentStatus.ended, "end_once", "the dossier's assignment has already ended")
        # The partners travel with the event, so the caseloads (and partner feeds) need no look-up.
        self._ended(project_id=self.project_id, reason=reason, support_structure_id=self.support_structure_id,
                    local_operator_id=self.local_operator_id)

    @event("AssignmentEnded")
    def _ended(self, project_id: str, reason: str, support_structure_id: str | None,
               local_operator_id: str | None) -> None:
        self.status = AssignmentStatus.ended
        self.missing = []
        self.end_reason = reason

    def involves(self, partner_id: str | None) -> bool:
        return partner_id is not None and partner_id in (self.support_structure_id, self.local_operator_id)

