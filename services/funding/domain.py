"""Funding's domain: every decision on public money. Pure: no I/O.

Three aggregates, each method a verb of the programme that checks the rules
and then triggers one event whose (private, decorated) method only changes
state, so replaying old events never re-checks rules that may have changed:

- `Rulebook`: the programme rules, one immutable version after another;
- `Envelope`: a budget for a year and a country (or the whole programme). It
  is the one aggregate concurrent decisions share: every decision that draws
  on it adds an event to it, so the library's optimistic concurrency lets only
  one of two racing decisions see the last euros;
- `Dossier`: what funding knows and decided about one promoter's dossier:
  feasibility grant, financing (proposal, four-eyes decision, agreement,
  operator fees), tranches, suspension;
- `Person`: a person intake knows, and the return aids counted for them;
- `ReturnAid`: one voluntary return aid, proposed and decided by two people.

Money: the start-up grant is *reserved* on its envelope when approved and
*disbursed* tranche by tranche. One-off payments (feasibility grant, operator
fees, return aid) are disbursed when decided (a return aid: when approved): they are paid at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate, event

from shared.domain import InvalidValue, RuleViolated, require, same_human
from shared.geography import is_country_code

MAX_TEXT = 2000
# No single amount on this programme comes near 100 million euros: above is a typo.
MAX_AMOUNT_CENTS = 10**10
PROGRAMME_WIDE = "programme"  # an envelope for every country


def _text(field_name: str, value: Any, max_length: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidValue(field_name, "must not be empty")
    if len(value) > max_length:
        raise InvalidValue(field_name, f"must be at most {max_length} characters")
    return value.strip()


def _cents(field_name: str, value: Any, *, positive: bool = True) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(field_name, "must be a whole number of euro cents")
    if value < (1 if positive else 0) or value > MAX_AMOUNT_CENTS:
        raise InvalidValue(field_name, f"must be between {1 if positive else 0} and {MAX_AMOUNT_CENTS} cents")
    return value


# --- programme rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CountryRules:
    """What the programme grants in one country, under one version of the rules."""

    in_programme: bool
    startup_ceiling_cents: int
    feasibility_grant_cents: int
    operator_fees_cents: int
    followup_months: int
    visit_months: list[int]
    # Shares of the start-up grant paid in each tranche, in percent, in order; they add up to 100.
    tranche_percentages: list[int]

    @classmethod
    def checked(cls, country: str, data: dict[str, Any]) -> CountryRules:
        where = f"countries.{country}"
        try:
            rules = cls(
                in_programme=data["in_programme"],
                startup_ceiling_cents=data["startup_ceiling_cents"],
                feasibility_grant_cents=data["feasibility_grant_cents"],
                operator_fees_cents=data["operator_fees_cents"],
                followup_months=data["followup_months"],
                visit_months=list(data["visit_months"]),
                tranche_percentages=list(data["tranche_percentages"]),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidValue(where, f"incomplete country rules: {exc}") from None
        if not isinstance(rules.in_programme, bool):
            raise InvalidValue(f"{where}.in_programme", "must be true or false")
        for name in ("startup_ceiling_cents", "feasibility_grant_cents", "operator_fees_cents"):
            _cents(f"{where}.{name}", getattr(rules, name), positive=False)
        months = rules.followup_months
        if isinstance(months, bool) or not isinstance(months, int) or not 0 <= months <= 60:
            raise InvalidValue(f"{where}.followup_months", "must be a whole number of months from 0 to 60")
        if any(isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= months for m in rules.visit_months) \
                or rules.visit_months != sorted(set(rules.visit_months)):
            raise InvalidValue(f"{where}.visit_months", "increasing months within the follow-up")
        shares = rules.tranche_percentages
        if not shares or any(isinstance(p, bool) or not isinstance(p, int) or p <= 0 for p in shares) \
                or sum(shares) != 100:
            raise InvalidValue(f"{where}.tranche_percentages", "positive whole percentages adding up to 100")
        return rules

    def tranches(self, amount_cents: int) -> list[int]:
        """The start-up grant split per the schedule; the last tranche takes the rounding."""
        amounts = [amount_cents * p // 100 for p in self.tranche_percentages[:-1]]
        return amounts + [amount_cents - sum(amounts)]


@dataclass(frozen=True)
class ReturnAidScale:
    """The voluntary return aid: a base by residence status, plus a supplement per adult and per child."""

    base_cents: dict[str, int]
    per_adult_cents: int
    per_child_cents: int
    max_cents: int
    # How many return aids one person may receive (rule versions published without it: 1).
    max_per_person: int = 1

    @classmethod
    def checked(cls, data: dict[str, Any]) -> ReturnAidScale:
        try:
            scale = cls(base_cents=dict(data["base_cents"]), per_adult_cents=data["per_adult_cents"],
                        per_child_cents=data["per_child_cents"], max_cents=data["max_cents"],
                        max_per_person=data.get("max_per_person", 1))
        except (KeyError, TypeError) as exc:
            raise InvalidValue("return_aid", f"incomplete return aid scale: {exc}") from None
        most = scale.max_per_person
        if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= 100:
            raise InvalidValue("return_aid.max_per_person", "a whole number from 1 to 100")
        if not scale.base_cents:
            raise InvalidValue("return_aid.base_cents", "give the base amount of at least one residence status")
        for status, cents in scale.base_cents.items():
            _cents(f"return_aid.base_cents.{status}", cents, positive=False)
        for name in ("per_adult_cents", "per_child_cents", "max_cents"):
            _cents(f"return_aid.{name}", getattr(scale, name), positive=False)
        return scale

    def amount(self, residence_status: str, adults: int, children: int) -> int:
        """The aid for a household: `adults` counts the promoter's spouse and other adults, not the promoter."""
        if residence_status not in self.base_cents:
            raise RuleViolated("return_aid_status_covered",
                               f"the return aid scale has no amount for the status {residence_status!r}")
        if adults < 0 or children < 0:
            raise InvalidValue("adults", "the household counts are not negative")
        total = self.base_cents[residence_status] + adults * self.per_adult_cents + children * self.per_child_cents
        return min(total, self.max_cents)


