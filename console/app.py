"""The console's web application: server-rendered pages (FastAPI + Jinja2), no script of its own needed.

Every page is built from the services' HTTP APIs with the signed-in person's access token; the
console keeps only sessions. French by default, English selectable.
"""

from __future__ import annotations

import hmac
import io
import logging
import re
import secrets
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import httpx
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from console import words
from console.oidc import OpenIDClient, SignInFailed
from console.services import Refused, Services, SignInAgain, Unavailable
from console.sessions import COOKIE, Session, SessionStore
from console.settings import ConsoleSettings
from shared.geography import FRENCH_REGIONS

log = logging.getLogger("console")

HERE = Path(__file__).resolve().parent
LANGUAGES = ("fr", "en")
PAGE_SIZE = 25
# The dossiers an intake officer acts on, by status: what waits for them (the home page's queue).
INTAKE_QUEUE = (
    ("eligible", words.N_("Éligibles : consentement et partenaires à suivre")),
    ("preparing", words.N_("En préparation : l'étude de faisabilité à demander")),
    ("feasibility", words.N_("En étude de faisabilité : l'envoi au comité")),
)
# What the dossier page says after an act (`?done=`).
DONE = {"taken_in": words.N_("Le dossier est pris en charge."),
        "consent": words.N_("Le consentement est enregistré."),
        "confirm_duplicate": words.N_("Le doublon est confirmé : une seule personne."),
        "dismiss_duplicate": words.N_("Le doublon est écarté : deux personnes."),
        "undo_duplicate": words.N_("La confirmation du doublon est annulée."),
        "request_study": words.N_("L'étude de faisabilité est demandée à l'opérateur local."),
        "send_to_committee": words.N_("Le dossier est envoyé au comité."),
        "withdraw": words.N_("Le dossier est retiré."),
        "close": words.N_("Le dossier est clos."),
        "skills_review": words.N_("Le bilan de compétences est enregistré."),
        "training": words.N_("La formation est enregistrée."),
        "business_plan": words.N_("Le plan d'affaires est enregistré."),
        "conclude_study": words.N_("La conclusion de l'étude est enregistrée."),
        "propose": words.N_("La proposition de financement est transmise aux approbateurs."),
        "decide": words.N_("La décision du comité est enregistrée."),
        "sign_agreement": words.N_("La convention est enregistrée : les tranches sont prévues."),
        "pay_tranche": words.N_("Le versement de la tranche est enregistré."),
        "record_evidence": words.N_("Les justificatifs sont enregistrés."),
        "reconcile": words.N_("La tranche est rapprochée.")}
# What the follow-up page says after an act (`?done=`): a visit's is what followup answered it.
FOLLOWUP_DONE = {"launch": words.N_("Le lancement de l'entreprise est enregistré : les visites sont prévues."),
                 "resolve": words.N_("La version gardée de la visite est enregistrée."),
                 **{f"visit_{k}": v for k, v in words.VISIT_RESULTS.items()}}
# What a partner's dossier waits for from them, by its status (a list shows no more than the status).
SUPPORT_LACKS = {
    "assigned": words.N_("À préparer : bilan de compétences, formations, plan d'affaires"),
    "preparing": words.N_("En préparation : le plan d'affaires, s'il manque encore"),
}
OPERATOR_LACKS = {"feasibility": words.N_("Étude de faisabilité : la conclusion, si elle manque encore")}
QUEUE_COUNT_LIMIT = 200
LEDGER_PAGES = 4  # of 500 decisions of a kind, for the approvers' inbox (a bounded number of calls)  # a count above this reads "200 et plus" (one API call per line of the queue)


def translations() -> dict[str, NullTranslations]:
    """The message catalogues, compiled from their .po files when the console starts."""
    found: dict[str, NullTranslations] = {"fr": NullTranslations()}
    for lang in LANGUAGES[1:]:
        with open(HERE / "locale" / lang / "LC_MESSAGES" / "messages.po", "rb") as po:
            catalog = read_po(po, locale=lang)
        mo = io.BytesIO()
        write_mo(mo, catalog)
        mo.seek(0)
        found[lang] = Translations(fp=mo)
    return found


def local_path(target: str | None, fallback: str = "/") -> str:
    """A page of the console to go back to: a path here, never another site (`//host`, `https:`)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return fallback
    return target


# --- the intake form ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    loc: tuple[str, ...]  # where the API names it in a 422's `errors`
    hint: str  # the refusal's sentence, next to the field


N_ = words.N_
INTAKE_FIELDS = (
    FormField("given_name", N_("Prénom"), ("promoter", "given_name"), N_("Indiquez le prénom.")),
    FormField("family_name", N_("Nom"), ("promoter", "family_name"), N_("Indiquez le nom de famille.")),
    FormField("birth_date", N_("Date de naissance"), ("promoter", "birth_date"),
              N_("Indiquez une date de naissance entre 1900 et aujourd'hui.")),
    FormField("phone", N_("Téléphone"), ("promoter", "phone"),
              N_("Indiquez un numéro de téléphone : des chiffres, des espaces, un + au début.")),
    FormField("email", N_("Adresse électronique (facultative)"), ("promoter", "email"),
              N_("Indiquez une adresse électronique valide, par exemple nom@exemple.fr.")),
    FormField("residence_status", N_("Situation de séjour"), ("promoter", "residence_status"),
              N_("Choisissez la situation de séjour.")),
    FormField("document_number", N_("Numéro de pièce d'identité (facultatif)"), ("promoter", "document_number"),
              N_("Un numéro de pièce d'identité : lettres, chiffres, espaces, points et tirets.")),
    FormField("country", N_("Pays d'origine du projet"), ("country",), N_("Choisissez un pays du programme.")),
    FormField("french_region", N_("Région de résidence en France"), ("french_region",),
              N_("Choisissez une région.")),
    FormField("sector", N_("Secteur"), ("sector",), N_("Choisissez un secteur.")),
    FormField("title", N_("Intitulé du projet"), ("title",),
              N_("Donnez un intitulé au projet (200 caractères au plus).")),
    FormField("description", N_("Description (facultative)"), ("description",),
              N_("La description fait 5 000 caractères au plus.")),
    FormField("requested_amount", N_("Montant demandé (€)"), ("requested_amount_cents",),
              N_("Indiquez un montant en euros, par exemple 5 500,00.")),
    FormField("own_contribution", N_("Apport personnel (€)"), ("own_contribution_cents",),
              N_("Indiquez un montant en euros, par exemple 1 200,00.")),
    FormField("planned_jobs", N_("Emplois prévus"), ("planned_jobs",), N_("Indiquez un nombre entier d'emplois.")),
)
FIELD_BY_LOC = {f.loc: f for f in INTAKE_FIELDS}
PROMOTER_FIELDS = ("given_name", "family_name", "birth_date", "phone", "email", "residence_status", "document_number")
OPTIONAL = ("email", "document_number", "description")
_AMOUNT = re.compile(r"^\d{1,9}([.,]\d{1,2})?$")


def euros_to_cents(text: str) -> int | None:
    """"5 500,00 €", "5500.5" or "5500" as cents; None when it is not an amount."""
    cleaned = re.sub(r"[\s\u00a0\u202f€]", "", text)
    if not _AMOUNT.match(cleaned):
        return None
    try:
        return int(Decimal(cleaned.replace(",", ".")) * 100)
    except InvalidOperation:
        return None


def intake_body(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The API's request body from the form, and the fields the console itself refuses (not numbers)."""
    errors: dict[str, str] = {}
    promoter: dict[str, Any] = {k: form.get(k, "") for k in PROMOTER_FIELDS}
    for name in ("email", "document_number"):
        if not promoter[name]:
            promoter[name] = None
    body: dict[str, Any] = {"promoter": promoter, **{k: form.get(k, "") for k in
                                                     ("country", "french_region", "sector", "title", "description")}}
    for name, key in (("requested_amount", "requested_amount_cents"), ("own_contribution", "own_contribution_cents")):
        cents = euros_to_cents(form.get(name, ""))
        if cents is None:
            errors[name] = next(f.hint for f in INTAKE_FIELDS if f.name == name)
        body[key] = cents
    jobs = form.get("planned_jobs", "").strip()
    if jobs.isdigit():
        body["planned_jobs"] = int(jobs)
    else:
        errors["planned_jobs"] = next(f.hint for f in INTAKE_FIELDS if f.name == "planned_jobs")
    return body, errors


