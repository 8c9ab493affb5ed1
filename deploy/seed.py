"""Seed a demonstration programme through the services' own HTTP APIs (run by `make run`).

The programme rules and budget envelopes of the year (funding), support
structures in French regions, local operators in a few countries, a dozen
dossiers (one a second aid for the same person: flagged, then confirmed by an
officer, which closes it); then waits until the dossiers are assigned through Kafka and takes a
few of them further: through the feasibility study (funding awards its grant)
to the committee, where two are financed with four eyes (each has its first
tranche paid and reconciled) and one is deferred; their businesses are launched
and visited (followup), one found in difficulty (its alert suspends funding's
next tranche). Every request carries a stable Idempotency-Key,
so seeding twice (a second `make run` on the same var/) writes nothing new.

    python -m deploy.seed
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from services.funding.application import example_rules
from shared.auth import issue_token
from shared.settings import Settings, service_url

console = Console(width=160)

SUPPORT_STRUCTURES = [
    ("Association Île-de-France Entreprendre Solidaire", "FR-IDF", 40),
    ("Maison des Initiatives de Montreuil", "FR-IDF", 25),
    ("Rhône-Alpes Codéveloppement", "FR-ARA", 20),
    ("Provence Entreprendre Sud", "FR-PAC", 15),
    ("Nord Initiatives Migrantes", "FR-HDF", 15),
    ("Occitanie Création Solidaire", "FR-OCC", 10),
]
LOCAL_OPERATORS = [
    ("Thiès Conseil (bureau d'études)", ["SN"], ["trade", "agriculture", "transport"], 20),
    ("Dakar Appui PME", ["SN"], ["services", "crafts"], 15),
    ("Bamako Étude et Suivi", ["ML"], ["trade", "agriculture"], 15),
    ("Casablanca Initiatives", ["MA"], ["services", "trade", "tourism"], 10),
    ("Douala Accompagnement", ["CM"], ["trade", "transport"], 10),
    ("Abidjan Projets Retour", ["CI"], ["trade", "food"], 10),
]
DOSSIERS = [
    # given, family, birth, region, country, sector, title, requested, own, jobs
    ("Awa", "Diop", "1988-03-14", "FR-IDF", "SN", "trade", "Boutique d'alimentation à Thiès", 550_000, 120_000, 3),
    ("Moussa", "Traoré", "1979-11-02", "FR-IDF", "ML", "agriculture", "Maraîchage irrigué près de Kati", 700_000, 200_000, 4),
    ("Fatou", "Ndiaye", "1992-07-21", "FR-ARA", "SN", "services", "Salon de coiffure à Dakar", 400_000, 80_000, 2),
    ("Karim", "Benali", "1985-01-30", "FR-PAC", "MA", "tourism", "Maison d'hôtes à Essaouira", 680_000, 250_000, 3),
    ("Jean-Paul", "Mbarga", "1983-05-09", "FR-HDF", "CM", "transport", "Transport de marchandises à Douala", 650_000, 150_000, 2),
    ("Aminata", "Koné", "1990-09-17", "FR-OCC", "CI", "food", "Atelier de transformation d'attiéké", 500_000, 90_000, 5),
    ("Ousmane", "Sow", "1987-12-01", "FR-IDF", "SN", "transport", "Taxi-brousse Thiès–Dakar", 600_000, 140_000, 2),
    ("Mariam", "Coulibaly", "1995-02-25", "FR-IDF", "ML", "trade", "Commerce de tissus à Kayes", 350_000, 60_000, 2),
    ("Youssef", "Amrani", "1981-06-11", "FR-ARA", "MA", "services", "Atelier de réparation informatique", 450_000, 100_000, 2),
    ("Rose", "Pierre", "1986-08-08", "FR-IDF", "HT", "crafts", "Atelier d'artisanat à Jacmel", 300_000, 50_000, 2),
    ("Ibrahima", "Fall", "1975-04-04", "FR-IDF", "SN", "agriculture", "Élevage avicole à Mbour", 900_000, 100_000, 3),
    ("Awa", "Diop", "1988-03-14", "FR-IDF", "SN", "crafts", "Second dossier de la même promotrice", 300_000, 50_000, 1),
]
# The demo accounts of the identity provider that are partners: the local operator of Senegal and the
# Île-de-France support structure (their tokens carry these partners' ids).
DEMO_PARTNER_ACCOUNTS = {"operator_sn": LOCAL_OPERATORS[0][0], "support_idf": SUPPORT_STRUCTURES[0][0]}
# The dossier (by its place in DOSSIERS) of a promoter who already holds one: flagged as a possible
# duplicate when taken in, then confirmed by an officer, which closes it (one person, one aid).
SECOND_AID = 11
# The dossiers (by their place in DOSSIERS) taken through preparation and the feasibility study:
# always the same ones, so that seeding again replays the same requests and writes nothing.
ADVANCE = (0, 1, 2, 3)
# At the committee (by their place in DOSSIERS): financed, financed with a tranche paid (their
# businesses are then followed: one found active, one in difficulty), deferred.
FINANCE: tuple[int, ...] = ()
FINANCE_AND_PAY = (0, 1)
DEFER = (2,)
# Budget envelopes of the year: business creation per country and programme-wide, return aid.
ENVELOPES = [("business_creation", "SN", 30_000_000), ("business_creation", "ML", 20_000_000),
             ("business_creation", "MA", 10_000_000), ("business_creation", None, 15_000_000),
             ("return_aid", None, 5_000_000)]


class Seeder:
    def __init__(self) -> None:
        settings = Settings()
        self.headers = {"Authorization": f"Bearer {issue_token(settings, 'intake_officer', sub='demo-seed')}"}
        # Funding's people: four eyes need two of them (Idempotency-Keys are per person, so fixed ids).
        self.as_ = {role: {"Authorization": f"Bearer {issue_token(settings, role, sub=sub)}"}
                    for role, sub in (("admin", "demo-admin"), ("funding_officer", "demo-officer"),
                                      ("funding_approver", "demo-approver"))}
        self.http = httpx.Client(timeout=30)

    def post(self, service: str, path: str, key: str, body: dict[str, Any] | None = None,
             role: str | None = None) -> dict[str, Any]:
        headers = self.as_[role] if role else self.headers
        response = self.http.post(f"{service_url(service)}{path}", json=body, headers={**headers, "Idempotency-Key": key})
        if response.status_code >= 400:
            raise RuntimeError(f"POST {path}: {response.status_code} {response.text}")
        return response.json()

    def get(self, service: str, path: str, role: str | None = None) -> Any:
        response = self.http.get(f"{service_url(service)}{path}", headers=self.as_[role] if role else self.headers)
        response.raise_for_status()
        return response.json()

    def run(self) -> int:
        self.programme()
        registered: dict[str, str] = {}
        for i, (name, region, capacity) in enumerate(SUPPORT_STRUCTURES):
            registered[name] = self.post("partners", "/v1/partners", f"seed-support-{i}", {
                "name": name, "kind": "support_structure", "region": region, "countries": [], "sectors": [],
                "capacity": capacity})["id"]
        for i, (name, countries, sectors, capacity) in enumerate(LOCAL_OPERATORS):
            registered[name] = self.post("partners", "/v1/partners", f"seed-operator-{i}", {
                "name": name, "kind": "local_operator", "countries": countries, "sectors": sectors,
                "capacity": capacity})["id"]
        self.demo_partner_accounts(registered)
        ids = self.dossiers()

        dossiers = self.wait_for_assignments(ids)
        for i in ADVANCE:
            if dossiers[i]["status"] in ("assigned", "preparing", "feasibility"):
                self.advance(dossiers[i])
        self.committee([ids[i] for i in FINANCE], [ids[i] for i in FINANCE_AND_PAY], [ids[i] for i in DEFER])
        self.wait_for_intake([ids[i] for i in FINANCE + FINANCE_AND_PAY + DEFER], ("financed", "deferred"))
        self.follow_up([ids[i] for i in FINANCE_AND_PAY])
        self.show([self.get("intake", f"/v1/projects/{i}") for i in ids])
        self.show_envelopes()
        return 0

    def demo_partner_accounts(self, registered: dict[str, str]) -> None:
        """The partner id of each partner's demo account, for the identity provider (deploy/idp/server.js).

        Partners' ids are theirs (made when registered); the registrations are idempotent, so the ids
        are the same at every seeding of the same var/.
        """
        accounts = {account: registered[name] for account, name in DEMO_PARTNER_ACCOUNTS.items()}
        path = Settings().data_dir / "demo-partners.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(accounts, indent=2) + "\n")

    # --- funding --------------------------------------------------------------------------------

    def programme(self) -> None:
        """The rules in force and the year's envelopes; intake screens with the rules once it has read them."""
        rules = example_rules()
        self.post("funding", "/v1/rules", f"seed-rules-{rules['version']}", rules, role="admin")
        year = time.gmtime().tm_year
        for purpose, country, amount in ENVELOPES:
            self.post("funding", "/v1/envelopes", f"seed-envelope-{purpose}-{year}-{country or 'programme'}",
                      {"year": year, "purpose": purpose, "amount_cents": amount, **({"country": country} if country else {})},
                      role="funding_approver")
        deadline = time.monotonic() + 30
        while self.get("intake", "/v1/rules")["version"] != rules["version"] and time.monotonic() < deadline:
            time.sleep(0.2)

    def committee(self, finance: list[str], pay: list[str], defer: list[str]) -> None:
        """One officer proposes, another person decides; the agreement; a first tranche paid and reconciled."""
        for pid in finance + pay + defer:
            if not self.wait_for_financing(pid):
                console.print(f"[yellow]seed: dossier {pid} did not reach funding's committee; skipped[/yellow]")
                continue
            key = f"seed-{pid}"
            dossier = self.get("intake", f"/v1/projects/{pid}")
            state = self.get("funding", f"/v1/financing/{pid}", role="funding_officer")
            if state["financing"] == "requested":
                envelope = self.envelope_for(dossier["country"])
                self.post("funding", f"/v1/financing/{pid}/proposal", f"{key}-proposal",
                          {"amount_cents": dossier["requested_amount_cents"], "envelope_id": envelope,
                           "justification": "Plan solide, apport personnel versé, marché vérifié par l'étude."},
                          role="funding_officer")
            decision = "defer" if pid in defer else "approve"
            self.post("funding", f"/v1/financing/{pid}/decision", f"{key}-decision",
                      {"decision": decision, "justification": "Dossier complet; emplois prévus crédibles."
                       if decision == "approve" else "Revoir le plan de trésorerie avant le prochain comité."},
                      role="funding_approver")
            if decision == "defer":
                continue
            financing = self.post("funding", f"/v1/financing/{pid}/agreement", f"{key}-agreement",
                                  {"signed_on": time.strftime("%Y-%m-%d", time.gmtime())}, role="funding_officer")
            if pid in pay:
                first = financing["tranches"][0]
                self.post("funding", f"/v1/financing/{pid}/tranches", f"{key}-tranche-1",
                          {"amount_cents": first["amount_cents"], "payee": f"operator:{dossier['local_operator_id']}",
                           "payment_reference": f"VIR-{dossier['reference']}-1"}, role="funding_officer")
                self.post("funding", f"/v1/financing/{pid}/tranches/1/evidence", f"{key}-evidence-1",
                          {"items": [{"label": "Factures d'équipement", "amount_cents": first["amount_cents"]}]},
                          role="funding_officer")
                self.post("funding", f"/v1/financing/{pid}/tranches/1/reconciliation", f"{key}-reconcile-1",
                          role="funding_officer")

    def envelope_for(self, country: str) -> str:
        year = time.gmtime().tm_year
        envelopes = self.get("funding", f"/v1/envelopes?year={year}&purpose=business_creation", role="funding_officer")
        mine = [e for e in envelopes if e["country"] == country] or [e for e in envelopes if e["country"] is None]
        return mine[0]["id"]

    def wait_for_financing(self, pid: str, timeout: float = 30) -> bool:
        """Funding hears of the committee through Kafka: wait until it has the financing request."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.http.get(f"{service_url('funding')}/v1/financing/{pid}", headers=self.as_["funding_officer"])
            if response.status_code == 200 and response.json()["financing"] != "none":
                return True
            time.sleep(0.3)
        return False

    def wait_for_intake(self, ids: list[str], statuses: tuple[str, ...], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self.get("intake", f"/v1/projects/{i}")["status"] in statuses for i in ids):
                return
            time.sleep(0.3)

    def show_envelopes(self) -> None:
        table = Table(title="Budget envelopes (euros)")
        for column in ("purpose", "year", "country", "allocated", "reserved", "disbursed", "available"):
            table.add_column(column)
        time.sleep(1)  # the envelopes' list is a read model, a moment behind the decisions
        for e in self.get("funding", "/v1/envelopes", role="funding_officer"):
            table.add_row(e["purpose"], str(e["year"]), e["country"] or "all",
                          *(f"{e[k] / 100:,.2f}" for k in ("allocated_cents", "reserved_cents", "disbursed_cents",
                                                           "available_cents")))
        console.print(table)

    def wait_for_assignments(self, ids: list[str], timeout: float = 60) -> list[dict[str, Any]]:
        """Assignment happens in partners, through Kafka: wait until every eligible dossier has its partners."""
        deadline = time.monotonic() + timeout
        while True:
            dossiers = [self.get("intake", f"/v1/projects/{i}") for i in ids]
            waiting = [d for d in dossiers if d["status"] == "eligible"
                       and self.get_assignment_status(d["id"]) != "pending"]
            if not waiting or time.monotonic() > deadline:
                return dossiers
            time.sleep(0.3)

    def get_assignment_status(self, project_id: str) -> str | None:
        response = self.http.get(f"{service_url('partners')}/v1/assignments/{project_id}", headers=self.headers)
        return response.json().get("status") if response.status_code == 200 else None

    def dossiers(self) -> list[str]:
        """Take in the dossiers; the officer settles the second aid's possible duplicate."""
        ids = []
        for i, (given, family, birth, region, country, sector, title, requested, own, jobs) in enumerate(DOSSIERS):
            created = self.post("intake", "/v1/projects", f"seed-dossier-{i}", {
                "promoter": {"given_name": given, "family_name": family, "birth_date": birth,
                             "phone": f"+33 6 00 00 {i:02d} {i:02d}", "residence_status": "regular"},
                "country": country, "french_region": region, "sector": sector, "title": title,
                "description": "Dossier de démonstration", "requested_amount_cents": requested,
                "own_contribution_cents": own, "planned_jobs": jobs})
            ids.append(created["id"])
        self.settle_duplicates(ids[SECOND_AID])
        return ids

    def settle_duplicates(self, pid: str) -> None:
        """The officer's review of the possible duplicates flagged on a dossier: the same person."""
        for review in self.get("intake", f"/v1/projects/{pid}")["duplicate_reviews"]:
            if review["status"] == "flagged":
                self.post("intake", f"/v1/projects/{pid}/duplicates/{review['person_id']}/confirm",
                          f"seed-{pid}-same-person-{review['person_id']}")

    def advance(self, d: dict[str, Any]) -> None:
        """Preparation in France, then the feasibility study; the first two go to the committee."""
        pid, key = d["id"], f"seed-{d['id']}"
        self.post("intake", f"/v1/projects/{pid}/consent", f"{key}-consent",
                  {"purposes": ["funding", "follow_up"], "partners": [d["support_structure_id"], d["local_operator_id"]]})
        self.post("intake", f"/v1/projects/{pid}/skills-review", f"{key}-skills",
                  {"summary": "Expérience solide du commerce; gestion à renforcer."})
        self.post("intake", f"/v1/projects/{pid}/trainings", f"{key}-training",
                  {"course": "Gestion d'une petite entreprise", "hours": 24, "completed_on": "2026-10-15"})
        self.post("intake", f"/v1/projects/{pid}/business-plan", f"{key}-plan", {
            "budget_lines": [{"label": "Équipement", "amount_cents": d["requested_amount_cents"] // 2},
                             {"label": "Stock initial", "amount_cents": d["requested_amount_cents"] // 2}],
            "own_contribution_cents": d["own_contribution_cents"], "planned_jobs": d["planned_jobs"]})
        self.post("intake", f"/v1/projects/{pid}/feasibility-study", f"{key}-study")
        if d["country"] in ("SN", "ML"):
            self.post("intake", f"/v1/projects/{pid}/feasibility-study/conclusion", f"{key}-conclusion",
                      {"conclusion": "feasible", "summary": "Marché local vérifié, fournisseurs identifiés."})
            self.post("intake", f"/v1/projects/{pid}/committee", f"{key}-committee")

    def show(self, dossiers: list[dict[str, Any]]) -> None:
        names = {p["id"]: p["name"] for p in self.get("partners", "/v1/partners?limit=200")["items"]}
        table = Table(title="Demonstration dossiers")
        for column in ("reference", "country", "region", "status", "support structure", "local operator", "note"):
            table.add_column(column, overflow="fold")
        for d in dossiers:
            note = ""
            if d["status"] == "ineligible":
                note = "; ".join(d["eligibility"]["reasons"])
            elif d["status"] == "closed":
                note = f"closed: {d['closure_reason']}" + (
                    " (confirmed the same person as another dossier's)" if d["closure_reason"] == "duplicate_aid" else "")
            elif d.get("financing"):
                note = f"{d['financing']['decision']}" + (
                    f" {d['financing']['amount_cents'] / 100:,.0f} EUR" if d["financing"]["amount_cents"] else "")
            elif d.get("feasibility_grant"):
                note = f"feasibility grant {d['feasibility_grant']['outcome']}"
            elif d["status"] == "eligible" and self.get_assignment_status(d["id"]) == "pending":
                missing = self.get("partners", f"/v1/assignments/{d['id']}")["missing"]
                note = f"waiting for a {' and a '.join(m.replace('_', ' ') for m in missing)}"
            table.add_row(d["reference"], d["country"], d["french_region"], d["status"],
                          names.get(d["support_structure_id"], "-"), names.get(d["local_operator_id"], "-"), note)
        console.print(table)

    # --- followup ---------------------------------------------------------------------------------

    def follow_up(self, ids: list[str], timeout: float = 60) -> None:
        """Launch the businesses whose first tranche funding paid, and log a first visit of each.

        Follow-ups open only on funding's FundsDisbursed, so this takes the dossiers funding
        financed; without funding running there is none, and it says so. The first business
        is found active, the second in difficulty: its alert suspends the next tranche.
        """
        if not self._answers("funding") or not self._answers("followup"):
            console.print("[dim]follow-up demo skipped: it follows the dossiers funding pays (funding and "
                          "followup must both run)[/dim]")
            return
        officer = {"Authorization": f"Bearer {issue_token(Settings(), 'followup_officer', sub='demo-followup')}"}
        deadline = time.monotonic() + timeout
        opened: list[str] = []
        while time.monotonic() < deadline:  # each opens when followup reads its first tranche
            opened = [i for i in ids if self.http.get(f"{service_url('followup')}/v1/followups/{i}",
                                                     headers=officer).status_code == 200]
            if len(opened) == len(ids):
                break
            time.sleep(0.5)
        today = date.today().isoformat()
        for n, project_id in enumerate(opened):
            url, key = f"{service_url('followup')}/v1/followups/{project_id}", f"seed-followup-{project_id}"
            self.http.post(f"{url}/launch", headers={**officer, "Idempotency-Key": f"{key}-launch"}, json={
                "launched_on": today, "legal_form": "entreprise individuelle", "registration": f"RC-DEMO-{n + 1:04d}",
                "initial_jobs": 1, "own_contribution_cents": 100_000})
            status = "active" if n % 2 == 0 else "in_difficulty"
            self.http.post(f"{url}/visits", headers={**officer, "Idempotency-Key": f"{key}-visit-1"}, json={
                "visit_id": f"demo-{project_id}-1", "visited_on": today, "business_status": status,
                "jobs": {"paid": 2, "family": 1}, "revenue_band": "150_to_500",
                "observations": "Activité démarrée, premiers clients." if status == "active"
                else "Fournisseur défaillant, stock insuffisant.",
                "recommendations": "Tenir un cahier de caisse."})
        console.print(f"follow-up: {len(opened)} business(es) launched with a first visit")

    def _answers(self, service: str) -> bool:
        try:
            return self.http.get(f"{service_url(service)}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


if __name__ == "__main__":
    sys.exit(Seeder().run())
