"""Partners' HTTP API: the operator network and the assignments of dossiers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt
from sqlalchemy import or_, select

from services.partners.application import PartnersApplication, candidate
from services.partners.domain import (
    MAX_CAPACITY,
    MAX_COUNTRIES,
    MAX_SECTOR,
    MAX_SECTORS,
    Assignment,
    Partner,
    PartnerKind,
)
from services.partners.projections import as_list, assignments, partners
from shared.api import Strict
from shared.auth import Principal, Role, requires
from shared.geography import COUNTRY_PATTERN, FRENCH_REGIONS
from shared.http import command_router
from shared.partner_scope import DossierPartners, partner_listing, partner_scoped, timeline_for
from shared.projections import after_cursor, cursor_of

FrenchRegion = Literal[FRENCH_REGIONS]  # type: ignore[valid-type]
Country = Annotated[str, Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2")]
Sector = Annotated[str, Field(min_length=1, max_length=MAX_SECTOR)]
Capacity = Annotated[StrictInt, Field(ge=1, le=MAX_CAPACITY, description="dossiers followed at once")]
READERS = (Role.intake_officer, Role.funding_officer, Role.funding_approver, Role.followup_officer,
           Role.auditor, Role.partner)


class CoverageBody(Strict):
    region: FrenchRegion | None = Field(  # type: ignore[valid-type]
        None, description="ISO 3166-2:FR region of a support structure")
    countries: list[Country] = Field(default_factory=list, max_length=MAX_COUNTRIES,
                                     description="countries a local operator covers")
    sectors: list[Sector] = Field(default_factory=list, max_length=MAX_SECTORS)
    capacity: Capacity


class RegisterPartner(CoverageBody):
    name: str = Field(min_length=1, max_length=200)
    kind: PartnerKind


class Accreditation(Strict):
    agreement: str = Field(min_length=1, max_length=200, description="reference of the agreement with the programme")
    valid_from: date
    valid_to: date


class Suspension(Strict):
    reason: str = Field(min_length=1, max_length=500)


class PartnerState(BaseModel):
    id: UUID
    name: str
    kind: str
    status: str
    feed_enabled: bool
    version: int


class AccreditationView(BaseModel):
    agreement: str
    valid_from: date
    valid_to: date


class PartnerDetail(BaseModel):
    id: UUID
    name: str
    kind: str
    region: str | None
    countries: list[str]
    sectors: list[str]
    capacity: int
    caseload: int
    available: bool = Field(description="takes a new dossier today: active, accreditation in force, room left")
    status: str
    suspension_reason: str | None
    accreditation: AccreditationView | None
    feed_enabled: bool
    version: int
    timeline: list[dict[str, Any]]


class PartnerSummary(BaseModel):
    id: UUID
    name: str
    kind: str
    region: str | None
    countries: list[str]
    sectors: list[str]
    capacity: int
    caseload: int
    status: str
    accredited_until: date | None
    feed_enabled: bool
    registered_at: datetime


class PartnerPage(BaseModel):
    items: list[PartnerSummary]
    next_cursor: str | None


class AssignmentDetail(BaseModel):
    project_id: UUID
    status: str
    country: str
    french_region: str
    sector: str
    support_structure_id: str | None
    local_operator_id: str | None
    sector_matched: bool | None
    missing: list[str]
    end_reason: str | None
    version: int
    timeline: list[dict[str, Any]]


class AssignmentSummary(BaseModel):
    project_id: UUID
    status: str
    country: str
    french_region: str
    sector: str
    support_structure_id: str | None
    local_operator_id: str | None
    missing: list[str]
    requested_at: datetime


class AssignmentPage(BaseModel):
    items: list[AssignmentSummary]
    next_cursor: str | None


class Caseload(BaseModel):
    partner_id: UUID
    name: str
    kind: str
    status: str
    capacity: int
    caseload: int
    free: int


async def partners_app(request: Request) -> PartnersApplication:
    return request.app.state.runtime.app


App = Annotated[PartnersApplication, Depends(partners_app)]
Officer = Annotated[Principal, Depends(requires(Role.intake_officer))]
Reader = Annotated[Principal, Depends(requires(*READERS))]


def _state(partner: Partner) -> PartnerState:
    return PartnerState(id=partner.id, name=partner.name, kind=partner.kind, status=partner.status,
                        feed_enabled=partner.feed_enabled, version=partner.version)


def _engine(request: Request) -> Any:
    return request.app.state.runtime.projector.engine


commands = command_router(prefix="/v1", tags=["partners"])
queries = APIRouter(prefix="/v1", tags=["partners"])


# --- the network ------------------------------------------------------------------------------


@commands.post("/partners", status_code=201, response_model=PartnerState)
def register_partner(body: RegisterPartner, app: App, response: Response, _: Officer) -> PartnerState:
    """Register a support structure (with its region), a local operator (with its countries) or a financial partner."""
    partner = app.register(name=body.name, kind=body.kind, region=body.region, countries=body.countries,
                           sectors=body.sectors, capacity=body.capacity)
    response.headers["Location"] = f"/v1/partners/{partner.id}"
    return _state(partner)


@queries.get("/partners", response_model=PartnerPage)
def list_partners(request: Request, _: Reader, own: Annotated[str | None, Depends(partner_listing())],
                  kind: PartnerKind | None = None,
                  country: Annotated[str | None, Query(pattern=COUNTRY_PATTERN)] = None,
                  region: FrenchRegion | None = None,  # type: ignore[valid-type]
                  status: Literal["active", "suspended"] | None = None, cursor: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=200)] = 50) -> PartnerPage:
    """The network, oldest registration first, filtered; follow `next_cursor` for the next page."""
    query = select(partners).order_by(partners.c.registered_at, partners.c.id).limit(limit + 1)
    if kind:
        query = query.where(partners.c.kind == kind)
    if country:
        query = query.where(partners.c.countries.like(f'%"{country}"%'))  # safe: two capitals
    if region:
        query = query.where(partners.c.region == region)
    if status:
        query = query.where(partners.c.status == status)
    if own is not None:
        query = query.where(partners.c.id == own)
    query = after_cursor(query, cursor, partners.c.registered_at, partners.c.id)
    with _engine(request).connect() as conn:
        rows = conn.execute(query).mappings().all()
    items = [PartnerSummary(**{**row, "countries": as_list(row["countries"]), "sectors": as_list(row["sectors"])})
             for row in rows[:limit]]
    next_cursor = cursor_of(rows[limit - 1]["registered_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return PartnerPage(items=items, next_cursor=next_cursor)


def _itself(app: PartnersApplication, partner_id: UUID) -> DossierPartners | None:
    """A partner record is its own partner's (of whichever kind): another partner's is 404."""
    partner = app.find(Partner, partner_id)
    if partner is None:
        return None
    return DossierPartners(support_structure_id=str(partner_id)) if partner.kind == PartnerKind.support_structure \
        else DossierPartners(local_operator_id=str(partner_id))


def _assigned(app: PartnersApplication, project_id: UUID) -> DossierPartners | None:
    assignment = app.find(Assignment, project_id)
    return None if assignment is None else DossierPartners(assignment.support_structure_id,
                                                           assignment.local_operator_id)


@queries.get("/partners/{partner_id}", response_model=PartnerDetail,
             dependencies=[Depends(partner_scoped(_itself, what="partner", path_param="partner_id"))])
def get_partner(partner_id: UUID, request: Request, app: App, who: Reader) -> PartnerDetail:
    """A partner as it is now, with its caseload and the timeline of its events."""
    partner, timeline = app.load_with_timeline(Partner, partner_id, "partner")
    with _engine(request).connect() as conn:
        row = conn.execute(select(partners).where(partners.c.id == str(partner_id))).mappings().first()
    caseload = row["caseload"] if row else 0
    available = candidate(row).available_on(app.today()) if row else False
    return PartnerDetail(
        id=partner.id, name=partner.name, kind=partner.kind, region=partner.region, countries=partner.countries,
        sectors=partner.sectors, capacity=partner.capacity, caseload=caseload,
        available=available and partner.kind != PartnerKind.financial_partner, status=partner.status,
        suspension_reason=partner.suspension_reason,
        accreditation=AccreditationView(**partner.accreditation) if partner.accreditation else None,
        feed_enabled=partner.feed_enabled, version=partner.version, timeline=timeline_for(who, timeline),
    )


@commands.post("/partners/{partner_id}/accreditation", response_model=PartnerState)
def accredit(partner_id: UUID, body: Accreditation, app: App, _: Officer) -> PartnerState:
    """Record (or renew) the partner's agreement with the programme; outside its dates it takes no dossier."""
    return _state(app.accredit(partner_id, body.agreement, body.valid_from, body.valid_to))


