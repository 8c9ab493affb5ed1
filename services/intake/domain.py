"""Intake's domain: a promoter's dossier (Project) from submission to the committee.

Pure: no I/O. Each public method is a verb of the programme; it checks the
rules, then triggers one event whose (private, decorated) method only changes
state, so replaying old events never re-checks rules that may have changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from shared.domain import InvalidValue, RuleViolated, require


class Status(StrEnum):
    submitted = "submitted"
    ineligible = "ineligible"
    eligible = "eligible"
    assigned = "assigned"
    preparing = "preparing"
    feasibility = "feasibility"
    at_committee = "at_committee"
    financed = "financed"
    deferred = "deferred"
    rejected = "rejected"
    in_followup = "in_followup"
    closed = "closed"
    withdrawn = "withdrawn"


FINAL = {Status.closed, Status.withdrawn}
# A person holds one business-creation aid: dossiers in these states do not count.
NOT_COUNTING_FOR_DUPLICATES = {Status.ineligible, Status.withdrawn, Status.rejected}


class ClosureReason(StrEnum):
    success = "success"
    business_failed = "business_failed"
    abandoned = "abandoned"
    re_migrated = "re_migrated"
    funding_ended = "funding_ended"
    ineligible = "ineligible"
    # An officer confirmed the promoter already holds an aid under another person record.
    duplicate_aid = "duplicate_aid"


class ConsentPurpose(StrEnum):
    """What a promoter consents their data be processed for (a closed list).

    Events recorded before the list was closed may hold other words: they stay as they are.
    """

    funding = "funding"  # the committee, the grants and their payment
    follow_up = "follow_up"  # the year of follow-up visits after launch
    preparation = "preparation"  # the skills review, trainings and business plan with the partners
    statistics = "statistics"  # the programme's reports to its funders, aggregated


class ForgetReason(StrEnum):
    """Why a person's data is erased: the legal grounds of GDPR art. 17(1), then the programme's own."""

    no_longer_necessary = "no_longer_necessary"  # art. 17(1)(a)
    consent_withdrawn = "consent_withdrawn"  # art. 17(1)(b)
    objection = "objection"  # art. 17(1)(c), an objection under art. 21
    unlawfully_processed = "unlawfully_processed"  # art. 17(1)(d)
    legal_obligation = "legal_obligation"  # art. 17(1)(e)
    child_information_society = "child_information_society"  # art. 17(1)(f), art. 8(1) services
    end_of_programme_request = "end_of_programme_request"  # the promoter asked, at the end of the programme
    retention_period_elapsed = "retention_period_elapsed"  # the programme's retention period is over
    entered_in_error = "entered_in_error"  # the record should never have been made


class DuplicateKind(StrEnum):
    """Which identifiers of two person records matched (their keyed hashes, never the values)."""

    name = "name"
    birth_date = "birth_date"
    phone = "phone"
    document = "document"


class Review(StrEnum):
    """Where an officer's review of a possible duplicate stands."""

    flagged = "flagged"
    confirmed = "confirmed"  # one person: the persons are merged
    dismissed = "dismissed"  # two people
    undone = "undone"  # a confirmation taken back: two persons again, to be settled anew


class FinancingDecision(StrEnum):
    """What funding's approver decided (FinancingApproved / Deferred / Rejected)."""

    approved = "approved"
    deferred = "deferred"
    rejected = "rejected"


_STATUS_AFTER_DECISION = {FinancingDecision.approved: Status.financed, FinancingDecision.deferred: Status.deferred,
                          FinancingDecision.rejected: Status.rejected}


class Conclusion(StrEnum):
    feasible = "feasible"
    not_feasible = "not_feasible"


