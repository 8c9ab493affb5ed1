"""Followup's application: commands and queries on follow-ups, the overdue scheduler, the indicators.

The clock is injected (`today`): the overdue rules and the dates a command
accepts depend on the day, and the tests choose it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

import orjson
from eventsourcing.persistence import IntegrityError
from sqlalchemy import select

from services.followup import indicators
from services.followup.domain import FollowUp, Outcome, Stage, VisitReport, VisitRules
from services.followup.projections import facts, followups, planned_visits
from shared.conflicts import retry_on_conflict
from shared.domain import NotFound
from shared.projections import Projector
from shared.settings import Settings
from shared.store import CommandContext, ServiceApplication, acting, current_context
from shared.telemetry import traced

log = logging.getLogger(__name__)
T = TypeVar("T")


def utc_today() -> date:
    return datetime.now(timezone.utc).date()


class FollowupApplication(ServiceApplication):
    name = "followup"

    def __init__(self, settings: Settings, today: Callable[[], date] = utc_today):
        super().__init__(settings)
        self.today = today
        self.read_models: Projector | None = None

    def use_read_models(self, projector: Projector) -> None:
        """The projector the scheduler and the indicators read (wired by main.py)."""
        self.read_models = projector

    # --- what the other services tell (one save per upstream record) -----------------------

    def _file(self, project_id: UUID) -> FollowUp:
        return self.find(FollowUp, project_id) or FollowUp(project_id=project_id)

    def _note(self, project_id: UUID, verb: str, **kwargs: Any) -> None:
        followup = self._file(project_id)
        if getattr(followup, verb)(**kwargs):  # a new file always has something to note
            self.save(followup)

    def note_submission(self, project_id: UUID, country: str, submitted_at: str, own_contribution_cents: int,
                        planned_jobs: int) -> None:
        self._note(project_id, "note_submission", country=country, submitted_at=submitted_at,
                   own_contribution_cents=own_contribution_cents, planned_jobs=planned_jobs)

    def note_committee(self, project_id: UUID, sent_at: str, own_contribution_cents: int, planned_jobs: int) -> None:
        self._note(project_id, "note_committee", sent_at=sent_at, own_contribution_cents=own_contribution_cents,
                   planned_jobs=planned_jobs)

    def note_local_operator(self, project_id: UUID, local_operator_id: str, support_structure_id: str | None) -> None:
        self._note(project_id, "note_local_operator", local_operator_id=local_operator_id,
                   support_structure_id=support_structure_id)

    def note_financing(self, project_id: UUID, rule_version: str, amount_cents: int | None, approved_at: str) -> None:
        self._note(project_id, "note_financing", rule_version=rule_version, amount_cents=amount_cents,
                   approved_at=approved_at)

    def note_rules(self, version: str, countries: dict[str, Any]) -> None:
        rules = self.find(VisitRules, VisitRules.create_id()) or VisitRules()
        if rules.note(version, countries):
            self.save(rules)

    @traced("followup open")
    def funds_disbursed(self, project_id: UUID, tranche: int, paid_at: datetime) -> None:
        """Funding paid a tranche: the first one opens the follow-up, with the visit months of the
        dossier's rule version for its country."""
        if tranche != 1:
            return
        followup = self._file(project_id)
        rules = self.find(VisitRules, VisitRules.create_id()) or VisitRules()
        months, version = rules.visit_months(followup.rule_version, followup.country)
        if followup.open(first_tranche_at=paid_at.isoformat(), paid_on=paid_at.date(), visit_months=months,
                         rule_version=version):
            self.save(followup)

    # --- commands ------------------------------------------------------------------------

    def get_followup(self, project_id: UUID) -> FollowUp:
        found = self.find(FollowUp, project_id)
        if found is None or found.stage == Stage.awaiting_funds:
            raise NotFound("follow-up", project_id)
        return found

    def _decide(self, project_id: UUID, decide: Callable[[FollowUp], T]) -> tuple[FollowUp, T]:
        """A command on a follow-up: load it, decide, save what the decision recorded (nothing, when
        it recorded nothing). Visits from several devices, an officer, the scheduler and the
        consumers all write to one follow-up: when another save lands between this load and this
        save, load again and decide again on the new version (the next planned visit, the open
        alerts, a visit that is now a duplicate); a rule the new version breaks is refused then."""

        def attempt() -> tuple[FollowUp, T]:
            followup = self.get_followup(project_id)
            outcome = decide(followup)
            if followup.pending_events:
                self.save(followup)
            return followup, outcome

        return retry_on_conflict(attempt)

    def launch(self, project_id: UUID, launched_on: date, legal_form: str, registration: str, initial_jobs: int,
               own_contribution_cents: int | None) -> FollowUp:
        return self._decide(project_id, lambda followup: followup.launch_business(
            launched_on=launched_on, legal_form=legal_form, registration=registration, initial_jobs=initial_jobs,
            own_contribution_cents=own_contribution_cents, today=self.today()))[0]

    @traced("followup log_visit")
    def log_visit(self, project_id: UUID, visit_id: str, report: VisitReport) -> tuple[FollowUp, str]:
        """Returns the follow-up and "logged", "duplicate" (nothing written) or "conflict"."""
        return self._decide(project_id, lambda followup: followup.log_visit(visit_id, report, self.today()))

    def resolve_conflict(self, project_id: UUID, visit_id: str, keep: str) -> FollowUp:
        return self._decide(project_id, lambda followup: followup.resolve_conflict(visit_id, keep))[0]

    def complete(self, project_id: UUID, outcome: Outcome | str, completed_on: date) -> FollowUp:
        return self._decide(project_id, lambda followup: followup.complete(outcome, completed_on, self.today()))[0]

    def record_survey(self, project_id: UUID, report: VisitReport) -> FollowUp:
        return self._decide(project_id, lambda followup: followup.record_survey(report, self.today()))[0]

    # --- the overdue scheduler -------------------------------------------------------------

    @traced("followup flag_overdue_visits")
    def flag_overdue_visits(self) -> int:
        """FollowUpVisitOverdue for every visit whose due date has passed without a visit. How many.

        Driven by the due dates stored in the read model, which only say which dossiers to
        look at: each dossier's own events decide (flags already recorded are not repeated),
        and its save is guarded by optimistic concurrency, so two schedulers, a restart or a
        lagging read model never flag a visit twice, and a run after downtime misses none.
        """
        projector = self._read_models()
        try:
            projector.catch_up()
        except Exception:  # noqa: BLE001 - another process moved the read model meanwhile: it is only a hint
            log.info("the read models could not catch up before looking for overdue visits", exc_info=True)
        today = self.today()
        with projector.engine.connect() as conn:
            candidates = conn.execute(
                select(planned_visits.c.project_id).distinct()
                .where(planned_visits.c.done == 0, planned_visits.c.due_on < today,
                       (planned_visits.c.flagged_due_on.is_(None))
                       | (planned_visits.c.flagged_due_on != planned_visits.c.due_on))
                .order_by(planned_visits.c.project_id)
            ).scalars().all()
        flagged = 0
        for project_id in candidates:
            followup = self.find(FollowUp, UUID(project_id))
            if followup is None:
                continue
            count = followup.flag_overdue(today)
            if not count:
                continue
            try:
                with acting(self._scheduler_context(followup)):
                    self.save(followup)
            except IntegrityError:
                log.info("follow-up %s changed while flagging overdue visits; the next run looks again", project_id)
                continue
            flagged += count
        return flagged

    def _scheduler_context(self, followup: FollowUp) -> CommandContext:
        now = current_context()
        return CommandContext(actor=f"service:{self.name}", correlation_id=followup.project_id,
                              causation_id=f"schedule:overdue:{self.today().isoformat()}",
                              traceparent=now.traceparent)

    def _read_models(self) -> Projector:
        if self.read_models is None:
            raise RuntimeError("the followup application has no read models: call use_read_models()")
        return self.read_models

    # --- indicators ------------------------------------------------------------------------

    @traced("followup indicators")
    def indicators(self, country: str | None = None, year: int | None = None, partner_id: str | None = None,
                   as_of: datetime | None = None) -> dict[str, Any]:
        """The outcome indicators of the dossiers followed, filtered, as they stood at `as_of` (default: now).

        `year` is the cohort: the year the follow-up opened (the first tranche was paid).
        """
        engine = self._read_models().engine
        # In UTC: SQLite keeps the events' times without their offset (they are all UTC).
        moment = (as_of or datetime.now(timezone.utc)).astimezone(timezone.utc)
        query = select(facts.c.project_id, facts.c.kind, facts.c.data).where(facts.c.at <= moment)
        chosen = select(followups.c.project_id)
        if country:
            chosen = chosen.where(followups.c.country == country)
        if year:
            chosen = chosen.where(followups.c.opened_year == year)
        if partner_id:
            chosen = chosen.where(followups.c.local_operator_id == partner_id)
        if country or year or partner_id:
            query = query.where(facts.c.project_id.in_(chosen))
        histories: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        with engine.connect() as conn:
            for project_id, kind, data in conn.execute(query.order_by(facts.c.project_id, facts.c.version)):
                histories[project_id].append((kind, orjson.loads(data)))
        dossiers = [indicators.fold(events) for events in histories.values()]
        result = indicators.compute(dossiers, moment.date())
        return {"as_of": moment.isoformat(), "country": country, "year": year, "partner_id": partner_id, **result}
