"""Who acts, and on what: the human behind every act, and the one partner-scope policy."""

from __future__ import annotations

import uuid

import jwt
import pytest
from fastapi import HTTPException

from shared.auth import Principal, Role, TokenVerifier, human
from shared.domain import NotFound, same_human
from shared.partner_scope import DossierPartners, PartnerKind, check
from shared.settings import Settings

OFFICER = Principal(sub="olga", roles=frozenset({Role.intake_officer}), issuer="https://id.example.org")
SUPPORT = Principal(sub="s-1", roles=frozenset({Role.partner}), partner_id="support-1", issuer="https://id.example.org")
OPERATOR = Principal(sub="o-1", roles=frozenset({Role.partner}), partner_id="operator-1")
STRANGER = Principal(sub="x-1", roles=frozenset({Role.partner}), partner_id="operator-2")
PARTNERS = DossierPartners(support_structure_id="support-1", local_operator_id="operator-1")


def status_of(who: Principal, partners: DossierPartners | None, kind: PartnerKind | None) -> int:
    try:
        check(who, partners, "dossier", "d-1", kind)
    except NotFound:
        return 404
    except HTTPException as refused:
        return refused.status_code
    return 200


@pytest.mark.parametrize(("who", "kind", "status"), [
    (OFFICER, PartnerKind.support_structure, 200),
    (SUPPORT, None, 200), (OPERATOR, None, 200), (STRANGER, None, 404),
    (SUPPORT, PartnerKind.support_structure, 200), (SUPPORT, PartnerKind.local_operator, 403),
    (OPERATOR, PartnerKind.local_operator, 200), (OPERATOR, PartnerKind.support_structure, 403),
    (STRANGER, PartnerKind.local_operator, 404),
])
def test_staff_pass_a_partner_acts_on_its_own_dossiers_by_its_kind_and_never_learns_of_others(who, kind, status):
    assert status_of(who, PARTNERS, kind) == status


def test_a_missing_thing_is_404_to_a_partner_and_a_partner_without_id_reaches_nothing():
    assert status_of(SUPPORT, None, None) == 404
    assert status_of(Principal(sub="p", roles=frozenset({Role.partner})), DossierPartners(None, None), None) == 404
    assert status_of(OFFICER, None, None) == 200  # the route's own lookup answers staff's 404


def test_the_actor_is_the_human_never_the_partner_organisation():
    assert SUPPORT.actor == "user:https://id.example.org#s-1" == human("https://id.example.org", "s-1")
    assert "support-1" not in SUPPORT.actor
    mixed = Principal(sub="ann", roles=frozenset({Role.partner, Role.funding_approver}), partner_id="p-1")
    assert mixed.mixes_partner_and_staff and not SUPPORT.mixes_partner_and_staff


def test_four_eyes_compares_humans_across_the_actor_forms():
    assert same_human("user:iss#olga", "user:iss#olga")
    assert same_human("user:olga", "user:iss#olga") and same_human("user:iss#olga", "user:olga")
    assert not same_human("user:iss#olga", "user:other-iss#olga")  # another issuer's olga is someone else
    assert not same_human("user:iss#olga", "user:iss#anna")
    assert not same_human("partner:p-1", "user:iss#p-1") and not same_human("service:funding", "user:funding")


@pytest.mark.parametrize("partner_id", [["p-1", "p-2"], 7, {"id": "p-1"}, ""])
def test_a_partner_id_claim_that_is_not_a_string_is_an_invalid_token(tmp_path, partner_id):
    settings = Settings(service="intake", data_dir=tmp_path, keys_dir=tmp_path / "keys")
    verifier = TokenVerifier(settings)
    private = (tmp_path / "keys" / "jwt-dev.pem").read_bytes()
    claims = {"sub": f"p-{uuid.uuid4().hex[:6]}", "roles": ["partner"], "partner_id": partner_id,
              "iss": settings.jwt_issuer, "aud": settings.jwt_audience, "exp": 4_000_000_000}
    with pytest.raises(jwt.InvalidTokenError):
        verifier.verify(jwt.encode(claims, private, algorithm="RS256"))
    good = verifier.verify(jwt.encode({**claims, "partner_id": "p-1"}, private, algorithm="RS256"))
    assert good.partner_id == "p-1" and good.issuer == settings.jwt_issuer
