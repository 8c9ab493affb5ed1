"""Followup's HTTP API: follow-ups, their visits, and the programme's indicators."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy import select

from services.followup.application import FollowupApplication
from services.followup.domain import MAX_JOBS, BusinessStatus, FollowUp, Outcome, RevenueBand, Stage, VisitReport
from services.followup.projections import followups
from shared.api import MOMENT, Moment, Strict
from shared.auth import Principal, Role, requires
from shared.domain import NotFound
from shared.geography import COUNTRY_PATTERN
from shared.http import command_router
from shared.partner_scope import DossierPartners, PartnerKind, partner_listing, partner_scoped, timeline_for
from shared.partner_share import shared_fields

Jobs = Annotated[StrictInt, Field(ge=0, le=MAX_JOBS)]
Text = Annotated[str, Field(max_length=5000)]
# Who records what happens in the field: the dossier's local operator, or a follow-up officer.
FIELD = (Role.followup_officer, Role.partner)
READERS = (Role.followup_officer, Role.intake_officer, Role.funding_officer, Role.funding_approver, Role.auditor,
           Role.partner)


class Launch(Strict):
    launched_on: date
    legal_form: str = Field(min_length=1, max_length=100, description="e.g. sole trader, GIE, SARL")
    registration: str = Field(min_length=1, max_length=100, description="trade register or tax number")
    initial_jobs: Jobs = 1
    own_contribution_cents: Annotated[StrictInt, Field(ge=0, le=10**10)] | None = Field(
        None, description="the promoter's own money actually put in at launch")


class JobsCount(Strict):
    paid: Jobs
    family: Jobs


class Visit(Strict):
    visit_id: str | None = Field(None, min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$",
                                 description="the id the device gave the visit (its idempotency key): sending "
                                             "the same visit again records it once. Absent: the service gives one")
    visited_on: date = Field(description="the day the visit happened (it may be sent days later)")
    business_status: BusinessStatus
    jobs: JobsCount
    revenue_band: RevenueBand
    observations: Text = ""
    recommendations: Text = ""

    def report(self) -> VisitReport:
        return VisitReport.checked(self.visited_on, self.business_status, self.jobs.paid, self.jobs.family,
                                   self.revenue_band, self.observations, self.recommendations)


class Survey(Strict):
    surveyed_on: date
    business_status: BusinessStatus
    jobs: JobsCount
    revenue_band: RevenueBand
    observations: Text = ""

    def report(self) -> VisitReport:
        return VisitReport.checked(self.surveyed_on, self.business_status, self.jobs.paid, self.jobs.family,
                                   self.revenue_band, self.observations)


class Resolution(Strict):
    keep: Literal["recorded", "received"] = Field(
        description="keep the version recorded first, or the last version received")


class Completion(Strict):
    outcome: Outcome
    completed_on: date


class FollowUpState(BaseModel):
    project_id: UUID
    stage: str
    version: int


class VisitAnswer(FollowUpState):
    visit_id: str
    result: Literal["logged", "duplicate", "conflict"]
    open_alert: dict[str, Any] | None


class PlannedVisit(BaseModel):
    number: int
    month: int
    due_on: date
    state: Literal["done", "overdue", "due", "planned"]


class FollowUpDetail(BaseModel):
    project_id: UUID
    stage: str
    country: str | None
    local_operator_id: str | None
    support_structure_id: str | None
    rule_version: str | None = Field(description="the version the financing was approved under")
    plan_rule_version: str | None = Field(description="the version the visit months come from ('default': the "
                                                      "historical 1, 3, 6, 9, 12)")
    opened_on: date | None
    launch: dict[str, Any] | None
    plan: list[PlannedVisit]
    visits: list[dict[str, Any]]
    conflicts: list[dict[str, Any]] = Field(description="visits received in another version, until an officer "
                                                        "resolves them")
    open_alert: dict[str, Any] | None
    alerts: list[dict[str, Any]]
    outcome: dict[str, Any] | None
    survey: dict[str, Any] | None
    version: int
    timeline: list[dict[str, Any]]


class FollowUpSummary(BaseModel):
    project_id: UUID
    stage: str
    country: str | None
    local_operator_id: str | None
    opened_on: date | None
    launched_on: date | None
    visits_done: int
    visits_overdue: int
    open_alert_id: str | None
    conflicts: int
    outcome: str | None


class FollowUpPage(BaseModel):
    items: list[FollowUpSummary]
    next_cursor: str | None


async def followup_app(request: Request) -> FollowupApplication:
    return request.app.state.runtime.app


App = Annotated[FollowupApplication, Depends(followup_app)]
Officer = Annotated[Principal, Depends(requires(Role.followup_officer))]
FieldWorker = Annotated[Principal, Depends(requires(*FIELD))]
Reader = Annotated[Principal, Depends(requires(*READERS))]


def _state(followup: FollowUp) -> FollowUpState:
    return FollowUpState(project_id=followup.id, stage=followup.stage, version=followup.version)


def _partners(app: FollowupApplication, project_id: UUID) -> DossierPartners | None:
    followup = app.find(FollowUp, project_id)
    if followup is None or followup.stage == Stage.awaiting_funds:
        return None
    return DossierPartners(followup.support_structure_id, followup.local_operator_id)


# The follow-up is the local operator's work: another partner's is 404, the support structure's 403.
LocalOperatorAct = Depends(partner_scoped(_partners, what="follow-up", kind=PartnerKind.local_operator))


commands = command_router(prefix="/v1", tags=["followup"])
queries = APIRouter(prefix="/v1", tags=["followup"])


@queries.get("/followups", response_model=FollowUpPage)
def list_followups(request: Request, _: Reader, own: Annotated[str | None, Depends(partner_listing())],
                   stage: Literal["awaiting_funds", "opened", "launched", "completed"] | None = None,
                   country: Annotated[str | None, Query(pattern=COUNTRY_PATTERN)] = None,
                   partner_id: UUID | None = None, alert_open: bool | None = None, cursor: UUID | None = None,
                   limit: Annotated[int, Query(ge=1, le=200)] = 50) -> FollowUpPage:
    """Follow-ups by dossier id, filtered; a partner sees those of its dossiers. `next_cursor` pages on."""
    query = select(followups).order_by(followups.c.project_id).limit(limit + 1)
    if stage:
        query = query.where(followups.c.stage == stage)
    if country:
        query = query.where(followups.c.country == country)
    involving = own or (str(partner_id) if partner_id else None)
    if involving:
        query = query.where(followups.c.local_operator_id == involving)
    if alert_open is not None:
        query = query.where(followups.c.open_alert_id.is_not(None) if alert_open
                            else followups.c.open_alert_id.is_(None))
    if cursor:
        query = query.where(followups.c.project_id > str(cursor))
    with request.app.state.runtime.projector.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    items = [FollowUpSummary(**{k: row[k] for k in FollowUpSummary.model_fields}) for row in rows[:limit]]
    return FollowUpPage(items=items, next_cursor=rows[limit - 1]["project_id"] if len(rows) > limit else None)


@queries.get("/followups/{project_id}", response_model=FollowUpDetail, dependencies=[LocalOperatorAct])
def get_followup(project_id: UUID, app: App, who: Reader) -> FollowUpDetail:
    """A dossier's follow-up: plan (each visit done, overdue, due or planned), visits, conflicts, alerts,
    outcome, and the timeline of its events. 404 until the first tranche is paid. The dossier's local
    operator reads what its partner feed shares: no free text, no conflicts, nobody's user id."""
    followup, timeline = app.load_with_timeline(FollowUp, project_id, "follow-up")
    if followup.stage == Stage.awaiting_funds:
        raise NotFound("follow-up", project_id)
    today = app.today().isoformat()
    done = {v["visit_number"] for v in followup.visits.values()}
    flagged = {(o["visit_number"], o["due_on"]) for o in followup.overdue}

    def state(p: dict[str, Any]) -> str:
        if p["number"] in done:
            return "done"
        if (p["number"], p["due_on"]) in flagged or p["due_on"] < today:
            return "overdue"
        return "due" if p["due_on"] == today else "planned"

    detail = FollowUpDetail(
        project_id=project_id, stage=followup.stage, country=followup.country,
        local_operator_id=followup.local_operator_id, support_structure_id=followup.support_structure_id,
        rule_version=followup.rule_version, plan_rule_version=followup.plan_rule_version,
        opened_on=followup.opened_on, launch=followup.launch,
        plan=[PlannedVisit(number=p["number"], month=p["month"], due_on=p["due_on"], state=state(p))
              for p in followup.visits_planned],
        visits=list(followup.visits.values()),
        conflicts=[{"visit_id": k, "recorded": {f: followup.visits[k][f] for f in v[0]}, "received": v}
                   for k, v in followup.conflicts.items()],
        open_alert=followup.open_alert, alerts=followup.alerts, outcome=followup.outcome, survey=followup.survey,
        version=followup.version, timeline=timeline_for(who, timeline),
    )
    return _as_partner_reads(detail) if who.partner_scope is not None else detail


