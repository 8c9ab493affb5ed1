"""Funding's HTTP API: rules, envelopes, feasibility grants, financing, tranches, return aid, the ledger.

Who may do what:
- an admin publishes the programme rules;
- a funding approver opens and adjusts envelopes and decides on financing and return aid
  (never on a proposal of their own: four-eyes, comparing the humans, not their roles);
- a funding officer awards feasibility grants by hand, proposes financing and return aid,
  records the agreement, pays tranches, records spending evidence (the dossier's local
  operator may too) and reconciles;
- funding staff, auditors and admins read everything.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictBool, StrictInt
from sqlalchemy import func, select

from services.funding.application import FundingApplication
from services.funding.domain import (
    MAX_AMOUNT_CENTS,
    MAX_TEXT,
    Decision,
    Dossier,
    Envelope,
    Purpose,
    ReturnAid,
    RuleVersion,
)
from services.funding.projections import decisions, envelopes
from shared.api import MOMENT, Moment, Strict
from shared.auth import Principal, Role, requires
from shared.domain import NotFound
from shared.geography import COUNTRY_PATTERN
from shared.http import command_router
from shared.partner_scope import DossierPartners, PartnerKind, partner_scoped
from shared.projections import after_cursor, cursor_of

Cents = Annotated[StrictInt, Field(ge=1, le=MAX_AMOUNT_CENTS, description="euro cents")]
Country = Annotated[str, Field(pattern=COUNTRY_PATTERN, description="ISO 3166-1 alpha-2")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
READERS = (Role.funding_officer, Role.funding_approver, Role.auditor)

Admin = Annotated[Principal, Depends(requires(Role.admin))]
Officer = Annotated[Principal, Depends(requires(Role.funding_officer))]
Approver = Annotated[Principal, Depends(requires(Role.funding_approver))]
Reader = Annotated[Principal, Depends(requires(*READERS))]


# --- request bodies ------------------------------------------------------------------------------


class CountryRulesBody(Strict):
    in_programme: StrictBool
    startup_ceiling_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    feasibility_grant_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    operator_fees_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    followup_months: Annotated[StrictInt, Field(ge=0, le=60)]
    visit_months: list[Annotated[StrictInt, Field(ge=1, le=60)]] = Field(max_length=60)
    tranche_percentages: list[Annotated[StrictInt, Field(ge=1, le=100)]] = Field(min_length=1, max_length=12)


class ReturnAidScaleBody(Strict):
    base_cents: dict[Annotated[str, Field(min_length=1, max_length=40)],
                     Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]] = Field(min_length=1)
    per_adult_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    per_child_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    max_cents: Annotated[StrictInt, Field(ge=0, le=MAX_AMOUNT_CENTS)]
    max_per_person: Annotated[StrictInt, Field(ge=1, le=100, description="return aids one person may receive")] = 1


class PublishRules(Strict):
    version: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    comment: str = Field(default="", max_length=MAX_TEXT, description="not recorded: for the people who edit the file")
    min_planned_jobs: Annotated[StrictInt, Field(ge=0, le=1000)] = 1
    countries: dict[Country, CountryRulesBody] = Field(min_length=1, max_length=250)
    return_aid: ReturnAidScaleBody


class OpenEnvelope(Strict):
    year: Annotated[StrictInt, Field(ge=2000, le=2100)]
    country: Country | None = Field(None, description="absent: programme-wide")
    amount_cents: Cents
    purpose: Purpose = Purpose.business_creation


class AdjustEnvelope(Strict):
    amount_cents: Cents = Field(description="the new allocation")
    reason: Text


class FeasibilityGrant(Strict):
    project_id: UUID
    amount_cents: Cents
    justification: Text
    envelope_id: UUID | None = Field(None, description="absent: the dossier's country envelope of this year, "
                                                        "else the programme-wide one")


class Proposal(Strict):
    amount_cents: Cents
    envelope_id: UUID
    justification: Text


class DecisionBody(Strict):
    decision: Decision
    justification: Text


class Agreement(Strict):
    signed_on: date
    operator_id: str | None = Field(None, min_length=1, max_length=200,
                                    description="absent: the dossier's local operator")


class TranchePayment(Strict):
    amount_cents: Cents
    payee: str = Field(min_length=1, max_length=200)
    payment_reference: str = Field(min_length=1, max_length=100)


class EvidenceItem(Strict):
    label: str = Field(min_length=1, max_length=200)
    amount_cents: Cents


class SpendingEvidence(Strict):
    items: list[EvidenceItem] = Field(min_length=1, max_length=200)


class ReturnAidRequest(Strict):
    person_id: UUID
    country: Country
    residence_status: str = Field(min_length=1, max_length=40)
    adults: Annotated[StrictInt, Field(ge=0, le=20, description="adults besides the person")] = 0
    children: Annotated[StrictInt, Field(ge=0, le=30)] = 0
    justification: Text
    envelope_id: UUID | None = None


# --- responses ----------------------------------------------------------------------------------------


class RulesView(BaseModel):
    version: str
    min_planned_jobs: int
    countries: dict[str, dict[str, Any]]
    return_aid: dict[str, Any]


class RulebookView(BaseModel):
    in_force: str | None
    versions: list[str]


class EnvelopeView(BaseModel):
    id: UUID
    purpose: str
    year: int
    country: str | None
    allocated_cents: int
    reserved_cents: int
    disbursed_cents: int
    available_cents: int
    version: int


class EnvelopeDashboard(EnvelopeView):
    decisions: dict[str, dict[str, int]] = Field(
        description="per kind of decision drawn on this envelope: how many, and their total in cents")


class FinancingView(BaseModel):
    project_id: UUID
    country: str
    version: int
    local_operator_id: str | None
    feasibility_grant: dict[str, Any] | None
    financing: str
    dossier_version: int | None
    requested_amount_cents: int | None
    proposal: dict[str, Any] | None
    approval: dict[str, Any] | None
    tranches: list[dict[str, Any]]
    suspended: bool
    open_alerts: list[str]


class TranchesForPartner(BaseModel):
    """What the dossier's local operator reads of its money: the tranches, not who decided nor whom paid."""

    project_id: UUID
    version: int
    tranches: list[dict[str, Any]] = Field(description="tranche, amount_cents, disbursed, evidenced_cents, reconciled")


