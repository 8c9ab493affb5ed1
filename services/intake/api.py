"""Intake's HTTP API: dossiers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, EmailStr, Field, StrictInt, field_validator
from sqlalchemy import or_, select

from services.intake.application import IntakeApplication
from services.intake.domain import (
    ClosureReason,
    Conclusion,
    ConsentPurpose,
    DuplicateKind,
    ForgetReason,
    Project,
)
from services.intake.projections import dossiers
from shared.api import Strict
from shared.auth import Principal, Role, requires
from shared.domain import InvalidValue
from shared.geography import COUNTRY_PATTERN, FRENCH_REGIONS
from shared.http import command_router
from shared.partner_scope import DossierPartners, PartnerKind, partner_listing, partner_scoped, timeline_for
from shared.projections import after_cursor, cursor_of

FrenchRegion = Literal[FRENCH_REGIONS]  # type: ignore[valid-type]
Cents = Annotated[StrictInt, Field(ge=0, le=10**11)]
READERS = (Role.intake_officer, Role.funding_officer, Role.funding_approver, Role.followup_officer,
           Role.auditor, Role.partner)


class Promoter(Strict):
    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    birth_date: date
    phone: str = Field(min_length=3, max_length=30, pattern=r"^\+?[0-9 ().-]{3,30}$")
    email: EmailStr | None = None
    residence_status: Literal["regular", "irregular", "asylum_seeker", "returned"]
    document_number: str | None = Field(None, min_length=1, max_length=40, pattern=r"^[0-9A-Za-z .-]+$",
                                        description="an identity document's number, when given: "
                                                    "it helps find possible duplicates")

    @field_validator("birth_date")
    @classmethod
    def plausible(cls, value: date) -> date:
        if not date(1900, 1, 1) <= value <= date.today():
            raise ValueError("birth_date must be between 1900-01-01 and today")
        return value


class SubmitProject(Strict):
    promoter: Promoter
    country: str = Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2 country of origin")
    french_region: FrenchRegion = Field(description="ISO 3166-2:FR region where the promoter lives")  # type: ignore[valid-type]
    sector: str = Field(min_length=1, max_length=60)
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    requested_amount_cents: Cents
    own_contribution_cents: Cents
    planned_jobs: Annotated[StrictInt, Field(ge=0, le=10_000)]


class ProjectCreated(BaseModel):
    id: UUID
    reference: str
    status: str


class Consent(Strict):
    purposes: list[ConsentPurpose] = Field(min_length=1, max_length=10, description=(
        "what the data may be processed for: funding (the committee, the grants and their payment; "
        "needed to go to the committee), follow_up (the year of visits after launch), preparation "
        "(the skills review, trainings and business plan with the partners), statistics (the "
        "programme's aggregated reports)"))
    partners: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(default_factory=list, max_length=20)


class SkillsReview(Strict):
    summary: str = Field(min_length=1, max_length=5000)


class Training(Strict):
    course: str = Field(min_length=1, max_length=200)
    hours: Annotated[StrictInt, Field(ge=1, le=2000)]
    completed_on: date


class BudgetLine(Strict):
    label: str = Field(min_length=1, max_length=200)
    amount_cents: Cents


class BusinessPlan(Strict):
    budget_lines: list[BudgetLine] = Field(min_length=1, max_length=100)
    own_contribution_cents: Cents
    planned_jobs: Annotated[StrictInt, Field(ge=0, le=10_000)]


class StudyConclusion(Strict):
    conclusion: Conclusion
    summary: str = Field(default="", max_length=5000)


class Withdrawal(Strict):
    reason: str = Field(min_length=1, max_length=500)


class Closure(Strict):
    reason: ClosureReason


FORGET_REASONS = (
    "no_longer_necessary: GDPR art. 17(1)(a), the data is no longer necessary for its purposes; "
    "consent_withdrawn: art. 17(1)(b); objection: art. 17(1)(c); unlawfully_processed: art. 17(1)(d); "
    "legal_obligation: art. 17(1)(e); child_information_society: art. 17(1)(f); "
    "end_of_programme_request: the promoter asked, at the end of the programme; "
    "retention_period_elapsed: the programme's retention period is over; "
    "entered_in_error: the record should never have been made"
)


class Forgetting(Strict):
    reason: ForgetReason = Field(description=FORGET_REASONS)
    note: str | None = Field(None, min_length=1, max_length=2000,
                             description="the officer's note (the request's reference...): stored sealed, "
                                         "never in clear, and kept when the person's data goes")


class DuplicateReview(BaseModel):
    person_id: UUID = Field(description="the other person record whose identifiers matched")
    project_ids: list[str] = Field(description="its dossiers when the flag was raised")
    matched: list[DuplicateKind] = Field(description="which identifiers matched (their keyed hashes)")
    status: Literal["flagged", "confirmed", "dismissed", "undone"]


class ProjectState(BaseModel):
    id: UUID
    status: str
    version: int


class ProjectDetail(BaseModel):
    id: UUID
    reference: str
    status: str
    version: int
    person_id: UUID
    promoter: dict[str, Any] | None = Field(None, description="in clear, for intake officers only; null once forgotten")
    country: str
    french_region: str
    sector: str
    title: str
    description: str
    requested_amount_cents: int
    own_contribution_cents: int
    planned_jobs: int
    support_structure_id: str | None
    local_operator_id: str | None
    eligibility: dict[str, Any] | None
    possible_duplicates: list[str]
    duplicate_reviews: list[DuplicateReview] = Field(
        default_factory=list, description="possible duplicates an intake officer settles (confirm, dismiss, undo)")
    consent: dict[str, list[str]]
    skills_review: str | None
    trainings: list[dict[str, Any]]
    business_plan: dict[str, Any] | None
    feasibility_conclusion: str | None
    feasibility_grant: dict[str, Any] | None = Field(None, description="funding's answer: awarded (amount, payee) "
                                                                         "or rejected (reasons)")
    financing: dict[str, Any] | None = Field(None, description="funding's decision: approved, deferred or rejected")
    closure_reason: str | None
    timeline: list[dict[str, Any]]


class ProjectSummary(BaseModel):
    id: UUID
    reference: str
    status: str
    country: str
    french_region: str
    sector: str
    title: str
    requested_amount_cents: int
    support_structure_id: str | None
    local_operator_id: str | None
    feasibility_grant: str | None = None
    financed_amount_cents: int | None = None
    submitted_at: datetime


class ProjectPage(BaseModel):
    items: list[ProjectSummary]
    next_cursor: str | None


# What a partner reads of its dossiers: the fields the partner feed shares, nothing else (no person,
# no promoter, no title nor description, no officers, no summaries written for the officers).
class ProjectSummaryForPartner(BaseModel):
    id: UUID
    status: str
    country: str
    french_region: str
    sector: str
    requested_amount_cents: int
    support_structure_id: str | None
    local_operator_id: str | None


class ProjectPageForPartner(BaseModel):
    items: list[ProjectSummaryForPartner]
    next_cursor: str | None


class ProjectForPartner(BaseModel):
    id: UUID
    status: str
    version: int
    country: str
    french_region: str
    sector: str
    requested_amount_cents: int
    own_contribution_cents: int
    planned_jobs: int
    support_structure_id: str | None
    local_operator_id: str | None
    eligible: bool | None
    skills_review_done: bool | None = Field(description="for the support structure (null for the local operator)")
    trainings: list[dict[str, Any]] = Field(description="course, hours, completed_on: for the support structure")
    feasibility_conclusion: str | None
    feasibility_grant_amount_cents: int | None
    financing_decision: str | None
    timeline: list[dict[str, Any]] = Field(description="type, version and time of each event (not who)")


async def intake(request: Request) -> IntakeApplication:
    return request.app.state.runtime.app


App = Annotated[IntakeApplication, Depends(intake)]


def _state(project: Project) -> ProjectState:
    return ProjectState(id=project.id, status=project.status, version=project.version)


def _partners(app: IntakeApplication, project_id: UUID) -> DossierPartners | None:
    project = app.find(Project, project_id)
    return None if project is None else DossierPartners(project.support_structure_id, project.local_operator_id)


# A partner reaches only the dossiers assigned to it, and acts by its kind (shared/partner_scope.py).
Reachable = Depends(partner_scoped(_partners))
SupportStructureAct = Depends(partner_scoped(_partners, kind=PartnerKind.support_structure))
LocalOperatorAct = Depends(partner_scoped(_partners, kind=PartnerKind.local_operator))


commands = command_router(prefix="/v1", tags=["dossiers"])
queries = APIRouter(prefix="/v1", tags=["dossiers"])


@commands.post("/projects", status_code=201, response_model=ProjectCreated)
def submit_project(body: SubmitProject, app: App, response: Response,
                   _: Annotated[Principal, Depends(requires(Role.intake_officer))]) -> ProjectCreated:
    """Take in a dossier; it is screened for eligibility at once."""
    if body.country not in app.rules.countries:
        raise InvalidValue("country", f"{body.country} is not a country of the programme")
    project = app.submit_project(
        promoter=body.promoter.model_dump(mode="json"), **body.model_dump(exclude={"promoter"}),
    )
    response.headers["Location"] = f"/v1/projects/{project.id}"
    return ProjectCreated(id=project.id, reference=project.reference, status=project.status)


@queries.get("/projects", response_model=ProjectPage | ProjectPageForPartner)
def list_projects(request: Request, who: Annotated[Principal, Depends(requires(*READERS))],
                  own: Annotated[str | None, Depends(partner_listing())], status: str | None = None,
                  country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None,
                  partner_id: str | None = None, cursor: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> ProjectPage | ProjectPageForPartner:
    """Dossiers, newest last, filtered; follow `next_cursor` for the next page (a partner: its own dossiers,
    `ProjectPageForPartner`)."""
    query = select(dossiers).order_by(dossiers.c.submitted_at, dossiers.c.id).limit(limit + 1)
    if status:
        query = query.where(dossiers.c.status == status)
    if country:
        query = query.where(dossiers.c.country == country)
    if own is not None:
        partner_id = own
    if partner_id:
        query = query.where(or_(dossiers.c.support_structure_id == partner_id,
                                dossiers.c.local_operator_id == partner_id))
    query = after_cursor(query, cursor, dossiers.c.submitted_at, dossiers.c.id)
    with request.app.state.runtime.projector.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    next_cursor = cursor_of(rows[limit - 1]["submitted_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    if own is not None:
        return ProjectPageForPartner(items=[ProjectSummaryForPartner(**row) for row in rows[:limit]],
                                     next_cursor=next_cursor)
    return ProjectPage(items=[ProjectSummary(**row) for row in rows[:limit]], next_cursor=next_cursor)


@queries.get("/projects/{project_id}", response_model=ProjectDetail | ProjectForPartner, dependencies=[Reachable])
def get_project(project_id: UUID, app: App, who: Annotated[Principal, Depends(requires(*READERS))]
                ) -> ProjectDetail | ProjectForPartner:
    """A dossier as it is now, with the timeline of its events (a partner: `ProjectForPartner`, its own dossiers)."""
    project, timeline = app.load_with_timeline(Project, project_id, "dossier")
    if who.partner_scope is not None:
        return _for_partner(project, timeline, who)
    return ProjectDetail(
        id=project.id, reference=project.reference, status=project.status, version=project.version,
        person_id=project.person_id,
        promoter=app.promoter(project) if who.has(Role.intake_officer) else None,
        country=project.country, french_region=project.french_region, sector=project.sector,
        title=project.title, description=project.description,
        requested_amount_cents=project.requested_amount_cents,
        own_contribution_cents=project.own_contribution_cents, planned_jobs=project.planned_jobs,
        support_structure_id=project.support_structure_id, local_operator_id=project.local_operator_id,
        eligibility=project.eligibility, possible_duplicates=project.possible_duplicates,
        duplicate_reviews=list(project.duplicate_reviews.values()) if who.partner_scope is None else [],
        consent=project.consent,
        skills_review=project.skills_review, trainings=project.trainings, business_plan=project.business_plan,
        feasibility_conclusion=project.feasibility_conclusion, feasibility_grant=project.feasibility_grant,
        financing=project.financing, closure_reason=project.closure_reason, timeline=timeline,
    )


def _for_partner(project: Project, timeline: list[dict[str, Any]], who: Principal) -> ProjectForPartner:
    grant, financing = project.feasibility_grant or {}, project.financing or {}
    # The preparation is the support structure's work: the local operator is not told of it (as on its feed).
    preparing = who.partner_scope == project.support_structure_id
    return ProjectForPartner(
        id=project.id, status=project.status, version=project.version, country=project.country,
        french_region=project.french_region, sector=project.sector,
        requested_amount_cents=project.requested_amount_cents,
        own_contribution_cents=project.own_contribution_cents, planned_jobs=project.planned_jobs,
        support_structure_id=project.support_structure_id, local_operator_id=project.local_operator_id,
        eligible=project.eligibility["eligible"] if project.eligibility else None,
        skills_review_done=project.skills_review is not None if preparing else None,
        trainings=[{k: t.get(k) for k in ("course", "hours", "completed_on")} for t in project.trainings]
        if preparing else [],
        feasibility_conclusion=project.feasibility_conclusion,
        feasibility_grant_amount_cents=grant.get("amount_cents") if grant.get("outcome") == "awarded" else None,
        financing_decision=financing.get("decision"),
        timeline=timeline_for(who, timeline),
    )


class ScreeningRules(BaseModel):
    version: str
    countries: list[str]
    ceilings_cents: dict[str, int]
    default_ceiling_cents: int
    min_planned_jobs: int


@queries.get("/rules", response_model=ScreeningRules)
def screening_rules(app: App, _: Annotated[Principal, Depends(requires(*READERS))]) -> ScreeningRules:
    """The rules a dossier submitted now is screened with: the last version funding published, else the default."""
    rules = app.rules
    return ScreeningRules(version=rules.version, countries=sorted(rules.countries),
                          ceilings_cents=rules.ceilings_cents, default_ceiling_cents=rules.default_ceiling_cents,
                          min_planned_jobs=rules.min_planned_jobs)


Officer = Annotated[Principal, Depends(requires(Role.intake_officer))]
OfficerOrPartner = Annotated[Principal, Depends(requires(Role.intake_officer, Role.partner))]


@commands.post("/projects/{project_id}/consent", response_model=ProjectState)
def record_consent(project_id: UUID, body: Consent, app: App, _: Officer) -> ProjectState:
    """The promoter's consent to processing (purposes) and to sharing with named partners."""
    return _state(app.record_consent(project_id, body.purposes, body.partners))


