"""What the console shows instead of the API's codes: statuses, rules, events, places, amounts and dates.

The French sentences are the message ids (French is the console's first language); the English
catalogue (console/locale/en/LC_MESSAGES/messages.po) translates them. `N_` marks a message for
the catalogue where it is written; `_` (the request's translation) turns it into the person's words.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal


def N_(message: str) -> str:  # noqa: N802 (gettext's conventional name)
    return message


LOCALES = {"fr": "fr_FR", "en": "en_GB"}
TIME_ZONE = "Europe/Paris"

STATUSES = {
    "submitted": N_("Reçu"),
    "ineligible": N_("Inéligible"),
    "eligible": N_("Éligible"),
    "assigned": N_("Partenaires désignés"),
    "preparing": N_("En préparation"),
    "feasibility": N_("Étude de faisabilité"),
    "at_committee": N_("Au comité"),
    "financed": N_("Financé"),
    "deferred": N_("Ajourné"),
    "rejected": N_("Refusé"),
    "in_followup": N_("En suivi"),
    "closed": N_("Clos"),
    "withdrawn": N_("Retiré"),
}

# ISO 3166-2:FR regions by name (Babel knows countries, not regions); the names are the same in English.
REGIONS = {
    "FR-ARA": "Auvergne-Rhône-Alpes", "FR-BFC": "Bourgogne-Franche-Comté", "FR-BRE": "Bretagne",
    "FR-CVL": "Centre-Val de Loire", "FR-COR": "Corse", "FR-GES": "Grand Est", "FR-HDF": "Hauts-de-France",
    "FR-IDF": "Île-de-France", "FR-NOR": "Normandie", "FR-NAQ": "Nouvelle-Aquitaine", "FR-OCC": "Occitanie",
    "FR-PDL": "Pays de la Loire", "FR-PAC": "Provence-Alpes-Côte d'Azur", "FR-971": "Guadeloupe",
    "FR-972": "Martinique", "FR-973": "Guyane", "FR-974": "La Réunion", "FR-976": "Mayotte",
}

SECTORS = {
    "trade": N_("Commerce"), "agriculture": N_("Agriculture"), "services": N_("Services"),
    "crafts": N_("Artisanat"), "transport": N_("Transport"), "tourism": N_("Tourisme"),
    "food": N_("Agroalimentaire"), "construction": N_("Bâtiment"),
}

RESIDENCE_STATUSES = {
    "regular": N_("En situation régulière"), "irregular": N_("En situation irrégulière"),
    "asylum_seeker": N_("Demandeur d'asile"), "returned": N_("Déjà rentré au pays"),
}

ROLES = {
    "intake_officer": N_("Chargé·e d'accueil"), "funding_officer": N_("Chargé·e de financement"),
    "funding_approver": N_("Approbateur·rice"), "followup_officer": N_("Chargé·e de suivi"),
    "partner": N_("Partenaire"), "auditor": N_("Auditeur·rice"), "admin": N_("Administrateur·rice"),
}

PARTNER_KINDS = {"support_structure": N_("Structure d'accompagnement"), "local_operator": N_("Opérateur local"),
                 "financial_partner": N_("Partenaire financier")}

# The decisions on public money funding's ledger keeps (its `kind`s).
LEDGER_KINDS = {
    "ProgrammeRulesPublished": N_("Règles du programme publiées"), "EnvelopeOpened": N_("Enveloppe ouverte"),
    "EnvelopeAdjusted": N_("Enveloppe ajustée"), "FeasibilityGrantAwarded": N_("Bourse de faisabilité accordée"),
    "FeasibilityGrantRejected": N_("Bourse de faisabilité refusée"), "FinancingProposed": N_("Financement proposé"),
    "FinancingApproved": N_("Financement approuvé"), "FinancingDeferred": N_("Financement ajourné"),
    "FinancingRejected": N_("Financement refusé"), "AgreementSigned": N_("Convention signée"),
    "OperatorFeesCommitted": N_("Frais de l'opérateur engagés"), "FundsDisbursed": N_("Tranche versée"),
    "TrancheReconciled": N_("Tranche rapprochée"), "DisbursementSuspended": N_("Versements suspendus"),
    "DisbursementResumed": N_("Versements repris"), "FinancingEnded": N_("Financement terminé"),
    "ReturnAidProposed": N_("Aide au retour proposée"), "ReturnAidGranted": N_("Aide au retour accordée"),
    "ReturnAidRejected": N_("Aide au retour refusée"),
}

PURPOSES = {"business_creation": N_("Création d'entreprise"), "return_aid": N_("Aide au retour")}

# What the promoter consents to their data being processed for.
CONSENT_PURPOSES = {
    "funding": N_("Financement : le comité, les bourses et leur paiement"),
    "preparation": N_("Préparation : bilan de compétences, formations, plan d'affaires avec les partenaires"),
    "follow_up": N_("Suivi : l'année de visites après le lancement"),
    "statistics": N_("Statistiques : les bilans agrégés du programme"),
}

# A possible duplicate: which identifiers matched, and where the officer's review stands.
DUPLICATE_KINDS = {"name": N_("nom"), "birth_date": N_("date de naissance"), "phone": N_("téléphone"),
                   "document": N_("pièce d'identité")}
DUPLICATE_REVIEWS = {"flagged": N_("À examiner"), "confirmed": N_("Confirmé : une seule personne"),
                     "dismissed": N_("Écarté : deux personnes"), "undone": N_("Confirmation annulée : à examiner")}

# The events of a dossier's timeline, as what happened.
EVENTS = {
    "ProjectSubmitted": N_("Dossier reçu"),
    "PossibleDuplicateFlagged": N_("Doublon possible signalé"),
    "DuplicateConfirmed": N_("Doublon confirmé"),
    "DuplicateDismissed": N_("Doublon écarté"),
    "DuplicateConfirmationUndone": N_("Confirmation de doublon annulée"),
    "EligibilityAssessed": N_("Éligibilité examinée"),
    "ConsentRecorded": N_("Consentement enregistré"),
    "ConsentWithdrawn": N_("Consentement retiré"),
    "PartnersRecorded": N_("Partenaires désignés"),
    "SkillsReviewCompleted": N_("Bilan de compétences fait"),
    "TrainingRecorded": N_("Formation enregistrée"),
    "BusinessPlanRecorded": N_("Plan d'affaires enregistré"),
    "FeasibilityStudyRequested": N_("Étude de faisabilité demandée"),
    "FeasibilityStudyCompleted": N_("Étude de faisabilité conclue"),
    "FeasibilityGrantRecorded": N_("Bourse de faisabilité décidée"),
    "ProjectSentToCommittee": N_("Envoyé au comité"),
    "FinancingDecisionRecorded": N_("Décision de financement"),
    "ProjectWithdrawn": N_("Dossier retiré"),
    "ProjectClosed": N_("Dossier clos"),
    "FollowUpRecorded": N_("Suivi enregistré"),
}

# Eligibility reasons (the code before the colon of each reason intake gives).
ELIGIBILITY_REASONS = {
    "country_not_in_programme": N_("Le pays d'origine n'est pas un pays du programme."),
    "over_ceiling": N_("Le montant demandé dépasse le plafond du pays."),
    "nothing_requested": N_("Aucun montant n'est demandé."),
    "too_few_planned_jobs": N_("Le projet prévoit trop peu d'emplois."),
}

# The rules a 409 problem+json names (`rule`), as sentences.
RULES = {
    "accreditation_changes": N_("Cette accréditation ne change rien à celle en vigueur."),
    "agreement_after_approval": N_("La convention suit une décision de financement favorable."),
    "assign_once": N_("Les partenaires de ce dossier sont déjà désignés."),
    "assignment_is_open": N_("Cette désignation de partenaire est déjà terminée."),
    "business_plan_needs_budget": N_("Le plan d'affaires doit avoir au moins une ligne de budget."),
    "committee_after_study": N_("Le dossier va au comité une fois l'étude de faisabilité conclue."),
    "committee_needs_consent": N_("Le dossier ne peut aller au comité sans le consentement au financement."),
    "committee_needs_feasible_study": N_("Le dossier va au comité après une étude de faisabilité concluante."),
    "complete_after_launch": N_("Le suivi se termine après le lancement de l'entreprise."),
    "conflict_exists": N_("Il n'y a pas de conflit de versions à régler pour cette visite."),
    "consent_needs_purposes": N_("Le consentement doit porter sur au moins une finalité."),
    "coverage_changes": N_("Cette couverture ne change rien à celle en vigueur."),
    "decision_after_proposal": N_("Une décision suit une proposition au comité."),
    "disbursement_after_agreement": N_("Un versement suit la signature de la convention."),
    "disbursement_not_suspended": N_("Les versements de ce dossier sont suspendus."),
    "dossier_is_open": N_("Le dossier est clos ou retiré : il ne change plus."),
    "duplicate_review_in_order": N_("Ce doublon possible n'est pas dans un état qui permet cet acte."),
    "duplicate_was_flagged": N_("Aucun doublon possible n'a été signalé pour cette personne."),
    "envelope_covers_dossier": N_("Cette enveloppe ne couvre pas ce dossier (son pays, son année, son objet)."),
    "envelope_of_the_year": N_("L'enveloppe doit être celle de l'année en cours."),
    "end_once": N_("Cette fin est déjà enregistrée."),
    "envelope_covers_commitments": N_("L'enveloppe ne peut descendre sous ce qui est déjà engagé."),
    "envelope_not_overcommitted": N_("L'enveloppe budgétaire n'a plus assez de crédits disponibles."),
    "evidence_before_reconciliation": N_("Le rapprochement demande d'abord les justificatifs."),
    "evidence_covers_tranche": N_("Les justificatifs ne couvrent pas le montant de la tranche."),
    "feasibility_after_preparation": N_("L'étude de faisabilité suit la préparation du projet."),
    "feasibility_grant_within_rules": N_("La bourse de faisabilité dépasse ce que permettent les règles."),
    "feasibility_needs_business_plan": N_("L'étude de faisabilité demande d'abord un plan d'affaires."),
    "feed_enabled_once": N_("Le flux de ce partenaire est déjà ouvert."),
    "feed_for_active_partner": N_("Un flux s'ouvre pour un partenaire actif seulement."),
    "follow_up_is_open": N_("Ce suivi est terminé : il ne reçoit plus de visites."),
    "four_eyes": N_("Quatre yeux : la personne qui a proposé ne peut pas décider elle-même."),
    "launch_once": N_("Le lancement de cette entreprise est déjà enregistré."),
    "preparation_after_assignment": N_("La préparation commence une fois les partenaires désignés."),
    "proposal_after_request": N_("Une proposition suit l'envoi du dossier au comité (ou son ajournement)."),
    "previous_tranche_reconciled": N_("La tranche précédente doit d'abord être rapprochée."),
    "reconcile_once": N_("Cette tranche est déjà rapprochée."),
    "reinstate_suspended_partner": N_("Seul un partenaire suspendu peut être rétabli."),
    "rejection_has_reasons": N_("Un refus doit être motivé."),
    "return_aid_positive": N_("L'aide au retour doit être d'un montant positif."),
    "rule_version_immutable": N_("Cette version des règles existe déjà et ne change plus."),
    "rules_published": N_("Aucune règle du programme n'est encore publiée."),
    "screen_once": N_("L'éligibilité de ce dossier est déjà examinée."),
    "study_concluded_once": N_("L'étude de faisabilité est déjà conclue."),
    "study_was_requested": N_("Aucune étude de faisabilité n'a été demandée."),
    "survey_after_launch": N_("L'enquête suit le lancement de l'entreprise."),
    "survey_once": N_("Cette enquête est déjà enregistrée."),
    "success_needs_financing": N_("Un dossier se clôt en réussite une fois financé."),
    "suspend_active_partner": N_("Seul un partenaire actif peut être suspendu."),
    "tranche_as_scheduled": N_("Cette tranche ne correspond pas à l'échéancier."),
    "tranche_disbursed": N_("Cette tranche n'a pas encore été versée."),
    "tranches_remaining": N_("Toutes les tranches sont déjà versées."),
    "visits_after_launch": N_("Les visites de suivi commencent après le lancement."),
    "within_ceiling": N_("Le montant dépasse le plafond fixé par les règles du programme."),
}
# Why a dossier is closed (intake's closure reasons); `duplicate_aid` is Passerelle's own, never chosen.
CLOSURE_REASONS = {
    "success": N_("Réussite : l'entreprise vit, le programme est achevé"),
    "business_failed": N_("L'entreprise a cessé son activité"),
    "abandoned": N_("Le porteur de projet a abandonné"),
    "re_migrated": N_("Le porteur de projet est reparti"),
    "funding_ended": N_("Le financement a pris fin"),
    "ineligible": N_("Le dossier est inéligible"),
}
CLOSURE_WORDS = {**CLOSURE_REASONS, "duplicate_aid": N_("Doublon : la personne a déjà une aide")}

CONCLUSIONS = {"feasible": N_("Faisable"), "not_feasible": N_("Non faisable")}

# The committee's decisions on a proposal.
DECISIONS = {"approve": N_("Approuver"), "defer": N_("Ajourner"), "reject": N_("Refuser")}
FINANCING = {
    "none": N_("Pas encore au comité"), "requested": N_("Au comité, sans proposition"),
    "proposed": N_("Proposition en attente de décision"), "approved": N_("Approuvé"), "deferred": N_("Ajourné"),
    "rejected": N_("Refusé"), "agreed": N_("Convention signée"), "ended": N_("Terminé"),
}

# The year after launch: the follow-up's stages, its plan, and what the visits find.
FOLLOWUP_STAGES = {"awaiting_funds": N_("En attente du premier versement"), "opened": N_("À lancer"),
                   "launched": N_("Entreprise lancée"), "completed": N_("Suivi terminé")}
PLAN_STATES = {"done": N_("Faite"), "overdue": N_("En retard"), "due": N_("À faire aujourd'hui"),
               "planned": N_("Prévue")}
BUSINESS_STATUSES = {"active": N_("En activité"), "in_difficulty": N_("En difficulté"), "closed": N_("Fermée")}
REVENUE_BANDS = {"none": N_("Aucun chiffre d'affaires"), "under_150": N_("Moins de 150 € par mois"),
                 "150_to_500": N_("De 150 à 500 € par mois"), "500_to_1500": N_("De 500 à 1 500 € par mois"),
                 "over_1500": N_("Plus de 1 500 € par mois")}
ALERT_REASONS = {"business_in_difficulty": N_("Entreprise en difficulté"),
                 "business_closed": N_("Entreprise fermée")}
OUTCOMES = {"business_active": N_("Entreprise en activité"), "business_in_difficulty": N_("Entreprise en difficulté"),
            "business_closed": N_("Entreprise fermée"), "abandoned": N_("Abandon"),
            "re_migrated": N_("Le porteur de projet est reparti")}
# What followup answered a visit sent (its `result`).
VISIT_RESULTS = {
    "logged": N_("La visite est enregistrée."),
    "duplicate": N_("Cette visite était déjà enregistrée : rien n'a changé."),
    "conflict": N_("Une autre version de cette visite est déjà enregistrée : le ou la chargé·e de suivi gardera "
                   "l'une des deux."),
}
# The audit's verification: the problems it finds in a service's log (their `kind`).
LOG_PROBLEMS = {
    "modified": N_("Un événement a été modifié"), "inserted": N_("Un événement a été inséré"),
    "moved": N_("Un événement a été déplacé"), "missing": N_("Un événement manque"),
    "bad signature": N_("Un point de contrôle n'est pas signé par le service"),
    "fork": N_("Deux points de contrôle donnent deux journaux différents"),
    "checkpoint mismatch": N_("Un point de contrôle ne correspond pas au journal reconstruit"),
}
SERVICES = {"intake": N_("Accueil (intake)"), "partners": N_("Partenaires"), "funding": N_("Financement"),
            "followup": N_("Suivi"), "audit": N_("Audit")}

UNKNOWN_RULE = N_("Une règle du programme empêche cet acte.")


def locale_of(lang: str) -> Locale:
    return Locale.parse(LOCALES.get(lang, LOCALES["fr"]))


def amount(cents: int | None, lang: str) -> str:
    """Euros from cents, as the office writes them: "5 500,00 €" (fr), "€5,500.00" (en)."""
    if cents is None:
        return "—"
    return format_currency(Decimal(cents) / 100, "EUR", locale=locale_of(lang))


def number(value: int | None, lang: str) -> str:
    return "—" if value is None else format_decimal(value, locale=locale_of(lang))


def day(value: date | datetime | str | None, lang: str) -> str:
    """"4 déc. 2026"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        return format_datetime(value, "d MMM y", tzinfo=TIME_ZONE, locale=locale_of(lang))
    return format_date(value, "medium", locale=locale_of(lang))


def moment(value: datetime | str | None, lang: str) -> str:
    """"4 déc. 2026 11:05", Paris time."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return format_datetime(value, "d MMM y HH:mm", tzinfo=TIME_ZONE, locale=locale_of(lang))


def country(code: str | None, lang: str) -> str:
    """"Sénégal" for SN; the code itself when Babel does not know it."""
    if not code:
        return "—"
    return locale_of(lang).territories.get(code, code)


def region(code: str | None) -> str:
    if not code:
        return "—"
    return REGIONS.get(code, code)