class ReturnAidView(BaseModel):
    id: UUID
    person_id: UUID
    country: str
    amount_cents: int
    envelope_id: UUID
    rule_version: str
    status: str = Field(description="proposed, granted (paid) or rejected")
    proposed_by: str | None = Field(description="null for an aid granted before proposals existed")
    decided_by: str | None
    version: int


class ReturnAidDecision(Strict):
    decision: Literal["approve", "reject"]
    justification: Text


class DecisionView(BaseModel):
    id: str
    kind: str
    project_id: str | None
    envelope_id: str | None
    amount_cents: int | None
    decided_by: str
    decided_at: datetime
    rule_version: str | None
    justification: str | None
    details: dict[str, Any]
    code_version: str | None


class DecisionPage(BaseModel):
    items: list[DecisionView]
    next_cursor: str | None
    as_of: datetime | None


async def funding(request: Request) -> FundingApplication:
    return request.app.state.runtime.app


App = Annotated[FundingApplication, Depends(funding)]


def _rules(rules: RuleVersion) -> RulesView:
    return RulesView(version=rules.version, min_planned_jobs=rules.min_planned_jobs,
                     countries={c: vars(r) for c, r in rules.countries.items()}, return_aid=vars(rules.return_aid))


def _envelope(envelope: Envelope) -> EnvelopeView:
    return EnvelopeView(id=envelope.id, purpose=envelope.purpose, year=envelope.year, country=envelope.country,
                        allocated_cents=envelope.allocated_cents, reserved_cents=envelope.reserved_cents,
                        disbursed_cents=envelope.disbursed_cents, available_cents=envelope.available_cents,
                        version=envelope.version)