@commands.post("/projects/{project_id}/consent/withdrawal", response_model=ProjectState)
def withdraw_consent(project_id: UUID, body: Consent, app: App, _: Officer) -> ProjectState:
    return _state(app.withdraw_consent(project_id, body.purposes, body.partners))


@commands.post("/projects/{project_id}/skills-review", response_model=ProjectState, dependencies=[SupportStructureAct])
def complete_skills_review(project_id: UUID, body: SkillsReview, app: App, _: OfficerOrPartner) -> ProjectState:
    """The support structure's review of the promoter's skills (bilan de compétences)."""
    return _state(app.complete_skills_review(project_id, body.summary))


@commands.post("/projects/{project_id}/trainings", response_model=ProjectState, dependencies=[SupportStructureAct])
def record_training(project_id: UUID, body: Training, app: App, _: OfficerOrPartner) -> ProjectState:
    return _state(app.record_training(project_id, body.course, body.hours, body.completed_on.isoformat()))


@commands.post("/projects/{project_id}/business-plan", response_model=ProjectState, dependencies=[SupportStructureAct])
def record_business_plan(project_id: UUID, body: BusinessPlan, app: App, _: OfficerOrPartner) -> ProjectState:
    """The business plan with its budget lines, own contribution and planned jobs."""
    return _state(app.record_business_plan(project_id, [line.model_dump() for line in body.budget_lines],
                                           body.own_contribution_cents, body.planned_jobs))


