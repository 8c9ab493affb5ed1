"""Funding's application: the commands and queries on rules, envelopes, dossiers and return aid.

Every decision that draws on an envelope saves the envelope together with the
dossier (or return aid) in one transaction. When two decisions race for the
same envelope, the library's optimistic concurrency refuses the second save;
`retry_on_conflict` loads both aggregates again and decides again on the new
totals, so the envelope is never over-committed and nobody gets a spurious 409.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from services.funding.domain import (
    Decision,
    Dossier,
    Envelope,
    Person,
    Purpose,
    ReturnAid,
    RuleVersion,
    Rulebook,
)
from shared.conflicts import retry_on_conflict
from shared.domain import NotFound, RuleViolated, require
from shared.store import ServiceApplication, code_version
from shared.telemetry import traced

EXAMPLE_RULES = Path(__file__).with_name("example_rules.json")


def example_rules() -> dict[str, Any]:
    """A complete rule set in the shape `POST /v1/rules` takes (the demo seeds it)."""
    return json.loads(EXAMPLE_RULES.read_text())


class FundingApplication(ServiceApplication):
    name = "funding"
    # Every decision reads the rulebook and an envelope, both long-lived and ever-growing.
    # The library's aggregate cache keeps them in memory and fast-forwards them with the
    # events saved since (by any process) before each use, and hands out deep copies: a read
    # as fresh as without the cache, at the cost of one small query instead of the whole history.
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000"}

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._envelope_locks: dict[UUID, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @contextmanager
    def drawing_on(self, envelope_id: UUID) -> Iterator[None]:
        """Decisions of this process on one envelope take turns.

        Not for correctness (the store's optimistic concurrency refuses any racing save,
        whichever process made it) but so that threads of one process do not keep losing
        races to each other on a busy envelope and deciding again.
        """
        with self._locks_lock:
            lock = self._envelope_locks.setdefault(envelope_id, threading.Lock())
        with lock:
            yield

    # --- programme rules -------------------------------------------------------------------

    def publish_rules(self, version: str, countries: dict[str, Any], return_aid: dict[str, Any],
                      min_planned_jobs: int = 1) -> RuleVersion:
        def publish() -> RuleVersion:
            rulebook = self.find(Rulebook, Rulebook.ID) or Rulebook()
            published = rulebook.publish(version, countries, return_aid, min_planned_jobs)
            self.save(rulebook)
            return published

        return retry_on_conflict(publish)

    def rules_in_force(self) -> RuleVersion:
        rulebook = self.find(Rulebook, Rulebook.ID)
        require(rulebook is not None, "rules_published", "no programme rules are published yet")
        return rulebook.in_force()  # type: ignore[union-attr]

    def rulebook(self) -> Rulebook | None:
        return self.find(Rulebook, Rulebook.ID)

    # --- envelopes -------------------------------------------------------------------------

    def open_envelope(self, purpose: str, year: int, country: str | None, amount_cents: int) -> Envelope:
        envelope = Envelope.open(purpose, year, country, amount_cents)
        require(self.find(Envelope, envelope.id) is None, "envelope_opened_once",
                f"the envelope {envelope.purpose}/{envelope.year}/{envelope.scope} is already open: adjust it")
        self.save(envelope)
        return envelope

    def adjust_envelope(self, envelope_id: UUID, amount_cents: int, reason: str) -> Envelope:
        def adjust() -> Envelope:
            envelope = self.get_envelope(envelope_id)
            envelope.adjust(amount_cents, reason)
            self.save(envelope)
            return envelope

        return retry_on_conflict(adjust)

    def get_envelope(self, envelope_id: UUID) -> Envelope:
        return self.load(Envelope, envelope_id, "envelope")

    def envelope_for(self, purpose: Purpose, year: int, country: str) -> Envelope | None:
        """The country's envelope of the year, else the programme-wide one."""
        for scope in (country, "programme"):
            found = self.find(Envelope, Envelope.create_id(purpose.value, year, scope))
            if found is not None:
                return found
        return None

    # --- dossiers: from intake's events -------------------------------------------------------

    def register_dossier(self, project_id: UUID, country: str, rule_version: str) -> None:
        """An eligible dossier: funding will decide on it later. Once per dossier."""
        if self.find(Dossier, project_id) is None:
            self.save(Dossier(project_id=project_id, country=country, eligibility_rule_version=rule_version))

    @traced("funding feasibility_grant")
    def grant_feasibility_study(self, project_id: UUID, local_operator_id: str | None, year: int,
                                study_request: int) -> Dossier | None:
        """The study is requested: award its grant from the rules, or reject it with the reason. Once per request."""

        def decide() -> Dossier | None:
            dossier = self.find(Dossier, project_id)
            if dossier is None:
                return None  # never eligible: nothing to fund
            if not dossier.request_feasibility_grant(study_request, local_operator_id):
                return dossier  # heard before
            if dossier.feasibility_grant and dossier.feasibility_grant["outcome"] == "awarded":
                self.save(dossier)  # a new request; the grant it asks for was already awarded
                return dossier
            rulebook = self.rulebook()
            rules = rulebook.in_force() if rulebook and rulebook.current else None
            envelope = self.envelope_for(Purpose.business_creation, year, dossier.country)
            try:
                require(rules is not None, "rules_published", "no programme rules are published yet")
                require(envelope is not None, "envelope_open",
                        f"no business-creation envelope is open for {dossier.country} in {year}")
                assert rules is not None and envelope is not None
                amount = rules.for_country(dossier.country).feasibility_grant_cents
                dossier.award_feasibility_grant(rules, envelope, year, amount, payee=self._payee(dossier),
                                                justification="feasibility grant of the rules in force")
            except RuleViolated as refused:
                dossier.reject_feasibility_grant([f"{refused.rule}: {refused.detail}"],
                                                 rules.version if rules else None)
                self.save(dossier)
                return dossier
            self.save(dossier, envelope)
            return dossier

        return retry_on_conflict(decide)

    def award_feasibility_grant(self, project_id: UUID, amount_cents: int, justification: str,
                                envelope_id: UUID | None, year: int) -> Dossier:
        """A funding officer awards the grant by hand (after a rejection, once an envelope is open)."""

        def award() -> Dossier:
            dossier = self.get_dossier(project_id)
            rules = self.rules_in_force()
            envelope = (self.get_envelope(envelope_id) if envelope_id is not None
                        else self.envelope_for(Purpose.business_creation, year, dossier.country))
            require(envelope is not None, "envelope_open",
                    f"no business-creation envelope is open for {dossier.country} in {year}")
            assert envelope is not None
            dossier.award_feasibility_grant(rules, envelope, year, amount_cents, self._payee(dossier), justification)
            self.save(dossier, envelope)
            return dossier

        return retry_on_conflict(award)

    @staticmethod
    def _payee(dossier: Dossier) -> str:
        return f"operator:{dossier.local_operator_id}" if dossier.local_operator_id else "promoter"

    def request_financing(self, project_id: UUID, requested_amount_cents: int, dossier_version: int) -> None:
        """The dossier is at the committee (intake's ProjectSentToCommittee)."""
        dossier = self.find(Dossier, project_id)
        if dossier is not None and dossier.request_financing(requested_amount_cents, dossier_version):
            self.save(dossier)

    def end_financing(self, project_id: UUID, reason: str) -> None:
        """The dossier was withdrawn or closed (intake's ProjectWithdrawn / ProjectClosed)."""

        def end() -> None:
            dossier = self.find(Dossier, project_id)
            if dossier is None:
                return
            if dossier.approval is None:
                if dossier.end(reason, None):
                    self.save(dossier)
                return
            envelope_id = UUID(dossier.approval["envelope_id"])
            with self.drawing_on(envelope_id):
                envelope = self.get_envelope(envelope_id)
                if dossier.end(reason, envelope):
                    self.save(dossier, envelope)

        retry_on_conflict(end)

    def suspend_disbursements(self, project_id: UUID, alert_id: str, reason: str) -> None:
        """A follow-up alert (followup's AlertRaised)."""
        dossier = self.find(Dossier, project_id)
        if dossier is not None and dossier.suspend(alert_id, reason):
            self.save(dossier)

    def resume_disbursements(self, project_id: UUID, alert_id: str) -> None:
        dossier = self.find(Dossier, project_id)
        if dossier is not None and dossier.resume(alert_id):
            self.save(dossier)

    # --- financing: commands of funding officers and approvers ------------------------------------

    def propose(self, project_id: UUID, amount_cents: int, envelope_id: UUID, justification: str,
                proposed_by: str, year: int) -> Dossier:
        dossier = self.get_dossier(project_id)
        dossier.propose(self.rules_in_force(), self.get_envelope(envelope_id), year, amount_cents, justification,
                        proposed_by)
        self.save(dossier)
        return dossier

    @traced("funding decide")
    def decide(self, project_id: UUID, decision: Decision | str, justification: str, decided_by: str,
               year: int) -> Dossier:
        def decide() -> Dossier:
            dossier = self.get_dossier(project_id)
            if dossier.proposal is None:  # refused by the domain, with its rule
                dossier.decide(decision, self.rules_in_force(), None, year, justification, decided_by,
                               code_version())
            envelope_id = UUID(dossier.proposal["envelope_id"])  # type: ignore[index]
            with self.drawing_on(envelope_id):
                envelope = self.get_envelope(envelope_id)
                dossier.decide(decision, self.rules_in_force(), envelope, year, justification, decided_by,
                               code_version())
                self.save(dossier, envelope)
            return dossier

        return retry_on_conflict(decide)

    def sign_agreement(self, project_id: UUID, signed_on: str, operator_id: str | None) -> Dossier:
        def sign() -> Dossier:
            dossier = self.get_dossier(project_id)
            require(dossier.approval is not None, "agreement_after_approval", "the financing is not approved")
            assert dossier.approval is not None
            rulebook = self.rulebook()
            assert rulebook is not None
            operator = operator_id or dossier.local_operator_id
            require(operator is not None, "agreement_names_operator",
                    "the dossier has no local operator on record: name the operator who signs")
            envelope_id = UUID(dossier.approval["envelope_id"])
            with self.drawing_on(envelope_id):
                envelope = self.get_envelope(envelope_id)
                dossier.sign_agreement(rulebook.rules(dossier.approval["rule_version"]), envelope, signed_on,
                                       operator)  # type: ignore[arg-type]
                self.save(dossier, envelope)
            return dossier

        return retry_on_conflict(sign)

    @traced("funding disburse")
    def disburse(self, project_id: UUID, amount_cents: int, payee: str, payment_reference: str) -> Dossier:
        def disburse() -> Dossier:
            dossier = self.get_dossier(project_id)
            require(dossier.approval is not None, "disbursement_after_agreement", "the financing is not approved")
            assert dossier.approval is not None
            envelope_id = UUID(dossier.approval["envelope_id"])
            with self.drawing_on(envelope_id):
                envelope = self.get_envelope(envelope_id)
                dossier.disburse(envelope, amount_cents, payee, payment_reference)
                self.save(dossier, envelope)
            return dossier

        return retry_on_conflict(disburse)

    def record_spending_evidence(self, project_id: UUID, tranche: int, items: list[dict[str, Any]]) -> Dossier:
        dossier = self.get_dossier(project_id)
        dossier.record_spending_evidence(tranche, items)
        self.save(dossier)
        return dossier

    def reconcile(self, project_id: UUID, tranche: int) -> Dossier:
        dossier = self.get_dossier(project_id)
        dossier.reconcile(tranche)
        self.save(dossier)
        return dossier

    # --- return aid ---------------------------------------------------------------------------------

    def learn_person(self, person_id: UUID) -> None:
        """A person intake knows (from its events): return aid may be proposed for them. Once per person."""
        if self.find_person(person_id) is None:
            self.save(Person(person_id=person_id))

    def record_merge(self, person_id: UUID, other_person_id: UUID, merged: bool) -> None:
        """Intake merged two person records (PersonsMerged), or took the merge back (PersonsUnmerged)."""
        person = self.find_person(person_id) or Person(person_id=person_id)
        if person.record_merge(other_person_id) if merged else person.record_unmerge(other_person_id):
            self.save(person)

    def merged_with(self, person: Person) -> list[Person]:
        """The other records of the same person: those merged with it, and with those, and so on."""
        seen, found, pending = {str(person.person_id)}, [], list(person.same_as)
        while pending:
            person_id = pending.pop()
            if person_id in seen:
                continue
            seen.add(person_id)
            other = self.find_person(UUID(person_id))
            if other is not None:
                found.append(other)
                pending.extend(other.same_as)
        return found

    def find_person(self, person_id: UUID) -> Person | None:
        return self.find(Person, Person.create_id(person_id))

    def get_person(self, person_id: UUID) -> Person:
        found = self.find_person(person_id)
        if found is None:
            raise NotFound("person", person_id)
        return found

    def propose_return_aid(self, person_id: UUID, country: str, residence_status: str, adults: int, children: int,
                           justification: str, year: int, envelope_id: UUID | None, proposed_by: str) -> ReturnAid:
        """A funding officer proposes the aid of the scale in force, from a return-aid envelope of the year."""

        def propose() -> ReturnAid:
            person = self.get_person(person_id)
            envelope = (self.get_envelope(envelope_id) if envelope_id is not None
                        else self.envelope_for(Purpose.return_aid, year, country))
            require(envelope is not None, "envelope_open", f"no return-aid envelope is open for {country} in {year}")
            assert envelope is not None
            aid = ReturnAid.propose(self.rules_in_force(), envelope, year, person, country, residence_status, adults,
                                    children, justification, proposed_by, merged=self.merged_with(person))
            self.save(aid, person)  # the person's count is what refuses a racing second proposal
            return aid

        return retry_on_conflict(propose)

    @traced("funding decide return aid")
    def decide_return_aid(self, aid_id: UUID, decision: Decision | str, justification: str, decided_by: str,
                          year: int) -> ReturnAid:
        """An approver who is not the proposer grants (pays from the envelope) or rejects the aid."""

        def decide() -> ReturnAid:
            aid = self.get_return_aid(aid_id)
            person = self.get_person(aid.person_id)
            envelope_id = UUID(aid.envelope_id)
            with self.drawing_on(envelope_id):
                envelope = self.get_envelope(envelope_id)
                aid.decide(decision, self.rules_in_force(), envelope, year, person, justification, decided_by,
                           merged=self.merged_with(person))
                self.save(aid, person, envelope)
            return aid

        return retry_on_conflict(decide)

    def get_return_aid(self, aid_id: UUID) -> ReturnAid:
        return self.load(ReturnAid, aid_id, "return aid")

    # --- queries ------------------------------------------------------------------------------------

    def get_dossier(self, project_id: UUID) -> Dossier:
        found = self.find(Dossier, project_id)
        if found is None:
            raise NotFound("dossier", project_id)
        return found