def refusals(problem: Refused) -> dict[str, str]:
    """The fields a 422 names, each with its sentence (the API's own wording is never shown)."""
    found: dict[str, str] = {}
    for error in problem.errors:
        loc = tuple(str(p) for p in error.get("loc", ()) if p != "body")
        field = FIELD_BY_LOC.get(loc) or next((f for f in INTAKE_FIELDS if loc[: len(f.loc)] == f.loc), None)
        if field is not None:
            found.setdefault(field.name, field.hint)
    return found


# --- the acts on a dossier ---------------------------------------------------------------------


@dataclass(frozen=True)
class Act:
    service: str
    path: str  # {id}: the dossier; {person}: the other person record of a possible duplicate


ACTS = {
    "confirm_duplicate": Act("intake", "/v1/projects/{id}/duplicates/{person}/confirm"),
    "dismiss_duplicate": Act("intake", "/v1/projects/{id}/duplicates/{person}/dismiss"),
    "undo_duplicate": Act("intake", "/v1/projects/{id}/duplicates/{person}/undo"),
    "request_study": Act("intake", "/v1/projects/{id}/feasibility-study"),
    "send_to_committee": Act("intake", "/v1/projects/{id}/committee"),
    "withdraw": Act("intake", "/v1/projects/{id}/withdraw"),
    "close": Act("intake", "/v1/projects/{id}/close"),
    "skills_review": Act("intake", "/v1/projects/{id}/skills-review"),
    "training": Act("intake", "/v1/projects/{id}/trainings"),
    "business_plan": Act("intake", "/v1/projects/{id}/business-plan"),
    "conclude_study": Act("intake", "/v1/projects/{id}/feasibility-study/conclusion"),
    "propose": Act("funding", "/v1/financing/{id}/proposal"),
    "decide": Act("funding", "/v1/financing/{id}/decision"),
    "sign_agreement": Act("funding", "/v1/financing/{id}/agreement"),
    "pay_tranche": Act("funding", "/v1/financing/{id}/tranches"),
    "record_evidence": Act("funding", "/v1/financing/{id}/tranches/{tranche}/evidence"),
    "reconcile": Act("funding", "/v1/financing/{id}/tranches/{tranche}/reconciliation"),
}
BUDGET_LINES = 8  # the business plan form's lines (empty ones are left out)