@dataclass(frozen=True)
class RuleSet:
    """A versioned set of programme rules intake screens with (until funding publishes its own)."""

    version: str
    countries: frozenset[str]
    default_ceiling_cents: int
    ceilings_cents: dict[str, int] = field(default_factory=dict)
    min_planned_jobs: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuleSet:
        return cls(
            version=data["version"],
            countries=frozenset(data["countries"]),
            default_ceiling_cents=int(data["default_ceiling_cents"]),
            ceilings_cents={k: int(v) for k, v in data.get("ceilings_cents", {}).items()},
            min_planned_jobs=int(data.get("min_planned_jobs", 1)),
        )

    def ceiling(self, country: str) -> int:
        return self.ceilings_cents.get(country, self.default_ceiling_cents)

    def assess(self, project: Project) -> list[str]:
        """The reasons the dossier is ineligible under these rules; empty when eligible."""
        reasons = []
        if project.country not in self.countries:
            reasons.append(f"country_not_in_programme: {project.country}")
        if project.requested_amount_cents > self.ceiling(project.country):
            reasons.append(
                f"over_ceiling: {project.requested_amount_cents} > {self.ceiling(project.country)} cents"
            )
        if project.requested_amount_cents <= 0:
            reasons.append("nothing_requested")
        if project.planned_jobs < self.min_planned_jobs:
            reasons.append(f"too_few_planned_jobs: {project.planned_jobs} < {self.min_planned_jobs}")
        return reasons


    @classmethod
    def from_programme_rules(cls, version: str, countries: dict[str, dict[str, Any]],
                             min_planned_jobs: int) -> RuleSet:
        """The screening part of a rule set funding published (ProgrammeRulesPublished)."""
        in_programme = {c: r for c, r in countries.items() if r.get("in_programme")}
        return cls(version=version, countries=frozenset(in_programme), default_ceiling_cents=0,
                   ceilings_cents={c: int(r["startup_ceiling_cents"]) for c, r in in_programme.items()},
                   min_planned_jobs=int(min_planned_jobs))