@commands.post("/partners/{partner_id}/coverage", response_model=PartnerState)
def change_coverage(partner_id: UUID, body: CoverageBody, app: App, _: Officer) -> PartnerState:
    """Replace the partner's region or countries, sectors and capacity. Dossiers already assigned stay."""
    return _state(app.change_coverage(partner_id, body.region, body.countries, body.sectors, body.capacity))


@commands.post("/partners/{partner_id}/suspend", response_model=PartnerState)
def suspend(partner_id: UUID, body: Suspension, app: App, _: Officer) -> PartnerState:
    """The partner takes no new dossier until reinstated; its dossiers stay with it."""
    return _state(app.suspend(partner_id, body.reason))


@commands.post("/partners/{partner_id}/reinstate", response_model=PartnerState)
def reinstate(partner_id: UUID, app: App, _: Officer) -> PartnerState:
    return _state(app.reinstate(partner_id))


@commands.post("/partners/{partner_id}/feed", response_model=PartnerState)
def enable_feed(partner_id: UUID, app: App, _: Officer) -> PartnerState:
    """Give the partner its own feed of the dossiers it may see (partner.<id>.events)."""
    return _state(app.enable_feed(partner_id))


@queries.get("/caseloads", response_model=list[Caseload])
def caseloads(request: Request, _: Reader, own: Annotated[str | None, Depends(partner_listing())],
              kind: PartnerKind | None = None) -> list[Caseload]:
    """Every partner's dossiers in hand against its capacity, most loaded (relative to capacity) first."""
    query = select(partners.c.id, partners.c.name, partners.c.kind, partners.c.status, partners.c.capacity,
                   partners.c.caseload).order_by(partners.c.name, partners.c.id)
    if kind:
        query = query.where(partners.c.kind == kind)
    if own is not None:
        query = query.where(partners.c.id == own)
    with _engine(request).connect() as conn:
        rows = conn.execute(query).mappings().all()
    loads = [Caseload(partner_id=r["id"], name=r["name"], kind=r["kind"], status=r["status"],
                      capacity=r["capacity"], caseload=r["caseload"], free=max(0, r["capacity"] - r["caseload"]))
             for r in rows]
    return sorted(loads, key=lambda c: (-c.caseload / c.capacity, c.name, str(c.partner_id)))