def act_body(act: str, form: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The API's request body for an act from its form, or the sentence saying what to correct."""
    text = form.get
    if act in ("confirm_duplicate", "dismiss_duplicate", "undo_duplicate", "request_study", "send_to_committee",
               "reconcile"):
        return None, None
    if act == "withdraw":
        reason = text("reason", "")
        return ({"reason": reason}, None) if 0 < len(reason) <= 500 else (
            None, N_("Donnez la raison du retrait (500 caractères au plus)."))
    if act == "close":
        reason = text("reason", "")
        return ({"reason": reason}, None) if reason in words.CLOSURE_REASONS else (
            None, N_("Choisissez la raison de la clôture."))
    if act == "skills_review":
        summary = text("summary", "")
        return ({"summary": summary}, None) if 0 < len(summary) <= 5000 else (
            None, N_("Résumez le bilan de compétences (5 000 caractères au plus)."))
    if act == "training":
        course, hours, on = text("course", ""), text("hours", ""), text("completed_on", "")
        if not 0 < len(course) <= 200 or not hours.isdigit() or not 1 <= int(hours) <= 2000 \
                or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", on):
            return None, N_("Indiquez l'intitulé de la formation, sa durée en heures (1 à 2 000) et sa date de fin.")
        return {"course": course, "hours": int(hours), "completed_on": on}, None
    if act == "business_plan":
        lines = []
        for n in range(1, BUDGET_LINES + 1):
            label, amount = text(f"line_{n}_label", ""), text(f"line_{n}_amount", "")
            if not label and not amount:
                continue
            cents = euros_to_cents(amount)
            if not label or cents is None:
                return None, N_("Chaque ligne de budget a un libellé et un montant en euros.")
            lines.append({"label": label[:200], "amount_cents": cents})
        own, jobs = euros_to_cents(text("own_contribution", "")), text("planned_jobs", "")
        if not lines or own is None or not jobs.isdigit():
            return None, N_("Le plan d'affaires a au moins une ligne de budget, un apport personnel en euros "
                            "et un nombre d'emplois prévus.")
        return {"budget_lines": lines, "own_contribution_cents": own, "planned_jobs": int(jobs)}, None
    if act == "conclude_study":
        conclusion = text("conclusion", "")
        if conclusion not in words.CONCLUSIONS or len(text("summary", "")) > 5000:
            return None, N_("Choisissez la conclusion de l'étude (le résumé fait 5 000 caractères au plus).")
        return {"conclusion": conclusion, "summary": text("summary", "")}, None
    if act == "propose":
        cents, justification = euros_to_cents(text("amount", "")), text("justification", "")
        try:
            envelope = str(UUID(text("envelope_id", "")))
        except ValueError:
            envelope = ""
        if not cents or not envelope or not 0 < len(justification) <= 2000:
            return None, N_("Indiquez le montant en euros, l'enveloppe et la justification de la proposition.")
        return {"amount_cents": cents, "envelope_id": envelope, "justification": justification}, None
    if act == "decide":
        decision, justification = text("decision", ""), text("justification", "")
        if decision not in words.DECISIONS or not 0 < len(justification) <= 2000:
            return None, N_("Choisissez la décision et donnez sa justification.")
        return {"decision": decision, "justification": justification}, None
    if act == "sign_agreement":
        signed_on = text("signed_on", "")
        return ({"signed_on": signed_on}, None) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", signed_on) else (
            None, N_("Indiquez la date de signature de la convention."))
    if act == "pay_tranche":
        cents, payee, reference = euros_to_cents(text("amount", "")), text("payee", ""), text("payment_reference", "")
        if not cents or not 0 < len(payee) <= 200 or not 0 < len(reference) <= 100:
            return None, N_("Indiquez le montant en euros, le bénéficiaire et la référence du paiement.")
        return {"amount_cents": cents, "payee": payee, "payment_reference": reference}, None
    if act == "record_evidence":
        label, cents = text("label", ""), euros_to_cents(text("amount", ""))
        if not 0 < len(label) <= 200 or not cents:
            return None, N_("Décrivez le justificatif et indiquez son montant en euros.")
        return {"items": [{"label": label, "amount_cents": cents}]}, None
    raise KeyError(act)


# The acts of the year after launch, on a follow-up ({id}: the dossier; {visit}: a visit's id).
FOLLOWUP_ACTS = {
    "launch": "/v1/followups/{id}/launch",
    "visit": "/v1/followups/{id}/visits",
    "resolve": "/v1/followups/{id}/visits/{visit}/resolution",
}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_VISIT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def _count(text: str, most: int = 10_000) -> int | None:
    return int(text) if text.isdigit() and int(text) <= most else None


def followup_body(act: str, form: dict[str, str]) -> tuple[dict[str, Any] | None, str | None]:
    """The API's request body for an act on a follow-up from its form, or the sentence saying what to correct."""
    text = form.get
    if act == "launch":
        on, legal_form, registration = text("launched_on", ""), text("legal_form", ""), text("registration", "")
        jobs = _count(text("initial_jobs", ""))
        if not _DAY.match(on) or not 0 < len(legal_form) <= 100 or not 0 < len(registration) <= 100 or jobs is None:
            return None, N_("Indiquez la date du lancement, la forme juridique, le numéro d'immatriculation et le "
                            "nombre d'emplois au lancement.")
        return {"launched_on": on, "legal_form": legal_form, "registration": registration, "initial_jobs": jobs}, None
    if act == "visit":
        paid, family = _count(text("jobs_paid", "")), _count(text("jobs_family", ""))
        if not _VISIT_ID.match(text("visit_id", "")) or not _DAY.match(text("visited_on", "")) \
                or text("business_status", "") not in words.BUSINESS_STATUSES \
                or text("revenue_band", "") not in words.REVENUE_BANDS or paid is None or family is None \
                or len(text("observations", "")) > 5000 or len(text("recommendations", "")) > 5000:
            return None, N_("Indiquez la date de la visite, l'état de l'entreprise, ses emplois (des nombres entiers) "
                            "et son chiffre d'affaires ; les observations font 5 000 caractères au plus.")
        return {"visit_id": text("visit_id"), "visited_on": text("visited_on"),
                "business_status": text("business_status"), "jobs": {"paid": paid, "family": family},
                "revenue_band": text("revenue_band"), "observations": text("observations", ""),
                "recommendations": text("recommendations", "")}, None
    if act == "resolve":
        if text("keep", "") not in ("recorded", "received") or not _VISIT_ID.match(text("visit_id", "")):
            return None, N_("Choisissez la version de la visite à garder.")
        return {"keep": text("keep")}, None
    raise KeyError(act)


def offered_followup_acts(user: dict[str, Any], f: dict[str, Any]) -> set[str]:
    """The acts this person may do on the follow-up in its stage (the service decides in the end): its local
    operator or a follow-up officer launches and logs visits; an officer keeps one version of a visit."""
    roles, partner = set(user["roles"]), user.get("partner_id")
    in_the_field = "followup_officer" in roles or (partner is not None and partner == f.get("local_operator_id"))
    acts: set[str] = set()
    if in_the_field and f["stage"] == "opened" and not f.get("launch"):
        acts.add("launch")
    if in_the_field and f["stage"] == "launched":
        acts.add("visit")
    if "followup_officer" in roles and f.get("conflicts"):
        acts.add("resolve")
    return acts


def followup_order(f: dict[str, Any]) -> tuple[bool, bool, int, bool, str]:
    """The follow-up officer's order: open alerts, then overdue visits (most first), versions to settle, the rest."""
    return (f["open_alert_id"] is None, f["visits_overdue"] == 0, -f["visits_overdue"], f["conflicts"] == 0,
            str(f["project_id"]))


def is_human(actor: str | None, issuer: str, sub: str) -> bool:
    """Whether an actor recorded by the services is this person (`user:<issuer>#<subject>`, or the older
    `user:<subject>`)."""
    return actor in (f"user:{issuer}#{sub}", f"user:{sub}")