@dataclass(frozen=True)
class RuleVersion:
    """One published version of the programme rules."""

    version: str
    countries: dict[str, CountryRules]
    return_aid: ReturnAidScale
    min_planned_jobs: int = 1

    def for_country(self, country: str) -> CountryRules:
        """The rules of a country of the programme; `country_in_programme` otherwise."""
        rules = self.countries.get(country)
        if rules is None or not rules.in_programme:
            raise RuleViolated("country_in_programme",
                               f"{country} is not in the programme under the rules {self.version}")
        return rules


def check_rules(version: str, countries: dict[str, Any], return_aid: dict[str, Any],
                min_planned_jobs: int = 1) -> RuleVersion:
    """A rule set as published, checked whole; `InvalidValue` naming the first wrong field."""
    version = _text("version", version, 40)
    if not isinstance(countries, dict) or not countries:
        raise InvalidValue("countries", "give the rules of at least one country")
    bad = [c for c in countries if not is_country_code(c)]
    if bad:
        raise InvalidValue("countries", f"not ISO 3166-1 alpha-2 codes: {', '.join(map(str, bad))}")
    if isinstance(min_planned_jobs, bool) or not isinstance(min_planned_jobs, int) or min_planned_jobs < 0:
        raise InvalidValue("min_planned_jobs", "must be a whole number, 0 or more")
    return RuleVersion(
        version=version,
        countries={c: CountryRules.checked(c, r) for c, r in sorted(countries.items())},
        return_aid=ReturnAidScale.checked(return_aid),
        min_planned_jobs=min_planned_jobs,
    )


class Rulebook(Aggregate):
    """The programme's rules, version after version. There is one rulebook; a version never changes."""

    ID = uuid5(NAMESPACE_URL, "passerelle/funding/rulebook")

    @staticmethod
    def create_id() -> UUID:
        return Rulebook.ID

    @event("RulebookOpened")
    def __init__(self) -> None:
        self.versions: dict[str, dict[str, Any]] = {}
        self.current: str | None = None

    def publish(self, version: str, countries: dict[str, Any], return_aid: dict[str, Any],
                min_planned_jobs: int = 1) -> RuleVersion:
        checked = check_rules(version, countries, return_aid, min_planned_jobs)
        require(checked.version not in self.versions, "rule_version_immutable",
                f"the rules {checked.version} are already published; publish a new version")
        self._published(
            version=checked.version,
            countries={c: vars(r) for c, r in checked.countries.items()},
            return_aid=vars(checked.return_aid),
            min_planned_jobs=checked.min_planned_jobs,
        )
        return checked

    @event("ProgrammeRulesPublished")
    def _published(self, version: str, countries: dict[str, Any], return_aid: dict[str, Any],
                   min_planned_jobs: int) -> None:
        self.versions[version] = {"countries": countries, "return_aid": return_aid,
                                  "min_planned_jobs": min_planned_jobs}
        self.current = version

    def in_force(self) -> RuleVersion:
        """The version in force: the last published. `rules_published` when there is none."""
        require(self.current is not None, "rules_published", "no programme rules are published yet")
        return self.rules(self.current)  # type: ignore[arg-type]

    def rules(self, version: str) -> RuleVersion:
        data = self.versions[version]
        return RuleVersion(
            version=version,
            countries={c: CountryRules(**r) for c, r in data["countries"].items()},
            return_aid=ReturnAidScale(**data["return_aid"]),
            min_planned_jobs=data["min_planned_jobs"],
        )


# --- budget envelopes ----------------------------------------------------------------------------


class Purpose(StrEnum):
    business_creation = "business_creation"  # feasibility grants, start-up grants, operator fees
    return_aid = "return_aid"