# --- assignments --------------------------------------------------------------------------------


@queries.get("/assignments", response_model=AssignmentPage)
def list_assignments(request: Request, _: Reader, own: Annotated[str | None, Depends(partner_listing())],
                     status: Literal["requested", "pending", "assigned", "ended"] | None = None,
                     partner_id: UUID | None = None, cursor: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AssignmentPage:
    """Assignments, oldest request first: the pending ones wait for a partner; a partner sees its own."""
    query = select(assignments).order_by(assignments.c.requested_at, assignments.c.project_id).limit(limit + 1)
    if status:
        query = query.where(assignments.c.status == status)
    involving = own or (str(partner_id) if partner_id else None)
    if involving:
        query = query.where(or_(assignments.c.support_structure_id == involving,
                                assignments.c.local_operator_id == involving))
    query = after_cursor(query, cursor, assignments.c.requested_at, assignments.c.project_id)
    with _engine(request).connect() as conn:
        rows = conn.execute(query).mappings().all()
    items = [AssignmentSummary(**{k: row[k] for k in AssignmentSummary.model_fields if k != "missing"},
                               missing=as_list(row["missing"])) for row in rows[:limit]]
    next_cursor = (cursor_of(rows[limit - 1]["requested_at"], rows[limit - 1]["project_id"])
                   if len(rows) > limit else None)
    return AssignmentPage(items=items, next_cursor=next_cursor)


@queries.get("/assignments/{project_id}", response_model=AssignmentDetail,
             dependencies=[Depends(partner_scoped(_assigned, what="assignment"))])
def get_assignment(project_id: UUID, app: App, who: Reader) -> AssignmentDetail:
    """A dossier's partners, or the roles it still waits for. 404 when the dossier never asked for partners."""
    assignment, timeline = app.load_with_timeline(Assignment, project_id, "assignment")
    return AssignmentDetail(
        project_id=project_id, status=assignment.status, country=assignment.country,
        french_region=assignment.french_region, sector=assignment.sector,
        support_structure_id=assignment.support_structure_id, local_operator_id=assignment.local_operator_id,
        sector_matched=assignment.sector_matched, missing=assignment.missing, end_reason=assignment.end_reason,
        version=assignment.version, timeline=timeline_for(who, timeline),
    )


routers = [commands, queries]