def offered_acts(user: dict[str, Any], issuer: str, d: dict[str, Any], financing: dict[str, Any] | None) -> set[str]:
    """The acts this person may do on the dossier in its state: the page offers these and only these
    (the services decide in the end)."""
    roles, partner, status = set(user["roles"]), user.get("partner_id"), d["status"]
    is_open = status not in ("closed", "withdrawn")
    acts: set[str] = set()
    if "intake_officer" in roles:
        if is_open:
            acts |= {"withdraw", "close"}
        if status == "preparing" and d.get("business_plan"):
            acts.add("request_study")
        if status == "feasibility" and d.get("feasibility_conclusion") == "feasible" \
                and "funding" in (d.get("consent") or {}).get("purposes", []):
            acts.add("send_to_committee")
    if partner and partner == d.get("support_structure_id") and status in ("assigned", "preparing"):
        acts |= {"skills_review", "training", "business_plan"}
    if partner and partner == d.get("local_operator_id") and status == "feasibility" \
            and not d.get("feasibility_conclusion"):
        acts.add("conclude_study")
    money = (financing or {}).get("financing")
    if "funding_officer" in roles and money in ("requested", "deferred") and status in ("at_committee", "deferred"):
        acts.add("propose")
    if "funding_officer" in roles and money == "approved":
        acts.add("sign_agreement")
    if "funding_officer" in roles and money == "agreed":
        tranches = (financing or {}).get("tranches", [])
        following = next((t for t in tranches if not t["disbursed"]), None)
        if following and not financing.get("suspended") and all(
                t["reconciled"] for t in tranches if t["tranche"] < following["tranche"]):
            acts.add("pay_tranche")
        if any(t["disbursed"] and not t["reconciled"] for t in tranches):
            acts.add("record_evidence")
        if any(t["disbursed"] and not t["reconciled"] and t["evidenced_cents"] >= t["amount_cents"] for t in tranches):
            acts.add("reconcile")
    proposal = (financing or {}).get("proposal") or {}
    if "funding_approver" in roles and money == "proposed" \
            and not is_human(proposal.get("proposed_by"), issuer, user["sub"]):
        acts.add("decide")
    return acts


# --- the application ---------------------------------------------------------------------------