class Envelope(Aggregate):
    """A budget: allocated, reserved (approved, not yet paid), disbursed, available."""

    @staticmethod
    def create_id(purpose: str, year: int, scope: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"passerelle/funding/envelope/{purpose}/{year}/{scope}")

    @classmethod
    def open(cls, purpose: Purpose | str, year: int, country: str | None, amount_cents: int) -> Envelope:
        try:
            purpose = Purpose(purpose)
        except ValueError:
            raise InvalidValue("purpose", f"one of {', '.join(Purpose)}") from None
        if isinstance(year, bool) or not isinstance(year, int) or not 2000 <= year <= 2100:
            raise InvalidValue("year", "a year from 2000 to 2100")
        if country is not None and not is_country_code(country):
            raise InvalidValue("country", f"{country!r} is not an ISO 3166-1 alpha-2 code")
        return cls(purpose=purpose.value, year=year, scope=country or PROGRAMME_WIDE,
                   amount_cents=_cents("amount_cents", amount_cents))

    @event("EnvelopeOpened")
    def __init__(self, purpose: str, year: int, scope: str, amount_cents: int):
        self.purpose = purpose
        self.year = year
        self.scope = scope
        self.allocated_cents = amount_cents
        self.reserved_cents = 0
        self.disbursed_cents = 0

    @property
    def country(self) -> str | None:
        return None if self.scope == PROGRAMME_WIDE else self.scope

    @property
    def available_cents(self) -> int:
        return self.allocated_cents - self.reserved_cents - self.disbursed_cents

    def covers(self, purpose: Purpose, country: str) -> bool:
        return self.purpose == purpose and self.scope in (country, PROGRAMME_WIDE)

    def adjust(self, amount_cents: int, reason: str) -> None:
        """Set the allocation to `amount_cents` (up or down); never below what is already committed."""
        amount_cents = _cents("amount_cents", amount_cents)
        reason = _text("reason", reason)
        committed = self.reserved_cents + self.disbursed_cents
        require(amount_cents >= committed, "envelope_covers_commitments",
                f"{committed} cents are already reserved or disbursed; the allocation cannot go below")
        self._adjusted(amount_cents=amount_cents, previous_cents=self.allocated_cents, reason=reason)

    @event("EnvelopeAdjusted")
    def _adjusted(self, amount_cents: int, previous_cents: int, reason: str) -> None:
        self.allocated_cents = amount_cents

    def reserve(self, project_id: str, amount_cents: int) -> None:
        """Set money aside for an approved start-up grant."""
        self._require_available(amount_cents)
        self._reserved(project_id=project_id, amount_cents=amount_cents)

    @event("EnvelopeFundsReserved")
    def _reserved(self, project_id: str, amount_cents: int) -> None:
        self.reserved_cents += amount_cents

    def pay(self, project_id: str, amount_cents: int, *, from_reserved: bool) -> None:
        """Money goes out: a tranche of a reserved grant, or a one-off payment from what is available."""
        if from_reserved:
            require(amount_cents <= self.reserved_cents, "envelope_not_overcommitted",
                    f"{amount_cents} cents exceed the {self.reserved_cents} cents reserved on the envelope")
        else:
            self._require_available(amount_cents)
        self._disbursed(project_id=project_id, amount_cents=amount_cents, from_reserved=from_reserved)

    def release(self, project_id: str, amount_cents: int) -> None:
        """Money reserved for a dossier that ended before it was all paid goes back to what is available."""
        require(amount_cents <= self.reserved_cents, "envelope_not_overcommitted",
                f"{amount_cents} cents exceed the {self.reserved_cents} cents reserved on the envelope")
        self._released(project_id=project_id, amount_cents=amount_cents)

    @event("EnvelopeFundsReleased")
    def _released(self, project_id: str, amount_cents: int) -> None:
        self.reserved_cents -= amount_cents

    @event("EnvelopeFundsDisbursed")
    def _disbursed(self, project_id: str, amount_cents: int, from_reserved: bool) -> None:
        if from_reserved:
            self.reserved_cents -= amount_cents
        self.disbursed_cents += amount_cents

    def _require_available(self, amount_cents: int) -> None:
        require(amount_cents <= self.available_cents, "envelope_not_overcommitted",
                f"{amount_cents} cents exceed the {self.available_cents} cents available on the envelope "
                f"{self.purpose}/{self.year}/{self.scope}")


# --- a dossier's public money --------------------------------------------------------------------


class FinancingStatus(StrEnum):
    none = "none"  # not (yet) sent to the committee
    requested = "requested"
    proposed = "proposed"
    approved = "approved"
    deferred = "deferred"
    rejected = "rejected"
    agreed = "agreed"  # the tripartite agreement is signed; tranches may go out
    ended = "ended"  # the dossier was withdrawn or closed: nothing more is decided nor paid


class Decision(StrEnum):
    approve = "approve"
    defer = "defer"
    reject = "reject"


@dataclass
class Tranche:
    number: int
    amount_cents: int
    disbursed: bool = False
    payee: str | None = None
    payment_reference: str | None = None
    evidence: list[dict[str, Any]] = field(default_factory=list)
    reconciled: bool = False

    @property
    def evidenced_cents(self) -> int:
        return sum(int(item["amount_cents"]) for item in self.evidence)


