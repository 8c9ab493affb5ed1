"""docs/ and the README say what is true of the code: every file they name exists, every `/v1/...` route
they name is served."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
# Made by `make run` or `make test` from what is in git, never in it.
NOT_IN_GIT = {"deploy/idp/node_modules"}
SERVICES = ("intake", "partners", "funding", "followup", "audit")

# A path in the repository: from one of its top folders, up to a space, quote or closing mark.
FILE = re.compile(r"(?<![\w./-])((?:services|shared|tests|tools|deploy|bench|console|docs)/[\w./-]*[\w/])")
# A route after a space, a quote, a bracket, a port (`:8001/v1/...`) or a shell variable (`$F/v1/...`);
# `/...` after it makes it the start of several routes.
ROUTE = re.compile(r"(?:(?<=[\s`'\"(])|(?<=\d)|(?<=\$[A-Z]))(/v1/[\w{}<>$./-]*[\w}>])(/\.\.\.)?")
LINK = re.compile(r"\]\(([^)#:]+\.md)?(?:#([^)]*))?\)")
PLACEHOLDER = re.compile(r"\{[^}/]*\}|<[^>/]*>|\$\w+")


def mentions(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    return [(str(page.relative_to(ROOT)), "".join(g for g in m.groups() if g))
            for page in PAGES for m in pattern.finditer(page.read_text())]


def served_routes(tmp_path: Path) -> set[str]:
    """Every path the apps serve, their included routers walked as the access matrix does."""
    from shared.settings import Settings

    found: set[str] = set()
    for service in SERVICES:
        module = __import__(f"services.{service}.main", fromlist=["create_app"])
        app = module.create_app(Settings(service=service, data_dir=tmp_path / service, keys_dir=tmp_path / "keys",
                                         kafka_bootstrap_servers="127.0.0.1:1"))

        def walk(routes: list, prefix: str) -> None:
            for route in routes:
                if isinstance(route, APIRoute):
                    found.add(prefix + route.path)
                elif hasattr(route, "original_router"):
                    walk(route.original_router.routes, prefix + route.include_context.prefix)

        walk(app.routes, "")
    return found


def test_there_are_pages_and_the_readme_links_to_them():
    assert {"architecture.md", "events.md", "programme.md", "operations.md", "security.md"} <= {p.name for p in PAGES}
    assert "](docs/README.md)" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize(("page", "path"), mentions(FILE) or [("none", "none")])
def test_every_file_named_exists(page, path):
    if PLACEHOLDER.search(path):  # `services/<name>/main.py`: one of each service's
        matches = [p for p in ROOT.glob(PLACEHOLDER.sub("*", path)) if p.exists()]
        assert matches, f"{page} names {path}, which matches no file"
    else:
        assert path in NOT_IN_GIT or (ROOT / path).exists(), f"{page} names {path}, which does not exist"


def test_every_route_named_is_served(tmp_path):
    routes = served_routes(tmp_path)
    patterns = [re.compile(PLACEHOLDER.sub("[^/]+", route)) for route in routes]
    prefixes = [re.compile(PLACEHOLDER.sub("[^/]+", route) + "/") for route in routes]
    named = mentions(ROUTE)
    assert named

    def served(route: str) -> bool:
        route = PLACEHOLDER.sub("x", route)
        if route.endswith("/..."):  # the start of several routes
            return any(p.match(route.removesuffix("...")) for p in prefixes)
        return any(p.fullmatch(route) for p in patterns)

    unserved = [(page, route) for page, route in named if not served(route)]
    assert not unserved, f"routes named that no app serves: {unserved}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, spaces to hyphens, punctuation dropped."""
    # A shell comment in a code block is no heading.
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_page_and_heading_linked_exists():
    for page in PAGES:
        for match in LINK.finditer(page.read_text()):
            target, anchor = match.groups()
            linked = page.parent.joinpath(target).resolve() if target else page
            name = page.relative_to(ROOT)
            assert linked.exists(), f"{name} links to {target}, which does not exist"
            assert anchor is None or anchor in anchors(linked), \
                f"{name} links to #{anchor}: no heading of {linked.name}"