class Project(Aggregate):
    """A promoter's dossier. Personal data lives only as ciphertext under the person's key."""

    @event("ProjectSubmitted")
    def __init__(self, reference: str, person_id: UUID, promoter_ciphertext: str, country: str,
                 french_region: str, sector: str, title: str, description: str,
                 requested_amount_cents: int, own_contribution_cents: int, planned_jobs: int):
        self.reference = reference
        self.person_id = person_id
        self.promoter_ciphertext = promoter_ciphertext
        self.country = country
        self.french_region = french_region
        self.sector = sector
        self.title = title
        self.description = description
        self.requested_amount_cents = requested_amount_cents
        self.own_contribution_cents = own_contribution_cents
        self.planned_jobs = planned_jobs
        self.status = Status.submitted
        self.eligibility: dict[str, Any] | None = None
        self.possible_duplicates: list[str] = []
        # Per other person record whose identifiers matched: its dossiers, what matched, the review.
        self.duplicate_reviews: dict[str, dict[str, Any]] = {}
        self.consent: dict[str, list[str]] = {"purposes": [], "partners": []}
        self.support_structure_id: str | None = None
        self.local_operator_id: str | None = None
        self.skills_review: str | None = None
        self.trainings: list[dict[str, Any]] = []
        self.business_plan: dict[str, Any] | None = None
        self.feasibility_conclusion: str | None = None
        self.closure_reason: str | None = None
        # What funding decided, as its events told (FeasibilityGrant..., Financing...).
        self.feasibility_grant: dict[str, Any] | None = None
        self.financing: dict[str, Any] | None = None
        self.funding_version = 0  # of funding's side of the dossier, as last heard: tells redeliveries apart

    # --- screening ---------------------------------------------------------------

    def screen(self, rules: RuleSet) -> None:
        """Screen against the rules. A possible duplicate does not count here: only an officer's
        confirmation does (`confirm_duplicate`)."""
        require(self.status == Status.submitted, "screen_once", f"the dossier is already {self.status}")
        reasons = rules.assess(self)
        # The event carries what the partners service needs to assign (country, region, sector).
        self._eligibility_assessed(eligible=not reasons, reasons=reasons, rule_version=rules.version,
                                   country=self.country, french_region=self.french_region, sector=self.sector)

    # --- possible duplicates: flagged at submission, settled by an officer ------------------

    def flag_possible_duplicate(self, other_person_id: UUID, other_project_ids: list[str],
                                matched: list[DuplicateKind]) -> None:
        """Another person record's identifiers match this promoter's: an officer is to settle it."""
        self._possible_duplicate_flagged(other_project_ids=list(other_project_ids),
                                         other_person_id=str(other_person_id),
                                         matched=sorted(DuplicateKind(k).value for k in matched))

    # Flags recorded before persons had random ids name the other dossiers only (they were refused
    # at once as duplicate_aid then): they are shown, with nothing to settle.
    @event("PossibleDuplicateFlagged")
    def _possible_duplicate_flagged(self, other_project_ids: list[str], other_person_id: str | None = None,
                                    matched: list[DuplicateKind] | None = None) -> None:
        self.possible_duplicates = sorted(set(self.possible_duplicates) | set(other_project_ids))
        if other_person_id is not None:
            self.duplicate_reviews[other_person_id] = {
                "person_id": other_person_id, "project_ids": list(other_project_ids),
                "matched": list(matched or []), "status": Review.flagged.value,
            }

    def _review(self, other_person_id: UUID, *allowed: Review) -> dict[str, Any]:
        review = self.duplicate_reviews.get(str(other_person_id))
        require(review is not None, "duplicate_was_flagged",
                f"no possible duplicate with person {other_person_id} was flagged on this dossier")
        require(review["status"] in allowed, "duplicate_review_in_order",
                f"the possible duplicate is {review['status']}")
        return review

    def confirm_duplicate(self, other_person_id: UUID, aid_held: list[str]) -> None:
        """The officer confirms both records are one person.

        `aid_held`: the dossiers that count as aid the other person (with the records merged
        with it) holds. One person holds one aid: when this dossier counts as aid too and one of
        them does, this one (the later: flags are raised at submission) is closed as duplicate_aid.
        """
        self._review(other_person_id, Review.flagged, Review.undone)
        self._duplicate_confirmed(other_person_id=str(other_person_id), aid_held=sorted(aid_held))
        if aid_held and self.counts_as_aid and self.status not in FINAL:
            self._closed(reason=ClosureReason.duplicate_aid.value, previous_status=self.status.value)

    @event("DuplicateConfirmed")
    def _duplicate_confirmed(self, other_person_id: str, aid_held: list[str]) -> None:
        self.duplicate_reviews[other_person_id]["status"] = Review.confirmed.value

    def dismiss_duplicate(self, other_person_id: UUID) -> None:
        """The officer finds two different people: nothing else changes."""
        self._review(other_person_id, Review.flagged, Review.undone)
        self._duplicate_dismissed(other_person_id=str(other_person_id))

    @event("DuplicateDismissed")
    def _duplicate_dismissed(self, other_person_id: str) -> None:
        self.duplicate_reviews[other_person_id]["status"] = Review.dismissed.value

    def undo_duplicate(self, other_person_id: UUID) -> None:
        """Take a confirmation back: the two persons are two again. A dossier the confirmation
        closed stays closed (an ended dossier never reopens); the promoter submits anew."""
        self._review(other_person_id, Review.confirmed)
        self._duplicate_confirmation_undone(other_person_id=str(other_person_id))

    @event("DuplicateConfirmationUndone")
    def _duplicate_confirmation_undone(self, other_person_id: str) -> None:
        self.duplicate_reviews[other_person_id]["status"] = Review.undone.value

    @event("EligibilityAssessed")
    def _eligibility_assessed(self, eligible: bool, reasons: list[str], rule_version: str, country: str,
                              french_region: str, sector: str) -> None:
        self.eligibility = {"eligible": eligible, "reasons": list(reasons), "rule_version": rule_version}
        self.status = Status.eligible if eligible else Status.ineligible

    # --- consent -------------------------------------------------------------------

    @staticmethod
    def _purposes(purposes: list[ConsentPurpose]) -> list[str]:
        try:
            return sorted({ConsentPurpose(p).value for p in purposes})
        except ValueError:
            raise InvalidValue("purposes", f"a purpose is one of {', '.join(ConsentPurpose)}") from None

    def record_consent(self, purposes: list[ConsentPurpose], partners: list[str]) -> None:
        self._require_open()
        require(bool(purposes), "consent_needs_purposes", "consent names at least one purpose")
        self._consent_recorded(purposes=self._purposes(purposes), partners=sorted(set(partners)))

    # Stored purposes are plain words: events from before the list was closed may hold others.
    @event("ConsentRecorded")
    def _consent_recorded(self, purposes: list[ConsentPurpose], partners: list[str]) -> None:
        self.consent = {
            "purposes": sorted(set(self.consent["purposes"]) | set(purposes)),
            "partners": sorted(set(self.consent["partners"]) | set(partners)),
        }

    def withdraw_consent(self, purposes: list[ConsentPurpose], partners: list[str]) -> None:
        self._require_open()
        self._consent_withdrawn(purposes=self._purposes(purposes), partners=sorted(set(partners)))

    @event("ConsentWithdrawn")
    def _consent_withdrawn(self, purposes: list[ConsentPurpose], partners: list[str]) -> None:
        self.consent = {
            "purposes": sorted(set(self.consent["purposes"]) - set(purposes)),
            "partners": sorted(set(self.consent["partners"]) - set(partners)),
        }

    # --- assignment ----------------------------------------------------------------

    def record_partners(self, support_structure_id: str, local_operator_id: str) -> bool:
        """Record the partners assigned by the partners service. False when there is nothing to record."""
        if self.status in FINAL or self.status in (Status.submitted, Status.ineligible):
            return False
        if (self.support_structure_id, self.local_operator_id) == (support_structure_id, local_operator_id):
            return False
        self._partners_recorded(support_structure_id=support_structure_id, local_operator_id=local_operator_id)
        return True

    @event("PartnersRecorded")
    def _partners_recorded(self, support_structure_id: str, local_operator_id: str) -> None:
        self.support_structure_id = support_structure_id
        self.local_operator_id = local_operator_id
        if self.status == Status.eligible:
            self.status = Status.assigned

    # --- preparation in France -----------------------------------------------------

    def _require_preparing(self, what: str) -> None:
        require(self.status in (Status.assigned, Status.preparing), "preparation_after_assignment",
                f"{what} needs a dossier assigned to its partners (it is {self.status})")

    def complete_skills_review(self, summary: str) -> None:
        self._require_preparing("a skills review")
        self._skills_review_completed(summary=summary)

    @event("SkillsReviewCompleted")
    def _skills_review_completed(self, summary: str) -> None:
        self.skills_review = summary
        self.status = Status.preparing

    def record_training(self, course: str, hours: int, completed_on: str) -> None:
        self._require_preparing("a training")
        self._training_recorded(course=course, hours=hours, completed_on=completed_on)

    @event("TrainingRecorded")
    def _training_recorded(self, course: str, hours: int, completed_on: str) -> None:
        self.trainings.append({"course": course, "hours": hours, "completed_on": completed_on})
        self.status = Status.preparing

    def record_business_plan(self, budget_lines: list[dict[str, Any]], own_contribution_cents: int,
                             planned_jobs: int) -> None:
        self._require_preparing("a business plan")
        require(bool(budget_lines), "business_plan_needs_budget", "a business plan has at least one budget line")
        if own_contribution_cents < 0 or planned_jobs < 0:
            raise InvalidValue("own_contribution_cents", "amounts and jobs are not negative")
        self._business_plan_recorded(budget_lines=budget_lines, own_contribution_cents=own_contribution_cents,
                                     planned_jobs=planned_jobs)

    @event("BusinessPlanRecorded")
    def _business_plan_recorded(self, budget_lines: list[dict[str, Any]], own_contribution_cents: int,
                                planned_jobs: int) -> None:
        total = sum(int(line["amount_cents"]) for line in budget_lines)
        self.business_plan = {"budget_lines": budget_lines, "total_cents": total}
        self.own_contribution_cents = own_contribution_cents
        self.planned_jobs = planned_jobs
        self.status = Status.preparing

    # --- feasibility study in the country --------------------------------------------

    def request_feasibility_study(self) -> None:
        require(self.status == Status.preparing, "feasibility_after_preparation",
                f"a feasibility study follows preparation (the dossier is {self.status})")
        require(self.business_plan is not None, "feasibility_needs_business_plan",
                "record the business plan before requesting the feasibility study")
        self._feasibility_study_requested(local_operator_id=self.local_operator_id)

    @event("FeasibilityStudyRequested")
    def _feasibility_study_requested(self, local_operator_id: str | None) -> None:
        self.status = Status.feasibility

    def complete_feasibility_study(self, conclusion: Conclusion, summary: str) -> None:
        require(self.status == Status.feasibility, "study_was_requested",
                f"no feasibility study is under way (the dossier is {self.status})")
        require(self.feasibility_conclusion is None, "study_concluded_once", "the study already has a conclusion")
        self._feasibility_study_completed(conclusion=Conclusion(conclusion).value, summary=summary)

    @event("FeasibilityStudyCompleted")
    def _feasibility_study_completed(self, conclusion: str, summary: str) -> None:
        self.feasibility_conclusion = conclusion

    def record_feasibility_grant(self, outcome: str, amount_cents: int | None, payee: str | None,
                                 reasons: list[str], funding_version: int) -> bool:
        """Funding's answer on the study's grant (awarded or rejected). False when already known."""
        if self.status in FINAL or funding_version <= self.funding_version:
            return False
        self._feasibility_grant_recorded(outcome=outcome, amount_cents=amount_cents, payee=payee,
                                         reasons=list(reasons), funding_version=funding_version)
        return True

    @event("FeasibilityGrantRecorded")
    def _feasibility_grant_recorded(self, outcome: str, amount_cents: int | None, payee: str | None,
                                    reasons: list[str], funding_version: int) -> None:
        self.feasibility_grant = {"outcome": outcome, "amount_cents": amount_cents, "payee": payee,
                                  "reasons": list(reasons)}
        self.funding_version = funding_version

    # --- committee -------------------------------------------------------------------

    def send_to_committee(self) -> None:
        require(self.status == Status.feasibility and self.feasibility_conclusion is not None,
                "committee_after_study", f"the feasibility study must be concluded first (the dossier is {self.status})")
        require(self.feasibility_conclusion == Conclusion.feasible, "committee_needs_feasible_study",
                "the feasibility study concluded the project is not feasible")
        require(ConsentPurpose.funding in self.consent["purposes"], "committee_needs_consent",
                "the promoter has not consented to the processing for funding")
        self._sent_to_committee(requested_amount_cents=self.requested_amount_cents,
                                own_contribution_cents=self.own_contribution_cents, planned_jobs=self.planned_jobs)

    @event("ProjectSentToCommittee")
    def _sent_to_committee(self, requested_amount_cents: int, own_contribution_cents: int, planned_jobs: int) -> None:
        self.status = Status.at_committee

    def record_financing_decision(self, decision: FinancingDecision, amount_cents: int | None,
                                  rule_version: str, funding_version: int) -> bool:
        """Funding's committee decided: the dossier is financed, deferred or rejected.

        False when the dossier is not waiting for a decision (withdrawn meanwhile) or the
        decision is already known (a redelivery): intake records what funding decided, it does
        not re-judge it. `funding_version` (the version of funding's side of the dossier that
        carried the decision) tells a new decision from a record seen before.
        """
        decision = FinancingDecision(decision)
        if self.status not in (Status.at_committee, Status.deferred) or funding_version <= self.funding_version:
            return False
        self._financing_decision_recorded(decision=decision.value, amount_cents=amount_cents,
                                          rule_version=rule_version, funding_version=funding_version)
        return True

    @event("FinancingDecisionRecorded")
    def _financing_decision_recorded(self, decision: str, amount_cents: int | None, rule_version: str,
                                     funding_version: int) -> None:
        self.financing = {"decision": decision, "amount_cents": amount_cents, "rule_version": rule_version}
        self.status = _STATUS_AFTER_DECISION[FinancingDecision(decision)]
        self.funding_version = funding_version

    # --- end of the dossier -----------------------------------------------------------

    def _require_open(self) -> None:
        require(self.status not in FINAL, "dossier_is_open", f"the dossier is {self.status}")

    def withdraw(self, reason: str) -> None:
        self._require_open()
        self._withdrawn(reason=reason, previous_status=self.status.value)

    @event("ProjectWithdrawn")
    def _withdrawn(self, reason: str, previous_status: str) -> None:
        self.status = Status.withdrawn
        self.closure_reason = reason

    def close(self, reason: ClosureReason) -> None:
        self._require_open()
        reason = ClosureReason(reason)
        if reason == ClosureReason.success:
            require(self.status in (Status.financed, Status.in_followup), "success_needs_financing",
                    "only a financed dossier closes with success")
        self._closed(reason=reason.value, previous_status=self.status.value)

    @event("ProjectClosed")
    def _closed(self, reason: str, previous_status: str) -> None:
        self.status = Status.closed
        self.closure_reason = reason

    # --- follow-up -------------------------------------------------------------------

    def record_followup(self) -> bool:
        """The followup service opened the business's follow-up (its first tranche is paid).

        False when there is nothing to record: already in follow-up, or ended meanwhile.
        From `at_committee` too: funding's decision and followup's opening come on two
        topics read side by side, so intake may learn of the opening first.
        """
        if self.status not in (Status.at_committee, Status.financed):
            return False
        self._followup_recorded()
        return True

    @event("FollowUpRecorded")
    def _followup_recorded(self) -> None:
        self.status = Status.in_followup

    # --- for duplicate detection -------------------------------------------------------

    @property
    def counts_as_aid(self) -> bool:
        return self.status not in NOT_COUNTING_FOR_DUPLICATES