def _financing(dossier: Dossier) -> FinancingView:
    return FinancingView(
        project_id=dossier.id, country=dossier.country, version=dossier.version,
        local_operator_id=dossier.local_operator_id, feasibility_grant=dossier.feasibility_grant,
        financing=dossier.financing, dossier_version=dossier.dossier_version,
        requested_amount_cents=dossier.requested_amount_cents, proposal=dossier.proposal, approval=dossier.approval,
        tranches=[{"tranche": t.number, "amount_cents": t.amount_cents, "disbursed": t.disbursed, "payee": t.payee,
                   "payment_reference": t.payment_reference, "evidenced_cents": t.evidenced_cents,
                   "reconciled": t.reconciled} for t in dossier.tranches],
        suspended=dossier.suspended, open_alerts=dossier.open_alerts,
    )


def _return_aid(aid: ReturnAid) -> ReturnAidView:
    return ReturnAidView(id=aid.id, person_id=aid.person_id, country=aid.country, amount_cents=aid.amount_cents,
                         envelope_id=UUID(aid.envelope_id), rule_version=aid.rule_version, status=aid.status,
                         proposed_by=aid.proposed_by, decided_by=aid.decided_by, version=aid.version)


def _utc(moment: datetime) -> datetime:
    """Times are stored in UTC; SQLite gives them back without their zone."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _this_year() -> int:
    return datetime.now(timezone.utc).year


commands = command_router(prefix="/v1", tags=["funding"])
queries = APIRouter(prefix="/v1", tags=["funding"])


# --- rules ---------------------------------------------------------------------------------------------


@commands.post("/rules", status_code=201, response_model=RulesView)
def publish_rules(body: PublishRules, app: App, _: Admin) -> RulesView:
    """Publish a new version of the programme rules; it is in force at once, and never changes."""
    return _rules(app.publish_rules(
        body.version, {c: r.model_dump() for c, r in body.countries.items()}, body.return_aid.model_dump(),
        body.min_planned_jobs))


@queries.get("/rules", response_model=RulebookView)
def list_rules(app: App, _: Reader) -> RulebookView:
    rulebook = app.rulebook()
    return RulebookView(in_force=rulebook.current if rulebook else None,
                        versions=list(rulebook.versions) if rulebook else [])


@queries.get("/rules/{version}", response_model=RulesView)
def get_rules(version: str, app: App, _: Reader) -> RulesView:
    rulebook = app.rulebook()
    if rulebook is None or version not in rulebook.versions:
        raise NotFound("rule version", version)
    return _rules(rulebook.rules(version))


# --- envelopes ---------------------------------------------------------------------------------------


@commands.post("/envelopes", status_code=201, response_model=EnvelopeView)
def open_envelope(body: OpenEnvelope, app: App, response: Response, _: Approver) -> EnvelopeView:
    """Open the budget of a year, for a country or (without one) the whole programme."""
    envelope = app.open_envelope(body.purpose, body.year, body.country, body.amount_cents)
    response.headers["Location"] = f"/v1/envelopes/{envelope.id}"
    return _envelope(envelope)


@commands.post("/envelopes/{envelope_id}/adjust", response_model=EnvelopeView)
def adjust_envelope(envelope_id: UUID, body: AdjustEnvelope, app: App, _: Approver) -> EnvelopeView:
    """Set a new allocation; never below what is already reserved or disbursed."""
    return _envelope(app.adjust_envelope(envelope_id, body.amount_cents, body.reason))


@queries.get("/envelopes", response_model=list[EnvelopeView])
def list_envelopes(request: Request, _: Reader, year: Annotated[int | None, Query(ge=2000, le=2100)] = None,
                   country: Annotated[str | None, Query(pattern=COUNTRY_PATTERN)] = None,
                   purpose: Purpose | None = None) -> list[EnvelopeView]:
    """Every envelope (from the read model: a moment behind the store)."""
    query = select(envelopes).order_by(envelopes.c.year, envelopes.c.purpose, envelopes.c.scope)
    if year is not None:
        query = query.where(envelopes.c.year == year)
    if country is not None:
        query = query.where(envelopes.c.scope == country)
    if purpose is not None:
        query = query.where(envelopes.c.purpose == purpose)
    with request.app.state.runtime.projector.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [EnvelopeView(
        id=r["id"], purpose=r["purpose"], year=r["year"], country=None if r["scope"] == "programme" else r["scope"],
        allocated_cents=r["allocated_cents"], reserved_cents=r["reserved_cents"],
        disbursed_cents=r["disbursed_cents"],
        available_cents=r["allocated_cents"] - r["reserved_cents"] - r["disbursed_cents"], version=r["version"],
    ) for r in rows]


@queries.get("/envelopes/{envelope_id}", response_model=EnvelopeDashboard)
def get_envelope(envelope_id: UUID, request: Request, app: App, _: Reader) -> EnvelopeDashboard:
    """The envelope's totals as they are now (from the store), and the decisions drawn on it (from the ledger)."""
    envelope = app.get_envelope(envelope_id)
    query = (select(decisions.c.kind, func.count(), func.coalesce(func.sum(decisions.c.amount_cents), 0))
             .where(decisions.c.envelope_id == str(envelope_id)).group_by(decisions.c.kind))
    with request.app.state.runtime.projector.engine.connect() as conn:
        rows = conn.execute(query).all()
    return EnvelopeDashboard(**_envelope(envelope).model_dump(),
                             decisions={kind: {"count": n, "amount_cents": int(total)} for kind, n, total in rows})