class Dossier(Aggregate):
    """Funding's side of a promoter's dossier; its id is the dossier's (intake's project) id."""

    @staticmethod
    def create_id(project_id: UUID) -> UUID:
        return project_id

    # Funding learns of a dossier when intake finds it eligible: the event carries the country,
    # which every later decision (rules, envelope) depends on.
    @event("DossierRegistered")
    def __init__(self, project_id: UUID, country: str, eligibility_rule_version: str):
        self.project_id = str(project_id)
        self.country = country
        self.local_operator_id: str | None = None
        self.study_request = 0
        self.feasibility_grant: dict[str, Any] | None = None
        self.financing = FinancingStatus.none
        self.dossier_version: int | None = None
        self.requested_amount_cents: int | None = None
        self.proposal: dict[str, Any] | None = None
        self.approval: dict[str, Any] | None = None
        self.tranches: list[Tranche] = []
        self.open_alerts: list[str] = []

    @property
    def suspended(self) -> bool:
        return bool(self.open_alerts)

    # --- feasibility grant ----------------------------------------------------------------

    def award_feasibility_grant(self, rules: RuleVersion, envelope: Envelope, year: int, amount_cents: int,
                                payee: str, justification: str) -> None:
        """Grant the feasibility study's money; it is paid at once from the envelope (of the year)."""
        require(not (self.feasibility_grant and self.feasibility_grant["outcome"] == "awarded"),
                "feasibility_grant_once", "the dossier already has its feasibility grant")
        amount_cents = _cents("amount_cents", amount_cents)
        ceiling = rules.for_country(self.country).feasibility_grant_cents
        require(amount_cents <= ceiling, "feasibility_grant_within_rules",
                f"{amount_cents} cents exceed the feasibility grant of {ceiling} cents under the rules {rules.version}")
        payee, justification = _text("payee", payee, 200), _text("justification", justification)
        self._require_envelope(envelope)
        require_envelope_of_the_year(envelope, year)
        envelope.pay(self.project_id, amount_cents, from_reserved=False)
        self._feasibility_grant_awarded(amount_cents=amount_cents, payee=payee, envelope_id=str(envelope.id),
                                        rule_version=rules.version, justification=justification)

    @event("FeasibilityGrantAwarded")
    def _feasibility_grant_awarded(self, amount_cents: int, payee: str, envelope_id: str, rule_version: str,
                                   justification: str) -> None:
        self.feasibility_grant = {"outcome": "awarded", "amount_cents": amount_cents, "payee": payee,
                                  "envelope_id": envelope_id, "rule_version": rule_version}

    def reject_feasibility_grant(self, reasons: list[str], rule_version: str | None) -> None:
        require(not (self.feasibility_grant and self.feasibility_grant["outcome"] == "awarded"),
                "feasibility_grant_once", "the dossier already has its feasibility grant")
        require(bool(reasons), "rejection_has_reasons", "a rejection gives its reasons")
        self._feasibility_grant_rejected(reasons=list(reasons), rule_version=rule_version)

    @event("FeasibilityGrantRejected")
    def _feasibility_grant_rejected(self, reasons: list[str], rule_version: str | None) -> None:
        self.feasibility_grant = {"outcome": "rejected", "reasons": list(reasons), "rule_version": rule_version}

    def request_feasibility_grant(self, study_request: int, local_operator_id: str | None) -> bool:
        """Intake asked for the feasibility study (`study_request`: the dossier's version then).

        False when this request was already heard (a redelivered record): it is answered once.
        """
        if study_request <= self.study_request:
            return False
        self._feasibility_grant_requested(study_request=study_request, local_operator_id=local_operator_id)
        return True

    @event("FeasibilityGrantRequested")
    def _feasibility_grant_requested(self, study_request: int, local_operator_id: str | None) -> None:
        self.study_request = study_request
        # Who carries out the study, and receives its grant.
        self.local_operator_id = local_operator_id or self.local_operator_id

    # --- financing: request, proposal, four-eyes decision ---------------------------------

    def request_financing(self, requested_amount_cents: int, dossier_version: int) -> bool:
        """The dossier reached the committee. False when this version (or a later one) was already heard."""
        if self.dossier_version is not None and dossier_version <= self.dossier_version:
            return False
        require(self.financing in (FinancingStatus.none, FinancingStatus.deferred), "financing_requested_once",
                f"the financing is already {self.financing}")
        self._financing_requested(requested_amount_cents=requested_amount_cents, dossier_version=dossier_version)
        return True

    @event("FinancingRequested")
    def _financing_requested(self, requested_amount_cents: int, dossier_version: int) -> None:
        self.financing = FinancingStatus.requested
        self.requested_amount_cents = requested_amount_cents
        self.dossier_version = dossier_version

    def propose(self, rules: RuleVersion, envelope: Envelope, year: int, amount_cents: int, justification: str,
                proposed_by: str) -> None:
        """A funding officer proposes an amount from an envelope of the year, not above the ceiling in force."""
        require(self.financing in (FinancingStatus.requested, FinancingStatus.deferred), "proposal_after_request",
                f"a proposal needs a dossier sent to the committee (the financing is {self.financing})")
        amount_cents = _cents("amount_cents", amount_cents)
        self._require_within_ceiling(rules, amount_cents)
        self._require_envelope(envelope)
        require_envelope_of_the_year(envelope, year)
        self._proposed(amount_cents=amount_cents, envelope_id=str(envelope.id), rule_version=rules.version,
                       justification=_text("justification", justification), proposed_by=proposed_by)

    @event("FinancingProposed")
    def _proposed(self, amount_cents: int, envelope_id: str, rule_version: str, justification: str,
                  proposed_by: str) -> None:
        self.financing = FinancingStatus.proposed
        self.proposal = {"amount_cents": amount_cents, "envelope_id": envelope_id, "rule_version": rule_version,
                         "proposed_by": proposed_by}

    def decide(self, decision: Decision | str, rules: RuleVersion, envelope: Envelope | None, year: int,
               justification: str, decided_by: str, code_version: str) -> None:
        """An approver who is not the proposer approves (reserving the money from an envelope of the year),
        defers or rejects."""
        try:
            decision = Decision(decision)
        except ValueError:
            raise InvalidValue("decision", f"one of {', '.join(Decision)}") from None
        require(self.financing == FinancingStatus.proposed and self.proposal is not None, "decision_after_proposal",
                f"a decision needs a proposal (the financing is {self.financing})")
        assert self.proposal is not None
        require(not same_human(decided_by, self.proposal["proposed_by"]), "four_eyes",
                "the proposer of a financing cannot decide on it: another approver must")
        justification = _text("justification", justification)
        if decision == Decision.defer:
            self._deferred(decided_by=decided_by, justification=justification, rule_version=rules.version)
            return
        if decision == Decision.reject:
            self._rejected(decided_by=decided_by, justification=justification, rule_version=rules.version)
            return
        amount_cents = self.proposal["amount_cents"]
        # The rules may have changed since the proposal: the approval answers to those in force now.
        self._require_within_ceiling(rules, amount_cents)
        assert envelope is not None and str(envelope.id) == self.proposal["envelope_id"]
        self._require_envelope(envelope)
        require_envelope_of_the_year(envelope, year)
        envelope.reserve(self.project_id, amount_cents)
        self._approved(amount_cents=amount_cents, approved_by=decided_by, proposed_by=self.proposal["proposed_by"],
                       justification=justification, rule_version=rules.version, envelope_id=str(envelope.id),
                       dossier_version=self.dossier_version, code_version=code_version)

    @event("FinancingApproved")
    def _approved(self, amount_cents: int, approved_by: str, proposed_by: str, justification: str,
                  rule_version: str, envelope_id: str, dossier_version: int, code_version: str) -> None:
        self.financing = FinancingStatus.approved
        self.approval = {"amount_cents": amount_cents, "approved_by": approved_by, "rule_version": rule_version,
                         "envelope_id": envelope_id, "dossier_version": dossier_version, "code_version": code_version}

    @event("FinancingDeferred")
    def _deferred(self, decided_by: str, justification: str, rule_version: str) -> None:
        self.financing = FinancingStatus.deferred

    @event("FinancingRejected")
    def _rejected(self, decided_by: str, justification: str, rule_version: str) -> None:
        self.financing = FinancingStatus.rejected

    # --- agreement, fees, tranches ------------------------------------------------------------

    def sign_agreement(self, rules: RuleVersion, envelope: Envelope, signed_on: str, operator_id: str) -> None:
        """The tripartite agreement (promoter, operator, funder): fees committed, tranches scheduled."""
        require(self.financing == FinancingStatus.approved and self.approval is not None, "agreement_after_approval",
                f"an agreement needs an approved financing (the financing is {self.financing})")
        assert self.approval is not None
        operator_id = _text("operator_id", operator_id, 200)
        assert str(envelope.id) == self.approval["envelope_id"]
        # The rules the approval relied on fix the schedule and the fees, not later ones.
        country_rules = rules.countries[self.country]
        self._agreement_signed(signed_on=signed_on, operator_id=operator_id,
                               amount_cents=self.approval["amount_cents"], rule_version=rules.version)
        fees = country_rules.operator_fees_cents
        if fees:
            envelope.pay(self.project_id, fees, from_reserved=False)
            self._operator_fees_committed(amount_cents=fees, operator_id=operator_id, envelope_id=str(envelope.id),
                                          rule_version=rules.version)
        amounts = country_rules.tranches(self.approval["amount_cents"])
        self._disbursement_scheduled(
            tranches=[{"tranche": n, "amount_cents": a} for n, a in enumerate(amounts, start=1)],
            rule_version=rules.version,
        )

    @event("AgreementSigned")
    def _agreement_signed(self, signed_on: str, operator_id: str, amount_cents: int, rule_version: str) -> None:
        self.financing = FinancingStatus.agreed

    @event("OperatorFeesCommitted")
    def _operator_fees_committed(self, amount_cents: int, operator_id: str, envelope_id: str,
                                 rule_version: str) -> None:
        pass

    @event("DisbursementScheduled")
    def _disbursement_scheduled(self, tranches: list[dict[str, Any]], rule_version: str) -> None:
        self.tranches = [Tranche(number=t["tranche"], amount_cents=t["amount_cents"]) for t in tranches]

    def next_tranche(self) -> Tranche | None:
        return next((t for t in self.tranches if not t.disbursed), None)

    def disburse(self, envelope: Envelope, amount_cents: int, payee: str, payment_reference: str) -> Tranche:
        """Pay the next tranche, once the previous one is reconciled and no alert is open."""
        require(self.financing == FinancingStatus.agreed, "disbursement_after_agreement",
                f"tranches go out once the agreement is signed (the financing is {self.financing})")
        require(not self.suspended, "disbursement_not_suspended",
                f"disbursements are suspended by the follow-up alert(s) {', '.join(self.open_alerts)}")
        tranche = self.next_tranche()
        require(tranche is not None, "tranches_remaining", "every scheduled tranche is already paid")
        assert tranche is not None
        previous = [t for t in self.tranches if t.number < tranche.number]
        require(all(t.reconciled for t in previous), "previous_tranche_reconciled",
                f"tranche {tranche.number - 1} must be reconciled with its spending evidence first")
        amount_cents = _cents("amount_cents", amount_cents)
        require(amount_cents == tranche.amount_cents, "tranche_as_scheduled",
                f"tranche {tranche.number} is {tranche.amount_cents} cents, not {amount_cents}")
        payee = _text("payee", payee, 200)
        payment_reference = _text("payment_reference", payment_reference, 100)
        envelope.pay(self.project_id, amount_cents, from_reserved=True)
        self._funds_disbursed(tranche=tranche.number, amount_cents=amount_cents, payee=payee,
                              payment_reference=payment_reference, envelope_id=str(envelope.id))
        return tranche

    @event("FundsDisbursed")
    def _funds_disbursed(self, tranche: int, amount_cents: int, payee: str, payment_reference: str,
                         envelope_id: str) -> None:
        paid = self.tranches[tranche - 1]
        paid.disbursed, paid.payee, paid.payment_reference = True, payee, payment_reference

    def _disbursed_tranche(self, number: int) -> Tranche:
        if not 1 <= number <= len(self.tranches):
            raise RuleViolated("tranche_exists", f"the dossier has no tranche {number}")
        tranche = self.tranches[number - 1]
        require(tranche.disbursed, "tranche_disbursed", f"tranche {number} is not paid yet")
        return tranche

    def record_spending_evidence(self, tranche: int, items: list[dict[str, Any]]) -> None:
        """Receipts and invoices justifying a paid tranche."""
        paid = self._disbursed_tranche(tranche)
        require(not paid.reconciled, "evidence_before_reconciliation", f"tranche {tranche} is already reconciled")
        if not items:
            raise InvalidValue("items", "give at least one piece of evidence")
        checked = [{"label": _text("label", i.get("label"), 200),
                    "amount_cents": _cents("amount_cents", i.get("amount_cents"))} for i in items]
        self._spending_evidence_recorded(tranche=tranche, items=checked,
                                         total_cents=sum(i["amount_cents"] for i in checked))

    @event("SpendingEvidenceRecorded")
    def _spending_evidence_recorded(self, tranche: int, items: list[dict[str, Any]], total_cents: int) -> None:
        self.tranches[tranche - 1].evidence.extend(items)

    def reconcile(self, tranche: int) -> None:
        """The tranche's spending is justified: the next tranche may go out."""
        paid = self._disbursed_tranche(tranche)
        require(not paid.reconciled, "reconcile_once", f"tranche {tranche} is already reconciled")
        require(paid.evidenced_cents >= paid.amount_cents, "evidence_covers_tranche",
                f"the evidence ({paid.evidenced_cents} cents) does not cover tranche {tranche} "
                f"({paid.amount_cents} cents)")
        self._tranche_reconciled(tranche=tranche, disbursed_cents=paid.amount_cents,
                                 evidenced_cents=paid.evidenced_cents)

    @event("TrancheReconciled")
    def _tranche_reconciled(self, tranche: int, disbursed_cents: int, evidenced_cents: int) -> None:
        self.tranches[tranche - 1].reconciled = True

    # --- end of the dossier ------------------------------------------------------------------

    @property
    def reserved_cents(self) -> int:
        """What the approval set aside and no tranche has paid yet."""
        if self.approval is None or self.financing not in (FinancingStatus.approved, FinancingStatus.agreed):
            return 0
        return self.approval["amount_cents"] - sum(t.amount_cents for t in self.tranches if t.disbursed)

    def end(self, reason: str, envelope: Envelope | None) -> bool:
        """Intake withdrew or closed the dossier: its pending financing ends, what is reserved goes back.

        False when there is nothing to end (never sent to the committee, rejected, or ended already).
        """
        if self.financing in (FinancingStatus.none, FinancingStatus.rejected, FinancingStatus.ended):
            return False
        released = self.reserved_cents
        if released:
            assert envelope is not None and self.approval is not None
            assert str(envelope.id) == self.approval["envelope_id"]
            envelope.release(self.project_id, released)
        self._financing_ended(reason=_text("reason", reason, 500), released_cents=released,
                              envelope_id=self.approval["envelope_id"] if released and self.approval else None)
        return True

    @event("FinancingEnded")
    def _financing_ended(self, reason: str, released_cents: int, envelope_id: str | None) -> None:
        self.financing = FinancingStatus.ended

    # --- suspension by the follow-up ------------------------------------------------------

    def suspend(self, alert_id: str, reason: str) -> bool:
        """A follow-up alert holds back every tranche until it is resolved. False when already known."""
        if alert_id in self.open_alerts:
            return False
        self._suspended(alert_id=alert_id, reason=reason or "follow-up alert")
        return True

    @event("DisbursementSuspended")
    def _suspended(self, alert_id: str, reason: str) -> None:
        self.open_alerts.append(alert_id)

    def resume(self, alert_id: str) -> bool:
        """The alert is resolved; disbursements resume when no other alert is open."""
        if alert_id not in self.open_alerts:
            return False
        self._resumed(alert_id=alert_id, still_open=[a for a in self.open_alerts if a != alert_id])
        return True

    @event("DisbursementResumed")
    def _resumed(self, alert_id: str, still_open: list[str]) -> None:
        self.open_alerts = list(still_open)

    # --- shared checks ---------------------------------------------------------------------

    def _require_within_ceiling(self, rules: RuleVersion, amount_cents: int) -> None:
        ceiling = rules.for_country(self.country).startup_ceiling_cents
        require(amount_cents <= ceiling, "within_ceiling",
                f"{amount_cents} cents exceed the start-up grant ceiling of {ceiling} cents in {self.country} "
                f"under the rules {rules.version}")

    def _require_envelope(self, envelope: Envelope) -> None:
        require(envelope.covers(Purpose.business_creation, self.country), "envelope_covers_dossier",
                f"the envelope {envelope.purpose}/{envelope.year}/{envelope.scope} does not fund business "
                f"creation in {self.country}")