class Person(Aggregate):
    """A person record: a promoter known only by a pseudonymous id, with their dossiers.

    The id is random, never derived from who the person is: two people sharing a name and a birth
    date are two records, and so is a forgotten person who comes back. Records an officer confirmed
    to be one person are merged (`same_as`), which an officer can undo.
    """

    @staticmethod
    def create_id(person_id: UUID) -> UUID:
        return person_id

    @event("PersonRegistered")
    def __init__(self, person_id: UUID):
        self.project_ids: list[str] = []
        self.forgotten = False
        self.forgotten_reason: str | None = None
        self.same_as: list[str] = []

    def merge_with(self, other_person_id: UUID) -> None:
        if str(other_person_id) not in self.same_as:
            self._merged(other_person_id=str(other_person_id))

    @event("PersonsMerged")
    def _merged(self, other_person_id: str) -> None:
        self.same_as.append(other_person_id)

    def unmerge(self, other_person_id: UUID) -> None:
        if str(other_person_id) in self.same_as:
            self._unmerged(other_person_id=str(other_person_id))

    @event("PersonsUnmerged")
    def _unmerged(self, other_person_id: str) -> None:
        self.same_as.remove(other_person_id)

    def open_dossier(self, project_id: UUID) -> None:
        self._dossier_opened(project_id=str(project_id))

    @event("DossierOpened")
    def _dossier_opened(self, project_id: str) -> None:
        self.project_ids.append(project_id)

    def forget(self, reason: ForgetReason, note_ciphertext: str | None = None) -> None:
        """Erase the person's data. `note_ciphertext`: the officer's note, sealed under the
        programme's notes key (not the person's, which goes now)."""
        if reason not in ForgetReason.__members__.values():
            raise InvalidValue("reason", f"a reason is one of {', '.join(ForgetReason)}")
        if self.forgotten:
            raise RuleViolated("forget_once", "this person's data is already erased")
        self._forgotten(reason=ForgetReason(reason).value, note_ciphertext=note_ciphertext)

    # Recorded without reason before it was asked for, then with free words before the closed list.
    @event("PersonForgotten")
    def _forgotten(self, reason: str = "", note_ciphertext: str | None = None) -> None:
        self.forgotten = True
        self.forgotten_reason = reason


