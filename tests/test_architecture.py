"""The architecture, checked (as Axon's giftcard demo does with ArchUnit).

- every service has the same shape;
- a domain knows nothing of HTTP, Kafka, SQL or the store;
- services never import each other: they talk only through Kafka;
- every /v1 route declares the roles it accepts; every command route honours Idempotency-Key.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

from shared.http import CommandRoute

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "main.py").exists())
SHAPE = ("domain.py", "application.py", "api.py", "consumers.py", "projections.py", "main.py")
DOMAIN_MAY_IMPORT = {"__future__", "dataclasses", "enum", "typing", "uuid", "datetime", "decimal", "collections",
                     "functools", "itertools", "math", "re", "eventsourcing.domain", "shared.domain", "shared.geography",
                     "shared.merkle"}  # pure computation: hashing, no I/O


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_there_are_services():
    assert {"intake", "partners", "funding", "followup", "audit"} <= set(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_same_shape(service):
    missing = [name for name in SHAPE if not (ROOT / "services" / service / name).exists()]
    assert not missing, f"services/{service} lacks {missing}"
    if service != "audit":  # the audit keeps no SQL read models: nothing to migrate
        assert (ROOT / "services" / service / "migrations" / "env.py").exists()


@pytest.mark.parametrize("service", SERVICES)
def test_the_domain_is_pure(service):
    bad = {m for m in imports(ROOT / "services" / service / "domain.py")
           if m not in DOMAIN_MAY_IMPORT and m.split(".")[0] not in {"collections", "typing"}}
    assert not bad, f"services/{service}/domain.py imports {bad}: the domain knows nothing of I/O"


@pytest.mark.parametrize("service", SERVICES)
def test_services_do_not_import_each_other(service):
    for path in (ROOT / "services" / service).rglob("*.py"):
        others = {m for m in imports(path) if m.startswith("services.") and m.split(".")[1] != service}
        assert not others, f"{path.relative_to(ROOT)} imports {others}: services talk only through Kafka"


def test_the_kernel_does_not_import_services():
    for path in (ROOT / "shared").rglob("*.py"):
        if path.name == "asyncapi.py":  # documents the services' events, by design
            continue
        assert not {m for m in imports(path) if m.startswith("services")}, path


def _roles_of(route: APIRoute) -> list[str]:
    found = []
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if getattr(dependant.call, "roles", None):
            found += dependant.call.roles
        stack += dependant.dependencies
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_declares_its_roles_and_commands_are_idempotent(service):
    module = __import__(f"services.{service}.api", fromlist=["routers"])
    routes = [r for router in module.routers for r in router.routes if isinstance(r, APIRoute)]
    assert routes
    for route in routes:
        assert _roles_of(route), f"{service} {route.methods} {route.path} declares no roles"
        assert route.path.startswith("/v1/"), route.path
        if route.methods & {"POST", "DELETE"}:
            assert isinstance(route, CommandRoute), f"{service} {route.path} must be a command route"


@pytest.mark.parametrize("service", SERVICES)
def test_the_openapi_document_is_served(service, tmp_path):
    from fastapi.testclient import TestClient

    from shared.settings import Settings

    module = __import__(f"services.{service}.main", fromlist=["create_app"])
    api = module.create_app(Settings(service=service, data_dir=tmp_path, keys_dir=tmp_path / "keys",
                                          kafka_bootstrap_servers="127.0.0.1:1"))
    client = TestClient(api)  # no lifespan: nothing connects to Kafka
    document = client.get("/openapi.json")
    assert document.status_code == 200
    assert any(path.startswith("/v1/") for path in document.json()["paths"])
    assert client.get("/docs").status_code == 200


def _partner_scopes_of(route: APIRoute) -> list[str]:
    found, stack = [], [route.dependant]
    while stack:
        dependant = stack.pop()
        if getattr(dependant.call, "partner_scope", None):
            found.append(dependant.call.partner_scope)
            param = getattr(dependant.call, "path_param", None)
            assert param is None or f"{{{param}}}" in route.path, f"{route.path} has no {{{param}}} to scope"
        stack += dependant.dependencies
    return found


# Routes partners may read that hold nothing of any dossier or partner (the programme's published rules).
NOT_PARTNER_SCOPED = {("intake", "/v1/rules")}


@pytest.mark.parametrize("service", SERVICES)
def test_every_route_that_admits_partners_applies_the_partner_scope_policy(service):
    """shared/partner_scope.py: a path id through `partner_scoped`, a list through `partner_listing`."""
    module = __import__(f"services.{service}.api", fromlist=["routers"])
    for route in (r for router in module.routers for r in router.routes if isinstance(r, APIRoute)):
        if "partner" not in _roles_of(route) or (service, route.path) in NOT_PARTNER_SCOPED:
            continue
        scopes = _partner_scopes_of(route)
        if "{" in route.path:
            assert any(s != "listing" for s in scopes), \
                f"{service} {route.path} admits partners without partner_scoped(...)"
        else:
            assert "listing" in scopes, f"{service} {route.path} admits partners without partner_listing()"


def test_the_architecture_test_sees_a_route_without_the_policy():
    from fastapi import APIRouter, Depends

    from shared.auth import Role, requires

    router = APIRouter()

    @router.get("/v1/things/{thing_id}")
    def thing(thing_id: str, _: object = Depends(requires(Role.partner))) -> None:
        pass

    route = router.routes[0]
    assert "partner" in _roles_of(route) and _partner_scopes_of(route) == []


CONSOLE_MUST_NOT_IMPORT = ("services", "eventsourcing", "sqlalchemy", "aiokafka", "psycopg", "shared.store")


def test_the_console_is_a_client_of_the_apis_only():
    """console/ talks to the services over HTTP: it imports no service, no store, no broker."""
    for path in (ROOT / "console").rglob("*.py"):
        bad = {m for m in imports(path) if m.startswith(CONSOLE_MUST_NOT_IMPORT)}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
    # Nor through what it imports (a shared module that would pull a store in).
    import subprocess
    import sys
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, console.app; print('\\n'.join(sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [m for m in loaded if m.startswith(CONSOLE_MUST_NOT_IMPORT)]