@commands.post("/projects/{project_id}/feasibility-study", response_model=ProjectState)
def request_feasibility_study(project_id: UUID, app: App, _: Officer) -> ProjectState:
    """Ask the local operator for the feasibility study (funding awards its grant)."""
    return _state(app.request_feasibility_study(project_id))


@commands.post("/projects/{project_id}/feasibility-study/conclusion", response_model=ProjectState,
               dependencies=[LocalOperatorAct])
def complete_feasibility_study(project_id: UUID, body: StudyConclusion, app: App, _: OfficerOrPartner) -> ProjectState:
    """The local operator's conclusion: feasible or not."""
    return _state(app.complete_feasibility_study(project_id, body.conclusion, body.summary))


@commands.post("/projects/{project_id}/committee", response_model=ProjectState)
def send_to_committee(project_id: UUID, app: App, _: Officer) -> ProjectState:
    """Send the dossier to the funding committee."""
    return _state(app.send_to_committee(project_id))


@commands.post("/projects/{project_id}/withdraw", response_model=ProjectState)
def withdraw(project_id: UUID, body: Withdrawal, app: App, _: Officer) -> ProjectState:
    return _state(app.withdraw(project_id, body.reason))


@commands.post("/projects/{project_id}/close", response_model=ProjectState)
def close(project_id: UUID, body: Closure, app: App, _: Officer) -> ProjectState:
    return _state(app.close_project(project_id, body.reason))