class Person(Aggregate):
    """A person intake knows, as funding hears of them (with their dossiers): return aid goes only
    to such a person, and is counted per person. Its id derives from the person's.

    Intake's records an officer confirmed to be one person (intake's PersonsMerged, undone by
    PersonsUnmerged) are one person here too: their aids count together (`merged`: the other records).
    """

    @staticmethod
    def create_id(person_id: UUID) -> UUID:
        return uuid5(NAMESPACE_URL, f"passerelle/funding/person/{person_id}")

    @event("PersonKnown")
    def __init__(self, person_id: UUID):
        self.person_id = person_id
        self.return_aids: list[str] = []  # the aids proposed for the person and not rejected, in order
        self.same_as: list[str] = []  # intake's ids of the records merged with this one

    def record_merge(self, other_person_id: UUID) -> bool:
        """Intake merged this record with another. False when already heard (a redelivery)."""
        if str(other_person_id) in self.same_as:
            return False
        self._merge_recorded(other_person_id=str(other_person_id))
        return True

    @event("MergeRecorded")
    def _merge_recorded(self, other_person_id: str) -> None:
        self.same_as.append(other_person_id)

    def record_unmerge(self, other_person_id: UUID) -> bool:
        if str(other_person_id) not in self.same_as:
            return False
        self._merge_undone(other_person_id=str(other_person_id))
        return True

    @event("MergeUndone")
    def _merge_undone(self, other_person_id: str) -> None:
        self.same_as.remove(other_person_id)

    def count_return_aid(self, rules: RuleVersion, aid_id: str, merged: Sequence[Person] = ()) -> None:
        most = rules.return_aid.max_per_person
        counted = len(self.return_aids) + sum(len(other.return_aids) for other in merged)
        require(counted < most, "return_aid_per_person",
                f"the person already has {counted} return aid(s) granted or proposed; the rules "
                f"{rules.version} allow {most}")
        self._return_aid_counted(aid_id=aid_id)

    @event("ReturnAidCounted")
    def _return_aid_counted(self, aid_id: str) -> None:
        self.return_aids.append(aid_id)

    def uncount_return_aid(self, aid_id: str) -> None:
        """A rejected proposal no longer counts."""
        if aid_id in self.return_aids:
            self._return_aid_uncounted(aid_id=aid_id)

    @event("ReturnAidUncounted")
    def _return_aid_uncounted(self, aid_id: str) -> None:
        self.return_aids.remove(aid_id)

    def require_within_limit(self, rules: RuleVersion, aid_id: str, merged: Sequence[Person] = ()) -> None:
        """At the approval, the rules in force then decide how many aids the person may have. The aids of
        merged records count before this one: of two pending on two records merged since, one is to be
        rejected before the other is granted."""
        most = rules.return_aid.max_per_person
        before = sum(len(other.return_aids) for other in merged)
        require(aid_id in self.return_aids and before + self.return_aids.index(aid_id) < most,
                "return_aid_per_person",
                f"the rules {rules.version} allow {most} return aid(s) per person; this one would exceed them")


