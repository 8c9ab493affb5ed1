"""What a partner may reach, and do, of a dossier: one policy for every service.

A partner (a token with the partner role, which holds no staff role: `shared.auth`)
works on the dossiers assigned to it, and only in its kind's part of the work: a
support structure prepares the promoter (skills review, trainings, business plan), a
local operator concludes the feasibility study, launches the business and logs the visits.

- staff: allowed (their roles are checked by `requires`);
- a partner of this dossier, of the kind the act needs (or any kind, for a read): allowed;
- a partner of this dossier, of the other kind: 403 (the dossier is theirs: no secret kept);
- any other partner, or a dossier that does not exist: 404, never 403, so that nobody
  learns from the answer that another partner's dossier exists.

Routes apply it as a FastAPI dependency (`partner_scoped` for a route with a path id,
`partner_listing` for a list), resolved with the route's role check and before an
Idempotency-Key replay, so that a stored answer is replayed only to a caller who may have it.
The dependencies are marked (`partner_scope`): the architecture test fails any route whose
roles admit partners without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from shared import problems
from shared.auth import Principal, principal
from shared.domain import NotFound


class PartnerKind(StrEnum):
    """The kinds of partner that work on a dossier, and the acts that are theirs."""

    support_structure = "support_structure"  # skills review, trainings, business plan
    local_operator = "local_operator"  # feasibility study's conclusion, launch, visits, spending evidence


@dataclass(frozen=True)
class DossierPartners:
    """The partners a service knows for one dossier (None: not known there, or not yet assigned)."""

    support_structure_id: str | None = None
    local_operator_id: str | None = None

    def kind_of(self, partner_id: str) -> PartnerKind | None:
        if partner_id == self.support_structure_id:
            return PartnerKind.support_structure
        if partner_id == self.local_operator_id:
            return PartnerKind.local_operator
        return None


def check(who: Principal, partners: DossierPartners | None, what: str, id: object,
          kind: PartnerKind | None = None) -> None:
    """Raise `NotFound` (404) or a 403 problem unless `who` may reach (and, with `kind`, act on) the thing.

    `partners` None: the thing does not exist (for a partner, 404 like another partner's).
    """
    own = who.partner_scope
    if own is None:
        return
    found = partners.kind_of(own) if partners is not None else None
    if found is None:
        raise NotFound(what, id)
    if kind is not None and found != kind:
        raise problems.HTTPException(403, f"this is the {kind.value.replace('_', ' ')}'s act: "
                                          f"the dossier's {found.value.replace('_', ' ')} may not do it")


def timeline_for(who: Principal, timeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A thing's timeline as the caller may read it: a partner sees what happened and when, not who did it."""
    if who.partner_scope is None:
        return timeline
    return [{k: entry[k] for k in ("type", "version", "at")} for entry in timeline]


Lookup = Callable[[Any, UUID], DossierPartners | None]


def partner_scoped(lookup: Lookup, *, what: str = "dossier", kind: PartnerKind | None = None,
                   path_param: str = "project_id") -> Callable[..., Any]:
    """A dependency applying `check` to the route's path id; `lookup(app, id)` gives the thing's partners.

    `lookup` runs in a thread (it may read the store) and only for partners; staff pass at once.
    A path id that is not a UUID is left to the route's own validation (422).
    """

    async def scope(request: Request, who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.partner_scope is None:
            return who
        try:
            id = UUID(str(request.path_params[path_param]))
        except ValueError:
            return who
        partners = await run_in_threadpool(lookup, request.app.state.runtime.app, id)
        check(who, partners, what, id, kind)
        return who

    scope.partner_scope = kind.value if kind else "any"  # type: ignore[attr-defined]  # read by the architecture test
    scope.path_param = path_param  # type: ignore[attr-defined]
    return scope


async def _listing(who: Annotated[Principal, Depends(principal)]) -> str | None:
    return who.partner_scope


def partner_listing() -> Callable[..., Any]:
    """A dependency for a list: the partner id a partner's listing is limited to, None for staff.

    A route filters on it in place of any `partner_id` the caller asked for.
    """
    return _listing


_listing.partner_scope = "listing"  # type: ignore[attr-defined]  # read by the architecture test