# --- possible duplicates -----------------------------------------------------------------


@commands.post("/projects/{project_id}/duplicates/{person_id}/confirm", response_model=ProjectState)
def confirm_duplicate(project_id: UUID, person_id: UUID, app: App, _: Officer) -> ProjectState:
    """The dossier's promoter and the flagged person record are one person: the records merge.

    One person holds one aid: when the other record (or one merged with it) holds a dossier that
    counts as aid, this dossier, the later one, is closed with reason `duplicate_aid`.
    """
    return _state(app.confirm_duplicate(project_id, person_id))


@commands.post("/projects/{project_id}/duplicates/{person_id}/dismiss", response_model=ProjectState)
def dismiss_duplicate(project_id: UUID, person_id: UUID, app: App, _: Officer) -> ProjectState:
    """The dossier's promoter and the flagged person record are two people."""
    return _state(app.dismiss_duplicate(project_id, person_id))


@commands.post("/projects/{project_id}/duplicates/{person_id}/undo", response_model=ProjectState)
def undo_duplicate(project_id: UUID, person_id: UUID, app: App, _: Officer) -> ProjectState:
    """Take a confirmation back: the two person records are two again (a dossier it closed stays closed)."""
    return _state(app.undo_duplicate(project_id, person_id))


# --- persons: their identifiers, forgetting ------------------------------------------------