class AdoptedRules(Aggregate):
    """The programme rules funding published, as intake screens with them: the last one is in force.

    Until funding publishes any, intake screens with its default rule set.
    """

    ID = UUID("6f1f3c9e-4b7a-5d2e-9c1a-3e5b7d9f1a2c")

    @staticmethod
    def create_id() -> UUID:
        return AdoptedRules.ID

    @event("ScreeningRulesOpened")
    def __init__(self) -> None:
        self.versions: list[str] = []
        self.current: dict[str, Any] | None = None

    def adopt(self, version: str, countries: dict[str, dict[str, Any]], min_planned_jobs: int) -> bool:
        """Adopt a version funding published. False when it is already adopted (a redelivery)."""
        if version in self.versions:
            return False
        rules = RuleSet.from_programme_rules(version, countries, min_planned_jobs)
        self._adopted(version=version, countries=sorted(rules.countries), ceilings_cents=rules.ceilings_cents,
                      min_planned_jobs=rules.min_planned_jobs)
        return True

    @event("ProgrammeRulesAdopted")
    def _adopted(self, version: str, countries: list[str], ceilings_cents: dict[str, int],
                 min_planned_jobs: int) -> None:
        self.versions.append(version)
        self.current = {"version": version, "countries": list(countries), "ceilings_cents": dict(ceilings_cents),
                        "default_ceiling_cents": 0, "min_planned_jobs": min_planned_jobs}

    def in_force(self) -> RuleSet | None:
        return RuleSet.from_dict(self.current) if self.current else None