# --- feasibility grants, financing, tranches ------------------------------------------------------


@commands.post("/feasibility-grants", response_model=FinancingView)
def award_feasibility_grant(body: FeasibilityGrant, app: App, _: Officer) -> FinancingView:
    """Award a dossier's feasibility grant by hand (funding awards it by itself when the study is
    requested; this is for a grant refused then, e.g. before the envelope was opened)."""
    return _financing(app.award_feasibility_grant(body.project_id, body.amount_cents, body.justification,
                                                  body.envelope_id, _this_year()))


@queries.get("/financing/{project_id}", response_model=FinancingView)
def get_financing(project_id: UUID, app: App, _: Reader) -> FinancingView:
    """A dossier's public money: feasibility grant, financing, tranches, suspension."""
    return _financing(app.get_dossier(project_id))


@commands.post("/financing/{project_id}/proposal", response_model=FinancingView)
def propose(project_id: UUID, body: Proposal, app: App, who: Officer) -> FinancingView:
    """A funding officer proposes an amount (not above the ceiling in force) from an envelope of this year."""
    return _financing(app.propose(project_id, body.amount_cents, body.envelope_id, body.justification, who.actor,
                                  _this_year()))


@commands.post("/financing/{project_id}/decision", response_model=FinancingView)
def decide(project_id: UUID, body: DecisionBody, app: App, who: Approver) -> FinancingView:
    """An approver who is not the proposer approves (reserving the money from an envelope of this year), defers
    or rejects."""
    return _financing(app.decide(project_id, body.decision, body.justification, who.actor, _this_year()))


@commands.post("/financing/{project_id}/agreement", response_model=FinancingView)
def sign_agreement(project_id: UUID, body: Agreement, app: App, _: Officer) -> FinancingView:
    """The tripartite agreement is signed: operator fees committed, tranches scheduled per the rules."""
    return _financing(app.sign_agreement(project_id, body.signed_on.isoformat(), body.operator_id))


@commands.post("/financing/{project_id}/tranches", response_model=FinancingView)
def disburse(project_id: UUID, body: TranchePayment, app: App, _: Officer) -> FinancingView:
    """Pay the next tranche: refused while the previous one is not reconciled or an alert is open."""
    return _financing(app.disburse(project_id, body.amount_cents, body.payee, body.payment_reference))


def _partners(app: FundingApplication, project_id: UUID) -> DossierPartners | None:
    dossier = app.find(Dossier, project_id)
    # Funding knows a dossier's local operator (who carries out the study), not its support structure.
    return None if dossier is None else DossierPartners(local_operator_id=dossier.local_operator_id)


@commands.post("/financing/{project_id}/tranches/{tranche}/evidence", response_model=FinancingView | TranchesForPartner,
               dependencies=[Depends(partner_scoped(_partners, kind=PartnerKind.local_operator))])