def require_envelope_of_the_year(envelope: Envelope, year: int) -> None:
    """An envelope is a year's budget: a decision draws on the envelope of the year it is made,
    also when the caller names the envelope."""
    require(envelope.year == year, "envelope_of_the_year",
            f"the envelope {envelope.purpose}/{envelope.year}/{envelope.scope} is not of the year {year}")


class ReturnAidStatus(StrEnum):
    proposed = "proposed"
    granted = "granted"
    rejected = "rejected"


class ReturnAid(Aggregate):
    """One voluntary return aid: proposed by a funding officer, decided by an approver who is not
    the proposer (four eyes), paid at once from a return-aid envelope of the year when granted.

    Before proposals existed an aid was granted at once: those aids' only event is a
    `ReturnAidGranted` that created them (read by `ReturnAidGranted.mutate`).
    """

    @classmethod
    def propose(cls, rules: RuleVersion, envelope: Envelope, year: int, person: Person, country: str,
                residence_status: str, adults: int, children: int, justification: str, proposed_by: str,
                merged: Sequence[Person] = ()) -> ReturnAid:
        """The amount is the scale's in force now; the envelope is checked now and again at the approval."""
        _require_return_aid_envelope(envelope, country, year)
        amount_cents = rules.return_aid.amount(residence_status, adults, children)
        require(amount_cents > 0, "return_aid_positive", "the scale gives nothing for this household")
        aid = cls(person_id=person.person_id, country=country, residence_status=residence_status, adults=adults,
                  children=children, amount_cents=amount_cents, envelope_id=str(envelope.id),
                  rule_version=rules.version, justification=_text("justification", justification),
                  proposed_by=proposed_by)
        person.count_return_aid(rules, str(aid.id), merged)
        return aid

    @event("ReturnAidProposed")
    def __init__(self, person_id: UUID, country: str, residence_status: str, adults: int, children: int,
                 amount_cents: int, envelope_id: str, rule_version: str, justification: str, proposed_by: str):
        self.person_id = person_id
        self.country = country
        self.residence_status = residence_status
        self.adults = adults
        self.children = children
        self.amount_cents = amount_cents
        self.envelope_id = envelope_id
        self.rule_version = rule_version
        self.proposed_by: str | None = proposed_by
        self.decided_by: str | None = None
        self.status = ReturnAidStatus.proposed

    def decide(self, decision: Decision | str, rules: RuleVersion, envelope: Envelope, year: int, person: Person,
               justification: str, decided_by: str, merged: Sequence[Person] = ()) -> None:
        """Approve (the aid is paid from the envelope) or reject, with a justification; never by the proposer."""
        try:
            decision = Decision(decision)
        except ValueError:
            raise InvalidValue("decision", f"one of {', '.join(Decision)}") from None
        require(decision != Decision.defer, "return_aid_decision", "a return aid is approved or rejected")
        require(self.status == ReturnAidStatus.proposed, "decision_after_proposal",
                f"the return aid is already {self.status}")
        assert self.proposed_by is not None
        require(not same_human(decided_by, self.proposed_by), "four_eyes",
                "the proposer of a return aid cannot decide on it: another approver must")
        justification = _text("justification", justification)
        if decision == Decision.reject:
            person.uncount_return_aid(str(self.id))
            self._rejected(decided_by=decided_by, justification=justification, rule_version=rules.version)
            return
        assert str(envelope.id) == self.envelope_id
        _require_return_aid_envelope(envelope, self.country, year)
        person.require_within_limit(rules, str(self.id), merged)
        envelope.pay(str(self.id), self.amount_cents, from_reserved=False)
        self.trigger_event(self.ReturnAidGranted, person_id=self.person_id, country=self.country,
                           residence_status=self.residence_status, adults=self.adults, children=self.children,
                           amount_cents=self.amount_cents, envelope_id=self.envelope_id,
                           rule_version=self.rule_version, justification=justification, approved_by=decided_by,
                           proposed_by=self.proposed_by)

    class ReturnAidGranted(Aggregate.Event):
        """The aid is granted and paid. The amount is the proposal's (the scale of `rule_version`)."""

        person_id: UUID
        country: str
        residence_status: str
        adults: int
        children: int
        amount_cents: int
        envelope_id: str
        rule_version: str
        justification: str
        approved_by: str | None  # None: granted at once, before proposals existed
        proposed_by: str | None

        def mutate(self, aggregate: Any) -> Any:
            if aggregate is None:  # an aid granted at once (stored before proposals): this event created it
                aid = ReturnAid.__new__(ReturnAid)
                aid.__base_init__(self.originator_id, self.originator_version, self.timestamp)
                aid.person_id, aid.country, aid.residence_status = self.person_id, self.country, self.residence_status
                aid.adults, aid.children, aid.amount_cents = self.adults, self.children, self.amount_cents
                aid.envelope_id, aid.rule_version = self.envelope_id, self.rule_version
                aid.proposed_by = None
                aid.decided_by = vars(self).get("approved_by")
                aid.status = ReturnAidStatus.granted
                return aid
            return super().mutate(aggregate)

        def apply(self, aggregate: Any) -> None:
            aggregate.status = ReturnAidStatus.granted
            aggregate.decided_by = self.approved_by

    @event("ReturnAidRejected")
    def _rejected(self, decided_by: str, justification: str, rule_version: str) -> None:
        self.status = ReturnAidStatus.rejected
        self.decided_by = decided_by


def _require_return_aid_envelope(envelope: Envelope, country: str, year: int) -> None:
    require(envelope.covers(Purpose.return_aid, country), "envelope_covers_return_aid",
            f"the envelope {envelope.purpose}/{envelope.year}/{envelope.scope} does not fund return aid "
            f"to {country}")
    require_envelope_of_the_year(envelope, year)
