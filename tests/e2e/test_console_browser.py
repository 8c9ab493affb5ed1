"""The console in a real browser (Debian's chromium, driven by Selenium through chromedriver).

Real processes: the identity provider (deploy/idp/server.js on Node.js), intake on PostgreSQL and
Kafka, trusting the provider's keys, and the console. The intake officer signs in through the
provider's form, takes in a dossier (a refusal shown next to its field first), sees it on its page
with its timeline, records the promoter's consent there, finds it in the list, switches to English
and signs out; then the dossier's life, each step by the person whose job it is, up to the first
tranche paid, the business's launch and a visit, the follow-up officer's page and the auditor's
verification of every log (followup and audit run too). Screenshots of each page are
kept under var/screenshots/console/ (`make test` leaves them there to be looked at), and axe-core
(npm, pinned in tests/e2e/axe/package-lock.json) checks each page: no critical or serious violation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from deploy import idp
from services.funding.application import example_rules
from shared.auth import ensure_dev_keys, issue_token
from shared.settings import Settings
from tests.e2e.conftest import Service, StartedProcess, free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "var" / "screenshots" / "console"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE_DIR = Path(__file__).resolve().parent / "axe"
AXE = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"


def install_axe() -> None:
    if not AXE.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=AXE_DIR, check=True)


class Process(StartedProcess):
    """The provider or the console, started with its own command line and environment."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], url: str, log: Path):
        with open(log, "w") as out:
            process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        super().__init__(name, process, url, log)


