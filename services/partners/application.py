"""Partners' application: the commands and queries on the operator network and on assignments.

Assignment decisions are taken one at a time (a lock), each after the read
models have caught up with the store (`Projector.catch_up`, synchronously, in
the deciding thread): every decision sees the caseloads all earlier ones left,
so the same history always gives the same partners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from sqlalchemy import and_, or_, select

from services.partners.domain import (
    Assignment,
    AssignmentStatus,
    Candidate,
    Choice,
    Partner,
    PartnerKind,
    choose_partners,
)
from services.partners.projections import Partners, as_list, assignments, partners
from shared.projections import Projector
from shared.settings import Settings
from shared.store import CommandContext, ServiceApplication, acting, current_context
from shared.telemetry import traced

log = logging.getLogger(__name__)


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


def candidate(row: Any) -> Candidate:
    """A partners_v1 row as the choice of partners sees it."""
    return Candidate(
        id=row["id"], name=row["name"], kind=PartnerKind(row["kind"]), region=row["region"],
        countries=as_list(row["countries"]), sectors=as_list(row["sectors"]), capacity=row["capacity"],
        caseload=row["caseload"], suspended=row["status"] == "suspended",
        accredited_from=row["accredited_from"], accredited_to=row["accredited_until"],
    )


class PartnersApplication(ServiceApplication):
    name = "partners"

    def __init__(self, settings: Settings, today: Callable[[], date] = utc_today):
        super().__init__(settings)
        self.today = today
        self.read_models: Projector | None = None
        # One assignment decision at a time in this process (consumer, periodic retry, commands).
        self._deciding = threading.RLock()

    def use_read_models(self, projector: Projector) -> None:
        """The projector whose caseloads the assignment decisions read (wired by main.py)."""
        self.read_models = projector

    # --- the network -----------------------------------------------------------------------

    @traced("partners register")
    def register(self, name: str, kind: PartnerKind | str, region: str | None, countries: list[str],
                 sectors: list[str], capacity: int) -> Partner:
        partner = Partner.register(name=name, kind=kind, region=region, countries=countries, sectors=sectors,
                                   capacity=capacity)
        self.save(partner)
        self._network_grew()
        return partner

    def _change(self, partner_id: UUID, verb: str, **kwargs: Any) -> Partner:
        partner = self.get_partner(partner_id)
        getattr(partner, verb)(**kwargs)
        self.save(partner)
        return partner

    def accredit(self, partner_id: UUID, agreement: str, valid_from: date, valid_to: date) -> Partner:
        partner = self._change(partner_id, "accredit", agreement=agreement, valid_from=valid_from, valid_to=valid_to)
        self._network_grew()  # a renewed agreement may make an expired partner available again
        return partner

    def change_coverage(self, partner_id: UUID, region: str | None, countries: list[str], sectors: list[str],
                        capacity: int) -> Partner:
        partner = self._change(partner_id, "change_coverage", region=region, countries=countries, sectors=sectors,
                               capacity=capacity)
        self._network_grew()
        return partner

    def suspend(self, partner_id: UUID, reason: str) -> Partner:
        return self._change(partner_id, "suspend", reason=reason)

    def reinstate(self, partner_id: UUID) -> Partner:
        partner = self._change(partner_id, "reinstate")
        self._network_grew()
        return partner

    def enable_feed(self, partner_id: UUID) -> Partner:
        return self._change(partner_id, "enable_feed")

    def _network_grew(self) -> None:
        """Dossiers waiting for partners may be served now. Best effort: the periodic retry catches up."""
        try:
            self.assign_pending()
        except Exception:
            log.exception("assigning the pending dossiers after a change in the network failed")

    # --- assignments -----------------------------------------------------------------------

    @traced("partners assign")
    def assign(self, project_id: UUID, country: str, french_region: str, sector: str) -> Assignment:
        """An eligible dossier gets its partners, or waits for them. One save (called by the consumer)."""
        with self._deciding:
            existing = self._find_assignment(project_id)
            if existing is not None:
                return existing  # a dossier asks once: the first request stands
            assignment = Assignment.request(project_id=project_id, country=country, french_region=french_region,
                                            sector=sector)
            assignment.assign(self._choose(assignment))
            self.save(assignment)
            return assignment

    def assign_pending(self) -> int:
        """Try again every dossier waiting for partners, oldest first. Returns how many got them.

        Each dossier is its own save: this is never called while processing a consumer record.
        """
        engine = self._read_models().engine
        self._read_models().catch_up()
        with engine.connect() as conn:
            waiting = conn.execute(
                select(assignments.c.project_id)
                .where(assignments.c.status.in_((AssignmentStatus.requested, AssignmentStatus.pending)))
                .order_by(assignments.c.requested_at, assignments.c.project_id)
            ).scalars().all()
        assigned = 0
        for project_id in waiting:
            with self._deciding:
                assignment = self._find_assignment(UUID(project_id))
                if assignment is None or not assignment.open:
                    continue  # decided meanwhile
                if not assignment.assign(self._choose(assignment)):
                    continue
                try:
                    with acting(self._deciding_context(assignment)):
                        self.save(assignment)
                except IntegrityError:
                    log.info("assignment of %s was decided concurrently", project_id)
                    continue
                if assignment.status == AssignmentStatus.assigned:
                    assigned += 1
        return assigned

    def end_assignment(self, project_id: UUID, reason: str) -> Assignment | None:
        """The dossier was withdrawn or closed: free its partners. None when it never asked for any."""
        with self._deciding:
            assignment = self._find_assignment(project_id)
            if assignment is None or assignment.status == AssignmentStatus.ended:
                return assignment
            assignment.end(reason)
            self.save(assignment)
            return assignment

    def _choose(self, assignment: Assignment) -> Choice:
        projector = self._read_models()
        projector.catch_up(Partners.name)  # every assignment saved so far counts in the caseloads
        with projector.engine.connect() as conn:
            rows = conn.execute(select(partners).where(or_(
                and_(partners.c.kind == PartnerKind.support_structure,
                     partners.c.region == assignment.french_region),
                and_(partners.c.kind == PartnerKind.local_operator,
                     partners.c.countries.like(f'%"{assignment.country}"%')),
            ))).mappings().all()
        return choose_partners([candidate(r) for r in rows], country=assignment.country,
                               french_region=assignment.french_region, sector=assignment.sector,
                               today=self.today())

    def _deciding_context(self, assignment: Assignment) -> CommandContext:
        """A retry is the service's decision, in the dossier's flow, caused by whatever triggered it."""
        now = current_context()
        return CommandContext(actor=f"service:{self.name}", correlation_id=assignment.project_id,
                              causation_id=now.causation_id or "schedule:assign_pending",
                              traceparent=now.traceparent)

    def _read_models(self) -> Projector:
        if self.read_models is None:
            raise RuntimeError("the partners application has no read models: call use_read_models()")
        return self.read_models

    # --- queries ---------------------------------------------------------------------------

    def get_partner(self, partner_id: UUID) -> Partner:
        return self.load(Partner, partner_id, "partner")

    def get_assignment(self, project_id: UUID) -> Assignment:
        return self.load(Assignment, project_id, "assignment")

    def _find_assignment(self, project_id: UUID) -> Assignment | None:
        return self.find(Assignment, project_id)