def _shared(name: str, data: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if data is None else shared_fields(f"followup.{name}", data)


def _as_partner_reads(detail: FollowUpDetail) -> FollowUpDetail:
    """What the partner feed's allow-list lets a partner read of each part, as on Kafka: no free text
    (observations, recommendations), no trade register number, no alert's reason; no conflicts (the
    versions an officer settles are not shared)."""
    return detail.model_copy(update={
        "launch": _shared("BusinessLaunched", detail.launch),
        "visits": [_shared("FollowUpVisitLogged", v) for v in detail.visits],
        "conflicts": [],
        "open_alert": _shared("AlertRaised", detail.open_alert),
        # An alert is resolved by a visit: AlertResolved shares that visit's id.
        "alerts": [{**_shared("AlertRaised", a), "resolved_by_visit_id": a["resolved_by_visit_id"]}  # type: ignore[dict-item]
                   for a in detail.alerts],
        "outcome": _shared("FollowUpCompleted", detail.outcome),
        "survey": _shared("SurveyRecorded", detail.survey),
    })


@commands.post("/followups/{project_id}/launch", response_model=FollowUpState, dependencies=[LocalOperatorAct])
def launch(project_id: UUID, body: Launch, app: App, _: FieldWorker) -> FollowUpState:
    """The business is launched (by its local operator or a follow-up officer): the visits fall due from this date."""
    return _state(app.launch(project_id, body.launched_on, body.legal_form, body.registration, body.initial_jobs,
                             body.own_contribution_cents))


@commands.post("/followups/{project_id}/visits", response_model=VisitAnswer, status_code=201,
               dependencies=[LocalOperatorAct],
               responses={200: {"description": "the same visit was already recorded: nothing written"},
                          202: {"description": "another version of a recorded visit: the conflict is recorded "
                                              "until an officer resolves it"}})
def log_visit(project_id: UUID, body: Visit, app: App, who: FieldWorker, response: Response) -> VisitAnswer:
    """Log a follow-up visit, possibly days after it happened (offline devices send `visit_id`)."""
    visit_id = body.visit_id or f"service:{uuid4()}"
    followup, result = app.log_visit(project_id, visit_id, body.report())
    response.status_code = {"logged": 201, "duplicate": 200, "conflict": 202}[result]
    open_alert = followup.open_alert if who.partner_scope is None else _shared("AlertRaised", followup.open_alert)
    return VisitAnswer(project_id=followup.id, stage=followup.stage, version=followup.version,
                       visit_id=visit_id, result=result, open_alert=open_alert)  # type: ignore[arg-type]


@commands.post("/followups/{project_id}/visits/{visit_id}/resolution", response_model=FollowUpState)
def resolve_conflict(project_id: UUID, visit_id: str, body: Resolution, app: App, _: Officer) -> FollowUpState:
    """An officer settles a visit received in two versions."""
    return _state(app.resolve_conflict(project_id, visit_id, body.keep))


@commands.post("/followups/{project_id}/complete", response_model=FollowUpState)
def complete(project_id: UUID, body: Completion, app: App, _: Officer) -> FollowUpState:
    """End the follow-up before its plan does (the last planned visit ends it by itself)."""
    return _state(app.complete(project_id, body.outcome, body.completed_on))


@commands.post("/followups/{project_id}/survey", response_model=FollowUpState, status_code=201,
               dependencies=[LocalOperatorAct])
def record_survey(project_id: UUID, body: Survey, app: App, _: FieldWorker) -> FollowUpState:
    """The optional survey at month 24: is the business still running, with how many jobs?"""
    return _state(app.record_survey(project_id, body.report()))


@queries.get("/indicators")
def get_indicators(app: App, _: Reader, own: Annotated[str | None, Depends(partner_listing())],
                   country: Annotated[str | None, Query(pattern=COUNTRY_PATTERN)] = None,
                   year: Annotated[int | None, Query(ge=2000, le=2100)] = None, partner_id: UUID | None = None,
                   as_of: Annotated[Moment | None, Query(description=MOMENT)] = None) -> dict[str, Any]:
    """The programme's outcome indicators for the dossiers followed (cohort `year`: the year the follow-up
    opened), as they stood at `as_of` (RFC 3339 with its offset; default now). A partner gets its own."""
    partner = own or (str(partner_id) if partner_id else None)
    return app.indicators(country=country, year=year, partner_id=partner, as_of=as_of)


routers = [commands, queries]