@pytest.fixture
def console(start_service: Callable[..., Service], tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The provider, intake (trusting it) and the console, as real processes; their addresses."""
    idp.install()
    install_axe()
    keys_dir = tmp_path / "keys"
    issuer, console_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    started: list[Process] = []
    try:
        provider = Process("idp", idp.command(), idp.provider_env(issuer, console_url, keys_dir,
                                                                    tmp_path / idp.PARTNERS_FILE),
                           issuer, tmp_path / "idp.log")
        started.append(provider)
        provider.wait_ready()
        ensure_dev_keys(dev_key_settings(keys_dir))  # the development key, trusted beside the provider's
        for name, value in idp.services_trust_env(issuer, keys_dir).items():
            monkeypatch.setenv(name, value)
        intake, partners, funding = start_service("intake"), start_service("partners"), start_service("funding")
        followup = start_service("followup")
        for service in (intake, partners, funding, followup):
            service.wait_ready()
        audit = start_service("audit")  # once every service has made its signing key: the audit reads them
        audit.wait_ready()
        web = Process("console", [sys.executable, "-m", "console.app"], {
            **idp.console_env(issuer, console_url, keys_dir), "PASSERELLE_INTAKE_URL": intake.url,
            "PASSERELLE_PARTNERS_URL": partners.url, "PASSERELLE_FUNDING_URL": funding.url,
            "PASSERELLE_FOLLOWUP_URL": followup.url, "PASSERELLE_AUDIT_URL": audit.url,
            "PASSERELLE_KEYS_DIR": str(keys_dir)},
            console_url, tmp_path / "console.log")
        started.append(web)
        the_programme_is_set_up(intake.url, partners.url, funding.url, keys_dir, tmp_path / idp.PARTNERS_FILE)
        web.wait_ready()
        yield {"console": console_url, "idp": issuer, "intake": intake.url, "funding": funding.url,
               "keys_dir": str(keys_dir)}
    finally:
        for process in reversed(started):
            process.stop()


def the_programme_is_set_up(intake: str, partners: str, funding: str, keys_dir: Path, accounts: Path) -> None:
    """What an administrator and the seed do before anyone signs in: the rules in force, the year's
    envelope for Senegal, the two partners (the demo accounts support_idf and operator_sn are theirs)."""
    keys = dev_key_settings(keys_dir)

    def as_(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(keys, role, sub=f'setup-{role}')}"}

    rules = example_rules()
    assert httpx.post(f"{funding}/v1/rules", json=rules, headers=as_("admin")).status_code == 201
    assert httpx.post(f"{funding}/v1/envelopes", headers=as_("funding_approver"), json={
        "year": datetime.now(UTC).year, "country": "SN", "amount_cents": 5_000_000}).status_code == 201
    ids = {}
    for account, body in (("support_idf", {"name": "Île-de-France Entreprendre Solidaire", "kind": "support_structure",
                                           "region": "FR-IDF", "countries": [], "sectors": [], "capacity": 20}),
                          ("operator_sn", {"name": "Thiès Conseil", "kind": "local_operator", "countries": ["SN"],
                                           "sectors": [], "capacity": 20})):
        answer = httpx.post(f"{partners}/v1/partners", headers=as_("intake_officer"), json=body)
        assert answer.status_code == 201, answer.text
        ids[account] = answer.json()["id"]
    accounts.write_text(json.dumps(ids))
    deadline = time.monotonic() + 30
    while httpx.get(f"{intake}/v1/rules", headers=as_("intake_officer")).json()["version"] != rules["version"]:
        assert time.monotonic() < deadline, "intake did not adopt the published rules"
        time.sleep(0.2)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    assert Path(CHROMEDRIVER).exists(), "chromium-driver is missing: `make test` installs it (deploy/test.sh)"
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1000",
                     f"--user-data-dir={tmp_path / 'chromium'}", "--lang=fr-FR"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def accessible(driver) -> None:
    """axe-core on the page as it is: no critical or serious violation (WCAG 2.x A and AA rules)."""
    driver.execute_script(AXE.read_text())
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))}))), e => done([{id: 'axe failed', impact: 'critical',"
        " help: String(e), nodes: []}]));")
    bad = [v for v in found if v["impact"] in ("critical", "serious")]
    assert not bad, f"{driver.current_url}: {bad}"


def shot(driver, name: str, width: int = 1280) -> None:
    """The page checked for accessibility, and its picture (at a phone's width when asked)."""
    driver.set_window_size(width, 1000)
    accessible(driver)
    SHOTS.mkdir(parents=True, exist_ok=True)
    # The whole page, not only the window: the window grows to the page's height for the picture.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, max(1000, min(height + 40, 4000)))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(SHOTS / f"{name}.png"))
    driver.set_window_size(1280, 1000)


def test_the_intake_officer_works_in_the_browser(console: dict[str, str], browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, 20)
    started = time.monotonic()

    # Not signed in: the console sends the browser to the provider's sign-in form.
    driver.get(console["console"] + "/dossiers")
    wait.until(seen.presence_of_element_located((By.ID, "login")))
    assert driver.current_url.startswith(console["idp"] + "/interaction/")
    shot(driver, "01-sign-in")
    driver.find_element(By.ID, "login").send_keys("intake_officer")
    driver.find_element(By.ID, "password").send_keys("wrong")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(seen.presence_of_element_located((By.ID, "signin-error")))
    driver.find_element(By.ID, "password").send_keys("demo")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # Back on the page asked for, signed in; no token anywhere the page's scripts could read.
    wait.until(seen.url_to_be(console["console"] + "/dossiers"))
    assert "Inès Martin" in driver.find_element(By.CSS_SELECTOR, ".who").text
    assert driver.execute_script("return document.cookie") == ""  # the session cookie is HttpOnly
    assert driver.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0

    driver.find_element(By.LINK_TEXT, "Accueil").click()
    wait.until(seen.presence_of_element_located((By.ID, "queue")))
    shot(driver, "02-home")

    # The intake form: a phone number intake refuses, shown next to its field, with a summary on top.
    driver.find_element(By.LINK_TEXT, "Nouveau dossier").click()
    wait.until(seen.presence_of_element_located((By.ID, "given_name")))
    for field, value in (("given_name", "Awa"), ("family_name", "Diop"), ("phone", "appelez-moi"),
                         ("title", "Boutique d'alimentation à Thiès"), ("requested_amount", "5 500,00"),
                         ("own_contribution", "1 200"), ("planned_jobs", "3")):
        driver.find_element(By.ID, field).send_keys(value)
    # A date field's keyboard entry follows the browser's locale: the value is set as the picker would.
    driver.execute_script("arguments[0].value = '1988-03-14'", driver.find_element(By.ID, "birth_date"))
    Select(driver.find_element(By.ID, "residence_status")).select_by_value("regular")
    Select(driver.find_element(By.ID, "country")).select_by_visible_text("Sénégal")
    Select(driver.find_element(By.ID, "french_region")).select_by_visible_text("Île-de-France")
    Select(driver.find_element(By.ID, "sector")).select_by_value("trade")
    driver.find_element(By.CSS_SELECTOR, "form[action='/dossiers/new'] button[type=submit]").click()
    error = wait.until(seen.presence_of_element_located((By.ID, "phone-error")))
    assert "numéro de téléphone" in error.text
    assert driver.find_element(By.ID, "phone").get_attribute("aria-invalid") == "true"
    assert driver.find_element(By.CSS_SELECTOR, ".summary a[href='#phone']")
    assert driver.find_element(By.ID, "family_name").get_attribute("value") == "Diop"  # what was typed is kept
    shot(driver, "03-intake-refusal")

    phone = driver.find_element(By.ID, "phone")
    phone.clear()
    phone.send_keys("+221 77 123 45 67")
    driver.find_element(By.CSS_SELECTOR, "form[action='/dossiers/new'] button[type=submit]").click()
    wait.until(seen.presence_of_element_located((By.ID, "timeline")))
    page = driver.find_element(By.TAG_NAME, "main").text
    assert "Le dossier est pris en charge." in page and "Boutique d'alimentation à Thiès" in page
    assert "Éligible" in page and "Sénégal" in page and "Île-de-France" in page
    assert "5 500,00 €" in page.replace("\u202f", " ").replace("\u00a0", " ")
    timeline = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=timeline] tbody").text
    assert "Dossier reçu" in timeline and "Inès Martin" in timeline and "Éligibilité examinée" in timeline
    dossier_url = driver.current_url.split("?")[0]

    # The promoter's consent, recorded from the dossier's page.
    driver.find_element(By.CSS_SELECTOR, "label[for=purpose-funding]").click()
    driver.find_element(By.CSS_SELECTOR, "label[for=purpose-preparation]").click()
    dossier_id = dossier_url.rsplit("/", 1)[1]
    driver.find_element(By.CSS_SELECTOR, f"form[action='/dossiers/{dossier_id}/consent'] button").click()
    wait.until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), "Le consentement est enregistré."))
    consent = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=consent] ul").text
    assert "Financement" in consent and "Préparation" in consent and "Suivi" not in consent
    assert "Consentement enregistré" in driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=timeline]").text
    shot(driver, "04-dossier")
    shot(driver, "04-dossier-phone", width=390)

    # In the list, filtered by country (its status moves on by itself: partners assign it over Kafka).
    driver.find_element(By.LINK_TEXT, "Dossiers").click()
    Select(driver.find_element(By.ID, "country")).select_by_visible_text("Sénégal")
    driver.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait.until(seen.url_contains("country=SN"))
    row = driver.find_element(By.CSS_SELECTOR, "tbody tr")
    assert "Boutique d'alimentation à Thiès" in row.text and "Sénégal" in row.text
    assert any(word in row.text for word in ("Éligible", "Partenaires désignés"))
    assert row.find_element(By.TAG_NAME, "a").get_attribute("href") == dossier_url
    shot(driver, "05-dossiers")

    # English, kept on the same page.
    Select(driver.find_element(By.ID, "lang")).select_by_value("en")
    driver.find_element(By.CSS_SELECTOR, "form.language button").click()
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Dossiers"))
    assert driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    assert "Senegal" in driver.find_element(By.CSS_SELECTOR, "tbody tr").text
    assert driver.find_element(By.LINK_TEXT, "Home")
    shot(driver, "06-dossiers-english")

    # The services still take the development key's tokens beside the provider's (`make token`).
    keys = dev_key_settings(Path(console["keys_dir"]))
    answer = httpx.get(console["intake"] + "/v1/projects",
                       headers={"Authorization": f"Bearer {issue_token(keys, 'intake_officer', sub='cli')}"})
    assert answer.status_code == 200, answer.text

    # Signing out: the console's session and the provider's.
    driver.find_element(By.CSS_SELECTOR, "form[action='/auth/logout'] button").click()
    wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "button[name=logout]")))
    assert driver.find_element(By.TAG_NAME, "h1").text == "Sign out of Passerelle?"  # in the console's language
    driver.find_element(By.CSS_SELECTOR, "button[name=logout]").click()
    wait.until(seen.url_to_be(console["console"] + "/signed-out"))
    assert "You are signed out" in driver.find_element(By.TAG_NAME, "h1").text
    shot(driver, "07-signed-out")
    driver.get(console["console"] + "/")
    wait.until(seen.presence_of_element_located((By.ID, "login")))  # the provider asks again
    assert driver.find_element(By.CSS_SELECTOR, "label[for=login]").text == "Username"
    # The accessibility check can fail: an image without a text alternative is a critical violation.
    driver.execute_script("document.querySelector('main').appendChild(document.createElement('img'))")
    with pytest.raises(AssertionError, match="image-alt"):
        accessible(driver)
    # No Content-Security-Policy refusal, no failed resource (the refused form's own 422 aside).
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "status of 422" not in e["message"]]
    assert not severe, severe
    print(f"browser flow: {time.monotonic() - started:.1f}s")

    the_dossiers_life_by_whose_job_it_is(driver, wait, console, dossier_url)
    print(f"browser flows: {time.monotonic() - started:.1f}s")