Admin = Annotated[Principal, Depends(requires(Role.admin))]


class Indexed(BaseModel):
    indexed: int = Field(description="how many person records had their identifiers hashed")


@commands.post("/persons/index", response_model=Indexed)
def index_earlier_persons(app: App, _: Admin) -> Indexed:
    """Hash the identifiers of person records taken in before duplicate detection (once, after the
    upgrade; again does nothing new), so that new dossiers are checked against them."""
    return Indexed(indexed=app.index_earlier_persons())


@commands.post("/persons/{person_id}/forget", status_code=204)
def forget_person(person_id: UUID, body: Forgetting, app: App, _: Admin) -> Response:
    """Erase a person's personal data everywhere (crypto-shredding): this record's and every record an officer
    confirmed to be the same person's; amounts and decisions stay.

    The reason is a code of a closed list, in the body (never in the URL, which logs keep).
    """
    app.forget_person(person_id, body.reason, body.note)
    return Response(status_code=204)


@commands.delete("/persons/{person_id}", status_code=204)
def forget_person_by_delete(person_id: UUID, body: Forgetting, app: App, _: Admin) -> Response:
    """The same as `POST /v1/persons/{person_id}/forget`, the body alike (a reason in a query string
    is refused: URLs end up in logs)."""
    app.forget_person(person_id, body.reason, body.note)
    return Response(status_code=204)


routers = [commands, queries]