def create_app(settings: ConsoleSettings | None = None, services: Services | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    catalogues = translations()
    store = SessionStore(settings.session_idle_seconds)
    oidc = OpenIDClient(settings)
    api = services or Services(settings)
    templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(),
                            trim_blocks=True, lstrip_blocks=True)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await api.close()

    app = FastAPI(title="Passerelle console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.sessions, app.state.services, app.state.oidc = store, api, oidc
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    csp = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
           f"form-action 'self' {settings.oidc_issuer}; frame-ancestors 'none'; base-uri 'none'")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
        if settings.secure_cookies:
            response.headers["Strict-Transport-Security"] = "max-age=31536000"
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        return response

    # --- sessions, language, CSRF ---------------------------------------------------------------

    def session_of(request: Request) -> Session | None:
        return store.get(request.cookies.get(COOKIE))

    def lang_of(request: Request, session: Session | None) -> str:
        if session is not None:
            return session.lang
        asked = request.cookies.get("passerelle_lang")
        return asked if asked in LANGUAGES else "fr"

    def with_cookie(response: Response, session: Session) -> Response:
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="lax", secure=settings.secure_cookies,
                            path="/")
        return response

    def render(request: Request, session: Session | None, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        lang = lang_of(request, session)
        t = catalogues[lang]
        html = templates.get_template(template).render(
            _=t.gettext, lang=lang, session=session, user=session.user if session and session.signed_in else None,
            csrf=session.csrf if session else "", path=request.url.path,
            here=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            words=words, amount=lambda c: words.amount(c, lang), day=lambda d: words.day(d, lang),
            moment=lambda d: words.moment(d, lang), country=lambda c: words.country(c, lang),
            region=words.region, status_word=lambda s: t.gettext(words.STATUSES.get(s, s)),
            roles_words=lambda roles: ", ".join(t.gettext(words.ROLES.get(r, r)) for r in roles), **context)
        response = HTMLResponse(html, status_code=status)
        return with_cookie(response, session) if session is not None else response

    async def form_of(request: Request, session: Session | None) -> dict[str, str] | None:
        """The posted form, or None when its CSRF token is not the session's."""
        form = await request.form()
        sent = str(form.get("csrf", ""))
        if session is None or not sent or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            return None
        return {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}

    def sign_in_again(next_path: str) -> RedirectResponse:
        return RedirectResponse("/auth/login?" + urlencode({"next": local_path(next_path)}), status_code=303)

    def forbidden_form(request: Request, session: Session | None) -> HTMLResponse:
        return render(request, session, "message.html", status=403,
                      title=words.N_("Ce formulaire a expiré"),
                      message=words.N_("Rechargez la page et recommencez : le formulaire n'était plus valable."))

    async def signed_in(request: Request) -> Session | RedirectResponse:
        """The signed-in session, or the way to the sign-in that comes back to this page."""
        session = session_of(request)
        if session is None or not session.signed_in:
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return sign_in_again(here if request.method == "GET" else "/")
        return session

    async def posted_act(request: Request, back: str, act: str, known: Mapping[str, Any]
                         ) -> tuple[Session, dict[str, str]] | Response:
        """The session and form of an act posted from a page, or the answer that stops it there:
        sign in again (back to `back`), an expired form, or an act of no such name."""
        session = await signed_in(request)
        if isinstance(session, Response):
            return sign_in_again(back)
        form = await form_of(request, session)
        if form is None:
            return forbidden_form(request, session)
        if act not in known:
            return await not_found(request, None)
        return session, form

    def unavailable(request: Request, session: Session | None) -> HTMLResponse:
        return render(request, session, "message.html", status=503, title=words.N_("Service indisponible"),
                      message=words.N_("Un service de Passerelle ne répond pas pour le moment. "
                                       "Réessayez dans quelques instants."))

    @app.exception_handler(SignInAgain)
    async def token_refused(request: Request, _: SignInAgain) -> Response:
        session = session_of(request)
        if session is not None:
            session.access_token, session.user = None, None
        return sign_in_again(request.url.path if request.method == "GET" else "/")

    @app.exception_handler(Unavailable)
    async def service_down(request: Request, exc: Unavailable) -> Response:
        log.warning("a service did not answer: %s", exc)
        return unavailable(request, session_of(request))

    @app.exception_handler(404)
    async def not_found(request: Request, _: Exception) -> Response:
        return render(request, session_of(request), "message.html", status=404, title=words.N_("Page introuvable"),
                      message=words.N_("Cette page n'existe pas, ou plus."))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return render(request, None, "message.html", status=500, title=words.N_("Une erreur est survenue"),
                      message=words.N_("L'erreur est enregistrée. Revenez à l'accueil et réessayez."))

    # --- signing in and out ---------------------------------------------------------------------

    @app.get("/auth/login")
    async def login(request: Request, next: str = "/") -> Response:
        session = session_of(request) or store.new(lang_of(request, None))
        try:
            url, state, nonce, verifier = await oidc.authorization_url(session.lang)
        except (httpx.HTTPError, SignInFailed, ValueError, KeyError) as exc:  # the provider is down or confused
            log.warning("the identity provider cannot be read: %s", exc)
            return unavailable(request, session)
        if len(session.pending) > 5:  # abandoned sign-ins do not pile up
            session.pending.clear()
        session.pending[state] = (nonce, verifier, local_path(next))
        return with_cookie(RedirectResponse(url, status_code=303), session)

    @app.get("/auth/callback")
    async def callback(request: Request, state: str = "", code: str = "", iss: str = "", error: str = "") -> Response:
        session = session_of(request)
        pending = session.pending.pop(state, None) if session and state else None
        if pending is None or error or not code or (iss and iss != settings.oidc_issuer):
            return render(request, session, "message.html", status=400, title=words.N_("La connexion n'a pas abouti"),
                          message=words.N_("Recommencez la connexion depuis la page d'accueil."), sign_in=True)
        nonce, verifier, next_path = pending
        try:
            token = await oidc.exchange(code, verifier, nonce)
        except SignInFailed as exc:
            log.warning("sign-in failed: %s", exc)
            return render(request, session, "message.html", status=400, title=words.N_("La connexion n'a pas abouti"),
                          message=words.N_("Recommencez la connexion depuis la page d'accueil."), sign_in=True)
        assert session is not None
        session = store.renew(session)
        claims = token["claims"]
        session.user = {"sub": claims["sub"], "name": claims.get("name") or claims["sub"],
                        "roles": list(claims.get("roles") or []), "partner_id": claims.get("partner_id")}
        session.access_token, session.id_token = token["access_token"], token["id_token"]
        session.expires_at = float(token.get("expires_at") or time.time() + int(token.get("expires_in", 300)))
        session.pending.clear()
        return with_cookie(RedirectResponse(next_path, status_code=303), session)

    @app.post("/auth/logout")
    async def logout(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return RedirectResponse("/signed-out", status_code=303)
        if await form_of(request, session) is None:
            return forbidden_form(request, session)
        id_token = session.id_token
        store.drop(session)
        response = RedirectResponse(await oidc.end_session_url(id_token, session.lang), status_code=303)
        response.delete_cookie(COOKIE, path="/")
        response.set_cookie("passerelle_lang", session.lang, httponly=True, samesite="lax",
                            secure=settings.secure_cookies)
        return response

    @app.get("/signed-out")
    async def signed_out(request: Request) -> Response:
        return render(request, None, "message.html", title=words.N_("Vous êtes déconnecté"),
                      message=words.N_("À bientôt sur Passerelle."), sign_in=True)

    @app.post("/language")
    async def language(request: Request) -> Response:
        session = session_of(request) or store.new(lang_of(request, None))
        form = await form_of(request, session)
        if form is None:
            return forbidden_form(request, session)
        lang = form.get("lang", "fr")
        session.lang = lang if lang in LANGUAGES else "fr"
        response = RedirectResponse(local_path(form.get("next")), status_code=303)
        response.set_cookie("passerelle_lang", session.lang, httponly=True, samesite="lax",
                            secure=settings.secure_cookies, max_age=365 * 24 * 3600)
        return with_cookie(response, session)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # --- pages ----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        roles, context = set(session.roles), {}
        if "intake_officer" in roles:
            queue = []
            for status, label in INTAKE_QUEUE:
                page = await api.get(session.access_token, "intake", "/v1/projects",
                                     {"status": status, "limit": QUEUE_COUNT_LIMIT})
                queue.append({"status": status, "label": label, "count": len(page["items"]),
                              "more": page["next_cursor"] is not None})
            context["queue"] = queue
        if "partner" in roles and session.user.get("partner_id"):
            context.update(await partner_home(session))
        if roles & {"funding_officer", "funding_approver"}:
            context.update(await committee_home(session))
        if "followup_officer" in roles or context.get("partner", {}).get("kind") == "local_operator":
            context.update(await followup_home(session))
        if "auditor" in roles:
            context["verification"] = await api.get(session.access_token, "audit", "/v1/verification")
        return render(request, session, "home.html", intake="intake_officer" in roles, **context)

    async def followup_home(session: Session) -> dict[str, Any]:
        """The follow-ups (a local operator gets its own, in one call): open alerts and overdue visits first."""
        page = await api.get(session.access_token, "followup", "/v1/followups", {"limit": QUEUE_COUNT_LIMIT})
        followups = sorted((f for f in page["items"] if f["stage"] != "awaiting_funds"), key=followup_order)
        open_ones = [f for f in followups if f["stage"] != "completed"]
        return {"followups": followups, "followups_more": page["next_cursor"] is not None, "followup_counts": {
            "alerts": sum(1 for f in open_ones if f["open_alert_id"]),
            "overdue": sum(1 for f in open_ones if f["visits_overdue"]),
            "conflicts": sum(1 for f in followups if f["conflicts"]),
            "to_launch": sum(1 for f in open_ones if f["stage"] == "opened")}}

    async def partner_home(session: Session) -> dict[str, Any]:
        """A partner's dossiers (the API gives only theirs) and what each waits for from them."""
        partner_id = session.user["partner_id"]
        me = await api.get(session.access_token, "partners", f"/v1/partners/{quote(partner_id)}")
        page = await api.get(session.access_token, "intake", "/v1/projects", {"limit": QUEUE_COUNT_LIMIT})
        lacks = SUPPORT_LACKS if me["kind"] == "support_structure" else OPERATOR_LACKS
        mine = [{**d, "lacks": lacks.get(d["status"])} for d in page["items"]]
        mine.sort(key=lambda d: d["lacks"] is None)  # what waits for them first
        return {"partner": me, "mine": mine, "mine_more": page["next_cursor"] is not None}

    async def committee_home(session: Session) -> dict[str, Any]:
        """The committee's dossiers, each with its proposal waiting for a decision, if any (two lists of
        intake and four kinds of funding's ledger: a bounded number of calls whatever the number of dossiers)."""
        at_committee = []
        for status in ("at_committee", "deferred"):
            at_committee += (await api.get(session.access_token, "intake", "/v1/projects",
                                           {"status": status, "limit": QUEUE_COUNT_LIMIT}))["items"]
        waiting = await waiting_proposals(session)
        issuer, sub = settings.oidc_issuer, session.user["sub"]
        rows = []
        for d in at_committee:
            proposal = waiting.get(d["id"])
            rows.append({**d, "proposal": proposal,
                         "own": bool(proposal) and is_human(proposal["decided_by"], issuer, sub)})
        inbox = [r for r in rows if r["proposal"]]
        return {"committee": rows, "inbox": inbox, "approver": "funding_approver" in session.roles,
                "proposer_word": lambda r: actor_word(r["proposal"]["decided_by"], {}, session.user)}

    async def waiting_proposals(session: Session) -> dict[str, dict[str, Any]]:
        """Per dossier, its last proposal when no decision followed it (funding's ledger, oldest first)."""
        entries = []
        for kind in ("FinancingProposed", "FinancingApproved", "FinancingDeferred", "FinancingRejected"):
            cursor = None
            for _ in range(LEDGER_PAGES):  # oldest first: the pages that follow hold the newest
                page = await api.get(session.access_token, "funding", "/v1/decisions",
                                     {"kind": kind, "limit": 500, "cursor": cursor})
                entries += page["items"]
                cursor = page["next_cursor"]
                if not cursor:
                    break
        entries.sort(key=lambda e: e["decided_at"])
        last: dict[str, dict[str, Any]] = {}
        for entry in entries:
            if entry.get("project_id"):
                last[entry["project_id"]] = entry
        return {pid: e for pid, e in last.items() if e["kind"] == "FinancingProposed"}

    @app.get("/dossiers", response_class=HTMLResponse)
    async def dossiers(request: Request, status: str = "", country: str = "", cursor: str = "") -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        status = status if status in words.STATUSES else ""
        country = country if re.fullmatch(r"[A-Z]{2}", country) else ""
        try:
            page = await api.get(session.access_token, "intake", "/v1/projects",
                                 {"status": status, "country": country, "cursor": cursor, "limit": PAGE_SIZE})
        except Refused as exc:
            if exc.status == 403:
                return not_allowed(request, session)
            page = {"items": [], "next_cursor": None}  # a stale cursor: the first page again
        rules = await screening_rules(session)
        filters = {"status": status, "country": country}
        next_cursor = page["next_cursor"]
        next_url = ("/dossiers?" + urlencode({**filters, "cursor": next_cursor})) if next_cursor else None
        first_url = ("/dossiers?" + urlencode({k: v for k, v in filters.items() if v})) if cursor else None
        return render(request, session, "dossiers.html", items=page["items"], filters=filters, next_url=next_url,
                      first_url=first_url, countries=sorted_countries(rules, session.lang))

    def not_allowed(request: Request, session: Session) -> HTMLResponse:
        return render(request, session, "message.html", status=403, title=words.N_("Accès non autorisé"),
                      message=words.N_("Votre rôle ne donne pas accès à cette page."))

    async def screening_rules(session: Session) -> dict[str, Any]:
        try:
            return await api.get(session.access_token, "intake", "/v1/rules")
        except Refused:
            return {"countries": [], "version": ""}

    def sorted_countries(rules: dict[str, Any], lang: str) -> list[tuple[str, str]]:
        return sorted(((c, words.country(c, lang)) for c in rules.get("countries", [])), key=lambda p: p[1])

    @app.get("/envelopes", response_class=HTMLResponse)
    async def budget_envelopes(request: Request, year: str = "") -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        if not set(session.roles) & {"funding_officer", "funding_approver", "auditor"}:
            return not_allowed(request, session)
        this_year = int(time.strftime("%Y"))
        chosen = int(year) if year.isdigit() and 2000 <= int(year) <= 2100 else this_year
        found = await api.get(session.access_token, "funding", "/v1/envelopes", {"year": chosen})
        rows = []
        for e in found:
            whole = max(e["allocated_cents"], e["reserved_cents"] + e["disbursed_cents"], 1)
            # The chart's bars, in thousandths of its width: disbursed, then reserved, then available.
            widths = [round(1000 * max(e[k], 0) / whole) for k in ("disbursed_cents", "reserved_cents",
                                                                     "available_cents")]
            rows.append({**e, "bars": [(kind, sum(widths[:i]), w) for i, (kind, w) in
                                       enumerate(zip(("disbursed", "reserved", "available"), widths))]})
        return render(request, session, "envelopes.html", envelopes=rows, year=chosen,
                      years=list(range(this_year - 3, this_year + 2)))

    @app.get("/ledger", response_class=HTMLResponse)
    async def ledger(request: Request, as_of: str = "", cursor: str = "") -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        if not set(session.roles) & {"funding_officer", "funding_approver", "auditor"}:
            return not_allowed(request, session)
        try:  # a day, as an office asks for it: the ledger as it stood at that day's end, Paris time
            day = date.fromisoformat(as_of) if as_of else None
        except ValueError:
            day = None
        moment = datetime.combine(day, dt_time(23, 59, 59), ZoneInfo(words.TIME_ZONE)).isoformat() if day else None
        try:
            page = await api.get(session.access_token, "funding", "/v1/decisions",
                                 {"as_of": moment, "cursor": cursor, "limit": PAGE_SIZE})
        except Refused:  # a stale cursor: the first page again
            page = {"items": [], "next_cursor": None}
        filters = {"as_of": day.isoformat()} if day else {}
        next_url = ("/ledger?" + urlencode({**filters, "cursor": page["next_cursor"]})) if page["next_cursor"] else None
        first_url = ("/ledger?" + urlencode(filters)) if cursor else None
        return render(request, session, "ledger.html", items=page["items"], as_of=day.isoformat() if day else "",
                      next_url=next_url, first_url=first_url, actor=lambda a: actor_word(a, {}, session.user))

    @app.get("/dossiers/new", response_class=HTMLResponse)
    async def new_dossier(request: Request) -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        if "intake_officer" not in session.roles:
            return not_allowed(request, session)
        draft, session.draft = session.draft, {}
        return await intake_form(request, session, draft, {})

    async def intake_form(request: Request, session: Session, values: dict[str, str], errors: dict[str, str],
                          rule: str | None = None, status: int = 200) -> HTMLResponse:
        rules = await screening_rules(session)
        t = catalogues[session.lang]
        return render(
            request, session, "intake_form.html", status=status, fields={f.name: f for f in INTAKE_FIELDS},
            values=values, errors=errors, rule=rule, form_key=values.get("form_key") or secrets.token_urlsafe(16),
            countries=sorted_countries(rules, session.lang), regions=[(c, words.region(c)) for c in FRENCH_REGIONS],
            sectors=sorted(((k, t.gettext(v)) for k, v in words.SECTORS.items()), key=lambda p: p[1]),
            residence=[(k, t.gettext(v)) for k, v in words.RESIDENCE_STATUSES.items()])

    @app.post("/dossiers/new", response_class=HTMLResponse)
    async def take_in_dossier(request: Request) -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            # Signed out meanwhile (the access token expired): what was typed waits in the session,
            # the form comes back filled in once signed in again.
            expired = session_of(request)
            form = await form_of(request, expired) if expired is not None else None
            if expired is not None and form is not None:
                expired.draft = {k: v for k, v in form.items() if k != "csrf"}
            return sign_in_again("/dossiers/new")
        form = await form_of(request, session)
        if form is None:
            return forbidden_form(request, session)
        body, errors = intake_body(form)
        if errors:
            return await intake_form(request, session, form, errors, status=422)
        try:
            created = await api.post(session.access_token, "intake", "/v1/projects", body,
                                     idempotency_key=f"console-intake-{form.get('form_key', '')[:60]}")
        except Refused as exc:
            if exc.status == 422:
                found = refusals(exc)
                if not found:  # a refusal the form cannot place: on top, in general words
                    found = {"_": words.N_("Le dossier n'a pas été accepté : vérifiez les champs.")}
                return await intake_form(request, session, form, found, status=422)
            if exc.status == 403:
                return not_allowed(request, session)
            return await intake_form(request, session, form, {}, rule=exc.rule or "", status=exc.status)
        return RedirectResponse(f"/dossiers/{created['id']}?done=taken_in", status_code=303)

    @app.get("/dossiers/{dossier_id}", response_class=HTMLResponse)
    async def dossier(request: Request, dossier_id: str, done: str = "") -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        return await dossier_page(request, session, dossier_id, done=done if done in DONE else "")

    async def dossier_page(request: Request, session: Session, dossier_id: str, done: str = "",
                           rule: str | None = None, consent_error: str | None = None,
                           act_error: tuple[str, str] | None = None, status: int = 200) -> HTMLResponse:
        try:
            UUID(dossier_id)
            found = await api.get(session.access_token, "intake", f"/v1/projects/{dossier_id}")
        except (ValueError, Refused) as exc:
            if isinstance(exc, Refused) and exc.status == 403:
                return not_allowed(request, session)
            return render(request, session, "message.html", status=404, title=words.N_("Dossier introuvable"),
                          message=words.N_("Ce dossier n'existe pas, ou il ne vous est pas ouvert."))
        partners: dict[str, str | None] = {}  # partner id -> name
        for key in ("support_structure_id", "local_operator_id"):  # at most two calls, never one per row
            if found.get(key):
                try:
                    partners[found[key]] = (await api.get(session.access_token, "partners",
                                                          f"/v1/partners/{quote(found[key])}"))["name"]
                except (Refused, Unavailable):
                    partners[found[key]] = None
        reasons = []
        for reason in (found.get("eligibility") or {}).get("reasons", []):
            code = reason.split(":", 1)[0]
            reasons.append(words.ELIGIBILITY_REASONS.get(code, reason))
        # The committee's part, for the people of funding: the dossier's money and, to propose, the envelopes.
        financing, envelopes = None, []
        if set(session.roles) & {"funding_officer", "funding_approver"}:
            try:
                financing = await api.get(session.access_token, "funding", f"/v1/financing/{dossier_id}")
            except Refused:  # funding has not heard of the dossier yet
                financing = None
        acts = offered_acts(session.user, settings.oidc_issuer, found, financing)
        if "propose" in acts:
            envelopes = [e for e in await api.get(session.access_token, "funding", "/v1/envelopes")
                         if e["purpose"] == "business_creation" and e["country"] in (None, found["country"])]
        proposal = (financing or {}).get("proposal") or None
        own_proposal = bool(proposal) and is_human(proposal.get("proposed_by"), settings.oidc_issuer,
                                                   session.user["sub"])
        # The acts this person may do on the dossier in its state (the service decides in the end).
        may_record_consent = "intake_officer" in session.roles and found["status"] not in ("closed", "withdrawn")
        return render(request, session, "dossier.html", status=status, d=found, partners=partners, reasons=reasons,
                      done=DONE.get(done), actor=lambda a, p: actor_word(a, p, session.user), rule=rule,
                      consent_error=consent_error, may_record_consent=may_record_consent, acts=acts, act_error=act_error,
                      partner_view="reference" not in found, financing=financing, envelopes=envelopes,
                      proposal=proposal, own_proposal=own_proposal, budget_lines=range(1, BUDGET_LINES + 1),
                      settle_duplicates="intake_officer" in session.roles,
                      closure_reasons=words.CLOSURE_REASONS, today=time.strftime("%Y-%m-%d"))

    @app.post("/dossiers/{dossier_id}/acts/{act}", response_class=HTMLResponse)
    async def act_on_dossier(request: Request, dossier_id: str, act: str) -> Response:
        posted = await posted_act(request, f"/dossiers/{quote(dossier_id)}", act, ACTS)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        try:
            UUID(dossier_id)
            person = str(UUID(form["person_id"])) if "{person}" in ACTS[act].path else ""
            tranche = str(int(form["tranche"])) if "{tranche}" in ACTS[act].path else ""
        except (ValueError, KeyError):
            return await dossier_page(request, session, dossier_id, status=422)
        body, error = act_body(act, form)
        if error:
            return await dossier_page(request, session, dossier_id, act_error=(act, error), status=422)
        path = ACTS[act].path.format(id=dossier_id, person=person, tranche=tranche)
        try:
            await api.post(session.access_token, ACTS[act].service, path, body)
        except Refused as exc:
            if exc.status == 403:
                return not_allowed(request, session)
            if exc.status == 422:
                return await dossier_page(request, session, dossier_id, status=422, act_error=(
                    act, words.N_("Cet acte n'a pas été accepté : vérifiez les champs du formulaire.")))
            return await dossier_page(request, session, dossier_id, status=exc.status, rule=exc.rule or "")
        return RedirectResponse(f"/dossiers/{dossier_id}?done={act}", status_code=303)

    @app.post("/dossiers/{dossier_id}/consent", response_class=HTMLResponse)
    async def record_consent(request: Request, dossier_id: str) -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return sign_in_again(f"/dossiers/{quote(dossier_id)}")
        form = await form_of(request, session)
        if form is None:
            return forbidden_form(request, session)
        sent = await request.form()
        purposes = [p for p in sent.getlist("purposes") if p in words.CONSENT_PURPOSES]
        partners = [p for p in sent.getlist("partners") if isinstance(p, str) and p]
        try:
            UUID(dossier_id)
            if not purposes and partners:  # sharing with one more partner, for the purposes consented already
                purposes = (await api.get(session.access_token, "intake", f"/v1/projects/{dossier_id}"))["consent"][
                    "purposes"]
            if not purposes:
                return await dossier_page(request, session, dossier_id, status=422,
                                          consent_error=words.N_("Cochez au moins une finalité."))
            await api.post(session.access_token, "intake", f"/v1/projects/{dossier_id}/consent",
                           {"purposes": purposes, "partners": partners})
        except ValueError:
            return await dossier_page(request, session, dossier_id)
        except Refused as exc:
            if exc.status == 403:
                return not_allowed(request, session)
            return await dossier_page(request, session, dossier_id, status=exc.status, rule=exc.rule or "")
        return RedirectResponse(f"/dossiers/{dossier_id}?done=consent", status_code=303)

    # --- the year after launch ---------------------------------------------------------------

    @app.get("/followups/{dossier_id}", response_class=HTMLResponse)
    async def followup(request: Request, dossier_id: str, done: str = "") -> Response:
        session = await signed_in(request)
        if isinstance(session, Response):
            return session
        return await followup_page(request, session, dossier_id, done=done if done in FOLLOWUP_DONE else "")

    async def followup_page(request: Request, session: Session, dossier_id: str, done: str = "",
                            rule: str | None = None, act_error: tuple[str, str] | None = None,
                            values: dict[str, str] | None = None, status: int = 200) -> HTMLResponse:
        try:
            UUID(dossier_id)
            found = await api.get(session.access_token, "followup", f"/v1/followups/{dossier_id}")
        except (ValueError, Refused) as exc:
            if isinstance(exc, Refused) and exc.status == 403:
                return not_allowed(request, session)
            return render(request, session, "message.html", status=404, title=words.N_("Suivi introuvable"),
                          message=words.N_("Ce dossier n'a pas de suivi : il commence au premier versement, "
                                           "ou il ne vous est pas ouvert."))
        operator = None
        if found.get("local_operator_id"):  # one call, for the operator's name
            try:
                operator = (await api.get(session.access_token, "partners",
                                          f"/v1/partners/{quote(found['local_operator_id'])}"))["name"]
            except Refused:
                operator = None
        acts = offered_followup_acts(session.user, found)
        # A new visit gets its id here, once: sending the same form again is the same visit, never a second.
        visit = {"visit_id": f"console:{uuid4()}", "visited_on": time.strftime("%Y-%m-%d"), "jobs_paid": "0",
                 "jobs_family": "0", **(values or {})}
        return render(request, session, "followup.html", status=status, f=found, operator=operator, acts=acts,
                      done=FOLLOWUP_DONE.get(done), rule=rule, act_error=act_error, visit=visit,
                      today=time.strftime("%Y-%m-%d"), partners={found.get("local_operator_id"): operator},
                      actor=lambda a, p: actor_word(a, p, session.user))

    @app.post("/followups/{dossier_id}/acts/{act}", response_class=HTMLResponse)
    async def act_on_followup(request: Request, dossier_id: str, act: str) -> Response:
        posted = await posted_act(request, f"/followups/{quote(dossier_id)}", act, FOLLOWUP_ACTS)
        if isinstance(posted, Response):
            return posted
        session, form = posted
        try:
            UUID(dossier_id)
        except ValueError:
            return await not_found(request, None)
        kept = {k: v for k, v in form.items() if k != "csrf"} if act == "visit" else None
        body, error = followup_body(act, form)
        if error:
            return await followup_page(request, session, dossier_id, act_error=(act, error), values=kept, status=422)
        path = FOLLOWUP_ACTS[act].format(id=dossier_id, visit=quote(form.get("visit_id", ""), safe=""))
        try:
            answer = await api.post(session.access_token, "followup", path, body)
        except Refused as exc:
            if exc.status == 403:
                return not_allowed(request, session)
            if exc.status == 422:
                return await followup_page(request, session, dossier_id, status=422, values=kept, act_error=(
                    act, words.N_("Cet acte n'a pas été accepté : vérifiez les champs du formulaire.")))
            return await followup_page(request, session, dossier_id, status=exc.status, rule=exc.rule or "",
                                       values=kept)
        done = f"visit_{answer['result']}" if act == "visit" else act
        return RedirectResponse(f"/followups/{dossier_id}?done={done}", status_code=303)

    def actor_word(actor: str | None, partners: dict[str, str | None], reader: dict[str, Any] | None = None) -> str:
        """Who did it: the person's account, a partner by name, or Passerelle itself."""
        if not actor:
            return "—"
        kind, _, who = actor.partition(":")
        if kind == "user":  # the person's subject at their issuer (their name when it is the reader)
            subject = who.rpartition("#")[2]
            if reader and is_human(actor, settings.oidc_issuer, reader["sub"]):
                return reader["name"]
            return subject
        if kind == "partner":
            return partners.get(who) or who
        return words.N_("Passerelle (automatique)")

    return app


def main() -> None:
    import uvicorn

    settings = ConsoleSettings()
    logging.basicConfig(level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per API call says nothing useful
    uvicorn.run(create_app(settings), host=settings.console_host, port=settings.console_port, log_level="info")


if __name__ == "__main__":
    main()