def record_spending_evidence(project_id: UUID, tranche: int, body: SpendingEvidence, app: App,
                             who: Annotated[Principal, Depends(requires(Role.funding_officer, Role.partner))]
                             ) -> FinancingView | TranchesForPartner:
    """Receipts and invoices for a paid tranche (the dossier's local operator may send them: it then reads
    back `TranchesForPartner`)."""
    dossier = app.record_spending_evidence(project_id, tranche, [i.model_dump() for i in body.items])
    if who.partner_scope is not None:
        return TranchesForPartner(project_id=dossier.id, version=dossier.version, tranches=[
            {"tranche": t.number, "amount_cents": t.amount_cents, "disbursed": t.disbursed,
             "evidenced_cents": t.evidenced_cents, "reconciled": t.reconciled} for t in dossier.tranches])
    return _financing(dossier)


@commands.post("/financing/{project_id}/tranches/{tranche}/reconciliation", response_model=FinancingView)
def reconcile(project_id: UUID, tranche: int, app: App, _: Officer) -> FinancingView:
    """The evidence covers the tranche: it is reconciled, and the next one may go out."""
    return _financing(app.reconcile(project_id, tranche))


# --- return aid --------------------------------------------------------------------------------------


@commands.post("/return-aid", status_code=201, response_model=ReturnAidView)
def propose_return_aid(body: ReturnAidRequest, app: App, who: Officer) -> ReturnAidView:
    """Propose the voluntary return aid, by the rules' scale (status, household), from a return-aid envelope
    of this year, for a person intake knows, at most as often per person as the rules allow. An approver
    who is not the proposer then decides on it (`/return-aid/{aid_id}/decision`)."""
    return _return_aid(app.propose_return_aid(body.person_id, body.country, body.residence_status, body.adults,
                                              body.children, body.justification, _this_year(), body.envelope_id,
                                              who.actor))


@commands.post("/return-aid/{aid_id}/decision", response_model=ReturnAidView)
def decide_return_aid(aid_id: UUID, body: ReturnAidDecision, app: App, who: Approver) -> ReturnAidView:
    """An approver who is not the proposer grants the aid (paid at once from its envelope) or rejects it."""
    return _return_aid(app.decide_return_aid(aid_id, body.decision, body.justification, who.actor, _this_year()))


@queries.get("/return-aid/{aid_id}", response_model=ReturnAidView)
def get_return_aid(aid_id: UUID, app: App, _: Reader) -> ReturnAidView:
    return _return_aid(app.get_return_aid(aid_id))


# --- the ledger ------------------------------------------------------------------------------------------


@queries.get("/decisions", response_model=DecisionPage)
def list_decisions(request: Request, _: Reader, project_id: UUID | None = None, envelope_id: UUID | None = None,
                   kind: Annotated[str | None, Query(max_length=40)] = None,
                   decided_by: Annotated[str | None, Query(max_length=200)] = None,
                   rule_version: Annotated[str | None, Query(max_length=40)] = None,
                   as_of: Annotated[Moment | None, Query(description=f"the ledger as it stood then: {MOMENT}")] = None,
                   cursor: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 100) -> DecisionPage:
    """Every decision on public money, oldest first: who, when, under which rules, why, how much, from where."""
    c = decisions.c
    query = select(decisions).order_by(c.decided_at, c.id).limit(limit + 1)
    if as_of is not None:  # in UTC, as the decisions' times are stored
        query = query.where(c.decided_at <= as_of)
    for column, value in ((c.project_id, project_id), (c.envelope_id, envelope_id), (c.kind, kind),
                          (c.decided_by, decided_by), (c.rule_version, rule_version)):
        if value is not None:
            query = query.where(column == str(value))
    query = after_cursor(query, cursor, c.decided_at, c.id)
    with request.app.state.runtime.projector.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    items = [DecisionView(**{**row, "details": json.loads(row["details"]), "decided_at": _utc(row["decided_at"])})
             for row in rows[:limit]]
    next_cursor = cursor_of(rows[limit - 1]["decided_at"], rows[limit - 1]["id"]) if len(rows) > limit else None
    return DecisionPage(items=items, next_cursor=next_cursor, as_of=as_of)


routers = [commands, queries]
