"""Intake's application: the commands and queries on dossiers, over its event store."""

from __future__ import annotations

import json
import secrets
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.utils import get_topic

from services.intake.domain import (
    AdoptedRules,
    ClosureReason,
    Conclusion,
    ConsentPurpose,
    FinancingDecision,
    ForgetReason,
    Person,
    Project,
    RuleSet,
)
from services.intake.personal_data import KeyErased, PersonalDataVault
from shared.conflicts import retry_on_conflict
from shared.settings import Settings
from shared.store import ServiceApplication
from shared.telemetry import traced

DEFAULT_RULES = Path(__file__).with_name("default_rules.json")
_SUBMITTED = get_topic(Project.ProjectSubmitted)
# How stale the rules a process screens with may be: another process of intake (the worker)
# may have adopted a new version. The process that adopts it uses it at once.
RULES_REFRESH_SECONDS = 1.0


def load_rules(path: Path | None = None) -> RuleSet:
    return RuleSet.from_dict(json.loads((path or DEFAULT_RULES).read_text()))


class IntakeApplication(ServiceApplication):
    name = "intake"

    def __init__(self, settings: Settings, master_key: bytes, rules: RuleSet | None = None):
        super().__init__(settings)
        self.vault = PersonalDataVault(self.recorder, master_key)
        self.rules = rules or load_rules()

    # --- the rules in force ------------------------------------------------------------

    @property
    def rules(self) -> RuleSet:
        """The last rule set funding published, else the default one: the version in force now."""
        if time.monotonic() - self._rules_read_at > RULES_REFRESH_SECONDS:
            adopted = self.find(AdoptedRules, AdoptedRules.ID)
            published = adopted.in_force() if adopted else None
            if published is not None:
                self._rules = published
            self._rules_read_at = time.monotonic()
        return self._rules

    @rules.setter
    def rules(self, default: RuleSet) -> None:
        self._rules = default
        self._rules_read_at = float("-inf")

    def adopt_rules(self, version: str, countries: dict[str, dict[str, Any]], min_planned_jobs: int) -> None:
        """Funding published a version of the programme rules (ProgrammeRulesPublished)."""
        adopted = self.find(AdoptedRules, AdoptedRules.ID) or AdoptedRules()
        if adopted.adopt(version, countries, min_planned_jobs):
            self.save(adopted)
        published = adopted.in_force()
        if published is not None:
            self._rules, self._rules_read_at = published, time.monotonic()

    # --- commands -------------------------------------------------------------------

    @traced("intake submit_project")
    def submit_project(self, promoter: dict[str, Any], country: str, french_region: str, sector: str, title: str,
                       description: str, requested_amount_cents: int, own_contribution_cents: int,
                       planned_jobs: int) -> Project:
        """Take in a dossier under a new person record, screen it against the rules in force, and flag
        the person records whose identifiers match, in one transaction.

        Every dossier taken in is a new, random person record with its own key: whether two records
        are one person is an officer's call (`confirm_duplicate`), never a function of the identity.
        """

        def take_in() -> Project:
            person_id = uuid4()
            person = Person(person_id=person_id)
            sealed = self.vault.seal(person_id, promoter, new_person=True)
            identifiers = self.vault.identifiers(promoter)
            project = Project(
                reference=new_reference(), person_id=person_id, promoter_ciphertext=sealed.ciphertext,
                country=country, french_region=french_region, sector=sector, title=title, description=description,
                requested_amount_cents=requested_amount_cents, own_contribution_cents=own_contribution_cents,
                planned_jobs=planned_jobs,
            )
            person.open_dossier(project.id)
            matches = self.vault.matches(identifiers)
            for other_id, matched in self.vault.possible_duplicates(identifiers, matches).items():
                other = self.find(Person, UUID(other_id))
                if other is not None and not other.forgotten:
                    project.flag_possible_duplicate(other.id, other.project_ids, matched)
            project.screen(self.rules)
            # The person's key and identifiers commit with the events that use them; a record with the same
            # identifiers saved since they were read refuses the save, and the dossier is taken in again.
            self.save(project, person, data_keys=[sealed.new_key] if sealed.new_key else [],
                      identifiers=[(str(person_id), kind, digest) for kind, digest in identifiers],
                      identifiers_read=matches)
            return project

        return retry_on_conflict(take_in)

    def _projects(self, ids: list[str]) -> list[Project]:
        return [self.repository.get(UUID(i)) for i in ids]

    # --- possible duplicates -----------------------------------------------------------

    def index_earlier_persons(self, batch: int = 500) -> int:
        """Hash the identifiers of the person records taken in before duplicate detection, so that
        new dossiers are checked against them too; how many were indexed.

        Their data is read from their first dossier's ciphertext (a forgotten person's cannot be,
        and is skipped). Persons already indexed are skipped: running it again does nothing new.
        """
        indexed = self.recorder.indexed_persons()
        count, start = 0, 1
        while notifications := self.recorder.select_notifications(start, batch, topics=[_SUBMITTED]):
            for notification in notifications:
                submitted = self.mapper.to_domain_event(notification)
                if str(submitted.person_id) in indexed:
                    continue
                indexed.add(str(submitted.person_id))
                try:
                    promoter = self.vault.open(submitted.person_id, submitted.promoter_ciphertext)
                except KeyErased:
                    continue
                self.recorder.add_identifiers(str(submitted.person_id), self.vault.identifiers(promoter))
                count += 1
            start = notifications[-1].id + 1
        return count

    def confirm_duplicate(self, project_id: UUID, other_person_id: UUID) -> Project:
        """An officer confirms the dossier's promoter is the other person record: the records merge.

        What counts for "one person, one aid" is every dossier of the other record and of the
        records already merged with either of them.
        """

        def change() -> Project:
            project = self.get_project(project_id)
            person = self.load(Person, project.person_id, "person")
            other = self.load(Person, other_person_id, "person")
            same = {other.id, *map(UUID, other.same_as), *map(UUID, person.same_as)} - {person.id}
            records = [r for r in (self.find(Person, i) for i in same) if r is not None]
            dossiers = self._projects([i for r in records for i in r.project_ids])
            held = [str(p.id) for p in dossiers if p.id != project.id and p.counts_as_aid]
            project.confirm_duplicate(other.id, held)
            person.merge_with(other.id)
            other.merge_with(person.id)
            self.save(project, person, other)
            return project

        return retry_on_conflict(change)

    def dismiss_duplicate(self, project_id: UUID, other_person_id: UUID) -> Project:
        return self._change(project_id, "dismiss_duplicate", other_person_id=other_person_id)

    def undo_duplicate(self, project_id: UUID, other_person_id: UUID) -> Project:
        """Take back a confirmation: the two person records are two again."""

        def change() -> Project:
            project = self.get_project(project_id)
            project.undo_duplicate(other_person_id)
            person = self.load(Person, project.person_id, "person")
            other = self.load(Person, other_person_id, "person")
            person.unmerge(other.id)
            other.unmerge(person.id)
            self.save(project, person, other)
            return project

        return retry_on_conflict(change)

    def _change(self, project_id: UUID, verb: str, **kwargs: Any) -> Project:
        """An officer's command on a dossier. Funding, partners and followup also record their
        outcomes on it: when one lands between the load and the save, decide again on the new version."""

        def change() -> Project:
            project = self.get_project(project_id)
            getattr(project, verb)(**kwargs)
            self.save(project)
            return project

        return retry_on_conflict(change)

    def record_consent(self, project_id: UUID, purposes: list[ConsentPurpose], partners: list[str]) -> Project:
        return self._change(project_id, "record_consent", purposes=purposes, partners=partners)

    def withdraw_consent(self, project_id: UUID, purposes: list[ConsentPurpose], partners: list[str]) -> Project:
        return self._change(project_id, "withdraw_consent", purposes=purposes, partners=partners)

    def record_partners(self, project_id: UUID, support_structure_id: str, local_operator_id: str) -> None:
        """From the partners service: the dossier's support structure and local operator."""
        project = self.get_project(project_id)
        if project.record_partners(support_structure_id, local_operator_id):
            self.save(project)

    def record_followup(self, project_id: UUID) -> None:
        """From the followup service: the dossier's business is in follow-up."""
        project = self.get_project(project_id)
        if project.record_followup():
            self.save(project)

    def complete_skills_review(self, project_id: UUID, summary: str) -> Project:
        return self._change(project_id, "complete_skills_review", summary=summary)

    def record_training(self, project_id: UUID, course: str, hours: int, completed_on: str) -> Project:
        return self._change(project_id, "record_training", course=course, hours=hours, completed_on=completed_on)

    def record_business_plan(self, project_id: UUID, budget_lines: list[dict[str, Any]], own_contribution_cents: int,
                             planned_jobs: int) -> Project:
        return self._change(project_id, "record_business_plan", budget_lines=budget_lines,
                            own_contribution_cents=own_contribution_cents, planned_jobs=planned_jobs)

    def request_feasibility_study(self, project_id: UUID) -> Project:
        return self._change(project_id, "request_feasibility_study")

    def complete_feasibility_study(self, project_id: UUID, conclusion: Conclusion, summary: str) -> Project:
        return self._change(project_id, "complete_feasibility_study", conclusion=conclusion, summary=summary)

    def send_to_committee(self, project_id: UUID) -> Project:
        return self._change(project_id, "send_to_committee")

    def withdraw(self, project_id: UUID, reason: str) -> Project:
        return self._change(project_id, "withdraw", reason=reason)

    def close_project(self, project_id: UUID, reason: ClosureReason) -> Project:
        return self._change(project_id, "close", reason=reason)

    def record_feasibility_grant(self, project_id: UUID, outcome: str, amount_cents: int | None,
                                 payee: str | None, reasons: list[str], funding_version: int) -> None:
        """Funding's answer on the study's grant (FeasibilityGrantAwarded / Rejected)."""
        project = self.find(Project, project_id)
        if project is not None and project.record_feasibility_grant(outcome, amount_cents, payee, reasons,
                                                                    funding_version):
            self.save(project)

    def record_financing_decision(self, project_id: UUID, decision: FinancingDecision, amount_cents: int | None,
                                  rule_version: str, funding_version: int) -> None:
        """Funding's decision on the financing (FinancingApproved / Deferred / Rejected)."""
        project = self.find(Project, project_id)
        if project is not None and project.record_financing_decision(decision, amount_cents, rule_version,
                                                                     funding_version):
            self.save(project)

    def forget_person(self, person_id: UUID, reason: ForgetReason, note: str | None = None) -> list[UUID]:
        """Erase a person's personal data everywhere by deleting their keys and their identifiers' hashes;
        the ids of the person records forgotten.

        A person is every record an officer confirmed to be them (merged, and merged with those): each
        not yet forgotten gets its PersonForgotten, and all their keys and hashes go in the transaction that
        records them; a crash can leave neither an erased person whose key remains nor a missing key
        without its record. Undoing a merge later brings nothing back: the keys are gone. The note is
        sealed under the programme's notes key, so the reason outlives the persons' keys.
        """

        def forget() -> list[UUID]:
            person = self.load(Person, person_id, "person")
            records = [person] + [r for r in self.same_person(person) if not r.forgotten]
            for record in records:  # the record named first: forgetting it twice is refused
                record.forget(reason, self.vault.seal_note(record.id, note) if note else None)
            ids = [str(record.id) for record in records]
            self.save(*records, erase_keys=ids, erase_identifiers=ids)
            return [record.id for record in records]

        return retry_on_conflict(forget)

    def same_person(self, person: Person) -> list[Person]:
        """The other records of this person: those merged with it, and with those, and so on."""
        seen, found, pending = {str(person.id)}, [], list(person.same_as)
        while pending:
            other_id = pending.pop()
            if other_id in seen:
                continue
            seen.add(other_id)
            other = self.find(Person, UUID(other_id))
            if other is not None:
                found.append(other)
                pending.extend(other.same_as)
        return found

    # --- queries ---------------------------------------------------------------------

    def get_project(self, project_id: UUID) -> Project:
        return self.load(Project, project_id, "dossier")

    def promoter(self, project: Project) -> dict[str, Any] | None:
        """The promoter's personal data in clear, or None once the person is forgotten."""
        try:
            return self.vault.open(project.person_id, project.promoter_ciphertext)
        except KeyErased:
            return None


def new_reference() -> str:
    """A reference people can read out on the phone: PAS-<year>-<10 random hex digits>."""
    return f"PAS-{datetime.now(timezone.utc).year}-{secrets.token_hex(5).upper()}"