def the_dossiers_life_by_whose_job_it_is(driver, wait, console: dict[str, str], dossier_url: str) -> None:
    """The dossier taken in above, through its life, each step by the person whose job it is."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.select import Select

    dossier_id = dossier_url.rsplit("/", 1)[1]

    def sign_in_as(account: str) -> None:
        driver.delete_all_cookies()  # the console's and the provider's: both on 127.0.0.1
        driver.get(console["console"] + "/")
        wait.until(seen.presence_of_element_located((By.ID, "login")))
        driver.find_element(By.ID, "login").send_keys(account)
        driver.find_element(By.ID, "password").send_keys("demo")
        driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(seen.url_to_be(console["console"] + "/"))

    def main_text() -> str:
        return driver.find_element(By.TAG_NAME, "main").text.replace("\u202f", " ").replace("\u00a0", " ")

    def until(url: str, check: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """The page, loaded again until it shows what the services tell each other over Kafka."""
        deadline = time.monotonic() + timeout
        while True:
            driver.get(url)
            if check():
                return
            assert time.monotonic() < deadline, f"{what}: {main_text()[:2000]}"
            time.sleep(0.3)

    def act(name: str, done: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f"form[action='/dossiers/{dossier_id}/acts/{name}'] button").click()
        wait.until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), done))

    def offered() -> set[str]:
        return {f.get_attribute("action").rsplit("/", 1)[1]
                for f in driver.find_elements(By.CSS_SELECTOR, "form[action*='/acts/']")}

    # The support structure: its dossiers on its home page, with what each lacks; it prepares this one.
    sign_in_as("support_idf")
    until(console["console"] + "/", lambda: bool(driver.find_elements(By.CSS_SELECTOR, f"a[href='/dossiers/{dossier_id}']")),
          "the dossier assigned to the support structure")
    assert "À préparer : bilan de compétences, formations, plan d'affaires" in main_text()
    assert "Awa" not in main_text()  # a partner never sees the person
    shot(driver, "10-support-home")
    driver.find_element(By.CSS_SELECTOR, f"a[href='/dossiers/{dossier_id}']").click()
    wait.until(seen.presence_of_element_located((By.ID, "preparation")))
    assert offered() == {"skills_review", "training", "business_plan"}
    driver.find_element(By.ID, "summary").send_keys("Commerçante expérimentée, gestion à renforcer.")
    act("skills_review", "Le bilan de compétences est enregistré.")
    driver.find_element(By.ID, "course").send_keys("Gestion d'une petite entreprise")
    driver.find_element(By.ID, "hours").send_keys("35")
    driver.execute_script("arguments[0].value = '2026-11-30'", driver.find_element(By.ID, "completed_on"))
    act("training", "La formation est enregistrée.")
    for field, value in (("line_1_label", "Stock de départ"), ("line_1_amount", "3 500,00"),
                         ("line_2_label", "Aménagement de la boutique"), ("line_2_amount", "2 000")):
        driver.find_element(By.ID, field).send_keys(value)
    shot(driver, "11-support-dossier")
    act("business_plan", "Le plan d'affaires est enregistré.")

    # The intake officer requests the feasibility study.
    sign_in_as("intake_officer")
    driver.get(dossier_url)
    assert "Stock de départ" in main_text() and "Île-de-France Entreprendre Solidaire" in main_text()
    act("request_study", "L'étude de faisabilité est demandée à l'opérateur local.")

    # The local operator concludes it; the preparation is not theirs to do.
    sign_in_as("operator_sn")
    assert dossier_id in driver.page_source  # on its home page
    driver.get(dossier_url)
    assert offered() == {"conclude_study"}
    driver.find_element(By.CSS_SELECTOR, "label[for=conclusion-feasible]").click()
    driver.find_element(By.ID, "study_summary").send_keys("Le marché de Thiès est porteur.")
    shot(driver, "12-operator-study")
    shot(driver, "12-operator-study-phone", width=390)  # the local operator is often on a phone
    act("conclude_study", "La conclusion de l'étude est enregistrée.")

    # The intake officer sends the dossier to the committee.
    sign_in_as("intake_officer")
    driver.get(dossier_url)
    act("send_to_committee", "Le dossier est envoyé au comité.")
    reference = driver.find_element(By.CSS_SELECTOR, "h1 .ref").text

    # The funding officer finds it in the committee's list and proposes the financing.
    sign_in_as("funding_officer")
    until(console["console"] + "/", lambda: reference in main_text(), "the dossier in the committee's list")
    shot(driver, "13-funding-committee")
    until(dossier_url, lambda: "propose" in offered(), "funding to hear the dossier is at the committee")
    driver.find_element(By.ID, "proposal_amount").send_keys("5 000,00")
    Select(driver.find_element(By.ID, "envelope_id")).select_by_index(1)
    driver.find_element(By.ID, "proposal_justification").send_keys("Projet viable, apport personnel solide.")
    act("propose", "La proposition de financement est transmise aux approbateurs.")
    # The proposer may not decide: no decision's button, and the reason.
    assert "decide" not in offered()
    assert "vous ne pouvez pas le décider vous-même (quatre yeux)" in driver.find_element(By.CSS_SELECTOR,
                                                                                         ".four-eyes").text
    shot(driver, "14-proposal-four-eyes")

    # A second approver finds it in their inbox, the proposer named, and approves it.
    sign_in_as("funding_approver_2")
    until(console["console"] + "/", lambda: reference in driver.find_element(By.CSS_SELECTOR,
                                                                           "section[aria-labelledby=inbox]").text,
          "the proposal in the approver's inbox")
    inbox = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=inbox] tbody").text
    assert "funding_officer" in inbox and "5 000,00 €" in inbox.replace("\u202f", " ").replace("\u00a0", " ")
    shot(driver, "15-approver-inbox")
    driver.find_element(By.CSS_SELECTOR, f"section[aria-labelledby=inbox] a[href='/dossiers/{dossier_id}#decide']").click()
    wait.until(seen.presence_of_element_located((By.ID, "decision_justification")))
    driver.find_element(By.CSS_SELECTOR, "label[for=decision-approve]").click()
    driver.find_element(By.ID, "decision_justification").send_keys("Conforme aux règles, enveloppe suffisante.")
    act("decide", "La décision du comité est enregistrée.")
    assert "Approuvé : 5 000,00 €, par Farid Haddad" in main_text()
    shot(driver, "16-approved")
    driver.find_element(By.LINK_TEXT, "Enveloppes").click()  # what the approval reserved, as a chart
    wait.until(seen.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Enveloppes budgétaires"))
    assert "Création d'entreprise · Sénégal" in main_text()
    shot(driver, "18-envelopes")
    driver.find_element(By.LINK_TEXT, "Registre").click()  # the ledger: who decided what, under which rules
    until(console["console"] + "/ledger", lambda: "Financement approuvé" in main_text(), "the approval in the ledger")
    assert "Farid Haddad" in main_text() and "funding_officer" in main_text()
    shot(driver, "19-ledger")

    # The funding officer records the agreement and pays the first tranche (its amount from the schedule).
    sign_in_as("funding_officer")
    driver.get(dossier_url)
    driver.execute_script("arguments[0].value = arguments[1]", driver.find_element(By.ID, "signed_on"),
                          datetime.now(UTC).date().isoformat())
    act("sign_agreement", "La convention est enregistrée : les tranches sont prévues.")
    assert "Verser la tranche 1" in main_text()
    driver.find_element(By.ID, "payee").send_keys("Awa Diop")
    driver.find_element(By.ID, "payment_reference").send_keys("VIR-2026-0001")
    act("pay_tranche", "Le versement de la tranche est enregistré.")
    assert "Versée à Awa Diop, réf. VIR-2026-0001" in driver.find_element(By.ID, "tranches").find_element(
        By.XPATH, "following-sibling::table").text
    assert "pay_tranche" not in offered()  # the next one waits for this one's reconciliation
    shot(driver, "17-tranche-paid")

    the_year_after_launch(driver, wait, console, dossier_id, sign_in_as, main_text, until)


def the_year_after_launch(driver, wait, console: dict[str, str], dossier_id: str, sign_in_as, main_text,
                          until) -> None:
    """The first tranche paid, the local operator launches the business and logs a visit on a phone; the
    follow-up officer sees it; the auditor sees the verification of every log."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.select import Select

    followup_url = f"{console['console']}/followups/{dossier_id}"
    link = f"a[href='/followups/{dossier_id}']"

    def send(act: str, done: str) -> None:
        driver.find_element(By.CSS_SELECTOR, f"form[action='/followups/{dossier_id}/acts/{act}'] button").click()
        wait.until(seen.text_to_be_present_in_element((By.CSS_SELECTOR, ".notice"), done))

    # The local operator: the follow-up on its home (followup hears of the payment over Kafka), the launch.
    sign_in_as("operator_sn")
    until(console["console"] + "/", lambda: bool(driver.find_elements(By.CSS_SELECTOR, link)),
          "the follow-up on the local operator's home")
    counts = " ".join(driver.find_element(By.CSS_SELECTOR, ".tally").text.split())
    assert "1 avec le lancement à enregistrer" in counts
    shot(driver, "20-operator-followups")
    driver.find_element(By.CSS_SELECTOR, link).click()
    wait.until(seen.presence_of_element_located((By.ID, "legal_form")))
    driver.find_element(By.ID, "legal_form").send_keys("Entreprise individuelle")
    driver.find_element(By.ID, "registration").send_keys("SN-THS-2026-A-0042")
    send("launch", "Le lancement de l'entreprise est enregistré")
    assert "Prévue" in main_text() and "Entreprise individuelle" in main_text()

    # The visit, on a phone-width screen; what followup answered is shown after sending.
    driver.set_window_size(390, 1000)
    driver.find_element(By.CSS_SELECTOR, "label[for=status-active]").click()
    driver.find_element(By.ID, "jobs_paid").clear()
    driver.find_element(By.ID, "jobs_paid").send_keys("2")
    Select(driver.find_element(By.ID, "revenue_band")).select_by_value("150_to_500")
    driver.find_element(By.ID, "observations").send_keys("Boutique ouverte, clientèle régulière.")
    shot(driver, "21-operator-visit-phone", width=390)
    driver.set_window_size(390, 1000)
    send("visit", "La visite est enregistrée.")
    visits = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=visits] tbody").text
    assert "En activité" in visits and "2 salariés, 0 familiaux" in visits
    shot(driver, "22-operator-visit-logged", width=390)

    # The follow-up officer: the follow-up in the queue, its plan and the visit.
    sign_in_as("followup_officer")
    assert driver.find_elements(By.CSS_SELECTOR, link)
    shot(driver, "23-followup-home")
    driver.get(followup_url)
    assert "Le plan de visites" in main_text() and "Faite" in main_text()
    assert "En activité" in driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=visits] tbody").text
    shot(driver, "24-followup")

    # The auditor: the verification of every log on their home.
    sign_in_as("auditor")
    until(console["console"] + "/", lambda: "Aucun problème trouvé" in main_text(), "the logs verified")
    table = driver.find_element(By.CSS_SELECTOR, "section[aria-labelledby=verification] tbody").text
    for service in ("Accueil (intake)", "Financement", "Suivi"):
        assert service in table
    shot(driver, "25-auditor-verification")


def dev_key_settings(keys_dir: Path) -> Settings:
    return Settings(keys_dir=keys_dir, data_dir=keys_dir.parent)
