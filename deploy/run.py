"""`make run`: start Kafka and the services on one machine, in the foreground.

    python -m deploy.run          (from the repository root; `make run` does this)

1. checks that no service port is taken (another `make run`?),
   and makes the missing development keys (`python -m shared.cli keys`: outside the repository,
   in PASSERELLE_KEYS_DIR, else $XDG_DATA_HOME/passerelle/keys or ~/.local/share/passerelle/keys),
2. starts Kafka with deploy/kafka.sh (127.0.0.1:9092, controller 9093, data var/kafka),
3. creates the topics (`python -m shared.topics create`),
4. starts the identity provider (deploy/idp: oidc-provider on Node.js, http://127.0.0.1:8010, its npm
   packages installed with `npm ci` when missing), every service of SERVICES whose module exists and
   the console (http://127.0.0.1:8000), each logging to var/log/<name>.log, and waits for each
   http://127.0.0.1:<port>/healthz to answer 200 (60 s at most),
5. seeds the demonstration data (`python -m deploy.seed`, when that module exists),
6. prints where everything answers, the console first, and stays in the foreground.

SIGINT (Ctrl-C), SIGTERM or SIGHUP, or any service dying, stops every service (TERM, then
KILL after 10 s) and Kafka (deploy/kafka.sh stop): nothing is left running.

Environment given to the services (the rest is inherited):
    PASSERELLE_DATA_DIR=<repo>/var  KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092  PASSERELLE_PORT=<port>
    PASSERELLE_JWT_JWKS_URL, PASSERELLE_JWT_JWKS_ISSUER (the provider's keys) and
    PASSERELLE_JWT_PUBLIC_KEY_PATH (the development key, so that `make token` keeps working)
and, to every service, topics and seed process: PASSERELLE_<NAME>_URL=http://127.0.0.1:<port>
for each service started.

PASSERELLE_RUN_SERVICES (optional) replaces SERVICES with a JSON list of
{"name": ..., "module": ..., "port": ...} objects.

Standard library only (and deploy/idp.py, itself standard library and shared/keys.py): it runs
before anything else works.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# name, module run with `python -m`, port. One line per service; a service whose module
# does not exist yet is skipped.
SERVICES: list[tuple[str, str, int]] = [
    ("intake", "services.intake.main", 8001),
    ("partners", "services.partners.main", 8002),
    ("funding", "services.funding.main", 8003),
    ("followup", "services.followup.main", 8004),
    ("audit", "services.audit.main", 8005),
]

HOST = "127.0.0.1"
CONSOLE_PORT = 8000
IDP_PORT = 8010
CONSOLE_URL = f"http://{HOST}:{CONSOLE_PORT}"
IDP_URL = f"http://{HOST}:{IDP_PORT}"
KAFKA_PORT = 9092
KAFKA_CONTROLLER_PORT = 9093
HEALTH_TIMEOUT = 60.0
STOP_GRACE = 10.0

REPO = Path(__file__).resolve().parent.parent
VAR = REPO / "var"
LOG_DIR = VAR / "log"
KAFKA_SH = REPO / "deploy" / "kafka.sh"


class Stop(Exception):
    """A signal asked us to stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Failed(Exception):
    """Start-up or a service failed; the message says why."""


@dataclass
class Service:
    name: str
    module: str
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path = field(default_factory=Path)
    started_at: float = 0.0
    argv: list[str] | None = None  # another program than `python -m <module>` (the identity provider)
    env: dict[str, str] = field(default_factory=dict)  # what this one needs beyond the common environment

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def say(msg: str = "") -> None:
    print(msg, flush=True)


def module_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # A missing parent package raises instead of returning None.
        return False


def configured_services() -> list[Service]:
    raw = os.environ.get("PASSERELLE_RUN_SERVICES")
    if raw:
        try:
            items = json.loads(raw)
            return [Service(str(i["name"]), str(i["module"]), int(i["port"])) for i in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise Failed(f"PASSERELLE_RUN_SERVICES is not a JSON list of {{name, module, port}}: {exc}")
    return [Service(name, module, port) for name, module, port in SERVICES]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((HOST, port)) == 0


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(empty log)"


_libc = None


def _child_setup() -> None:
    """In the child before exec: own process group, and TERM when the supervisor dies."""
    os.setpgid(0, 0)
    if _libc is not None:
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_helper(argv: list[str], env: dict[str, str], what: str) -> int:
    """Run a short-lived command in the foreground (own process group, so a second Ctrl-C
    during shutdown does not cut it off); on Stop, terminate its whole group."""
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
    try:
        return proc.wait()
    except BaseException:
        terminate_group(proc, what, grace=5.0)
        raise


def terminate_group(proc: subprocess.Popen, what: str, grace: float = STOP_GRACE) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        say(f"  {what} did not stop within {grace:.0f}s: KILL")
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


class Supervisor:
    def __init__(self) -> None:
        self.services = configured_services()
        self.kafka_started = False
        self.python = sys.executable
        self.base_env = dict(os.environ)
        self.base_env.update(
            PASSERELLE_DATA_DIR=str(VAR),
            KAFKA_BOOTSTRAP_SERVERS=f"{HOST}:{KAFKA_PORT}",
            PYTHONUNBUFFERED="1",
        )
        self.base_env.pop("PASSERELLE_RUN_SERVICES", None)
        self.with_console = "PASSERELLE_RUN_SERVICES" not in os.environ
        if self.with_console:
            self.services = [Service("idp", "", IDP_PORT), *self.services,
                             Service("console", "console.app", CONSOLE_PORT)]

    def prepare_console(self) -> None:
        """The identity provider's packages, keys and environment; the services told to trust it."""
        if not self.with_console:
            return
        from deploy import idp
        from shared.keys import default_keys_dir

        keys_dir = Path(os.environ.get("PASSERELLE_KEYS_DIR") or default_keys_dir())
        say("identity provider: npm ci in deploy/idp (when its packages are missing)")
        try:
            idp.install()
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            raise Failed(f"the identity provider cannot be installed: {exc}")
        self.base_env.update(idp.services_trust_env(IDP_URL, keys_dir))
        for svc in self.services:
            if svc.name == "idp":
                svc.argv = idp.command()
                svc.env = idp.provider_env(IDP_URL, CONSOLE_URL, keys_dir, VAR / idp.PARTNERS_FILE)
            elif svc.name == "console":
                svc.env = idp.console_env(IDP_URL, CONSOLE_URL, keys_dir)

    # -- start-up -------------------------------------------------------------------

    def check_ports(self) -> None:
        busy = [s for s in self.services if port_in_use(s.port)]
        if busy:
            ports = ", ".join(f"{s.name} {s.port}" for s in busy)
            raise Failed(
                f"port(s) already in use on {HOST}: {ports}. Is another `make run` running? "
                "Stop it (Ctrl-C in its terminal) first."
            )

    def start_kafka(self) -> None:
        env = dict(self.base_env)
        env.update(
            KAFKA_PORT=str(KAFKA_PORT),
            KAFKA_CONTROLLER_PORT=str(KAFKA_CONTROLLER_PORT),
            KAFKA_DATA_DIR=str(VAR / "kafka"),
        )
        self.kafka_env = env
        self.kafka_started = True  # from here on, always `kafka.sh stop` on the way out
        if run_helper(["bash", str(KAFKA_SH), "start"], env, "kafka.sh start") != 0:
            raise Failed("Kafka did not start (see above)")

    def stop_kafka(self) -> None:
        if not self.kafka_started:
            return
        run_helper(["bash", str(KAFKA_SH), "stop"], self.kafka_env, "kafka.sh stop")
        self.kafka_started = False

    def make_keys(self) -> None:
        """The development keys, made before any service starts (the audit reads their verifier files)."""
        say("keys: python -m shared.cli keys")
        rc = run_helper([self.python, "-m", "shared.cli", "keys"], self.base_env, "shared.cli keys")
        if rc != 0:
            raise Failed(f"`python -m shared.cli keys` failed (exit {rc})")

    def create_topics(self) -> None:
        if not module_exists("shared.topics"):
            say("topics: shared.topics does not exist yet, skipped")
            return
        say("topics: python -m shared.topics create")
        rc = run_helper([self.python, "-m", "shared.topics", "create"], self.base_env, "shared.topics")
        if rc != 0:
            raise Failed(f"`python -m shared.topics create` failed (exit {rc})")

    def start_services(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        present = []
        for svc in self.services:
            if svc.argv or module_exists(svc.module):
                present.append(svc)
            else:
                say(f"{svc.name}: module {svc.module} does not exist yet, skipped")
        self.services = present
        urls = {f"PASSERELLE_{s.name.upper()}_URL": s.url for s in present if s.name not in ("idp", "console")}
        self.base_env.update(urls)
        for svc in present:
            env = dict(self.base_env)
            env["PASSERELLE_PORT"] = str(svc.port)
            env.update(svc.env)
            svc.log_path = LOG_DIR / f"{svc.name}.log"
            log = open(svc.log_path, "wb")
            try:
                svc.proc = subprocess.Popen(
                    svc.argv or [self.python, "-m", svc.module],
                    cwd=REPO,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    preexec_fn=_child_setup,
                )
            finally:
                log.close()
            svc.started_at = time.monotonic()
            program = " ".join(svc.argv or ["python", "-m", svc.module])
            say(f"{svc.name}: starting {program} on {svc.url} (pid {svc.proc.pid}, "
                f"log {svc.log_path.relative_to(REPO)})")

    def wait_healthy(self) -> None:
        waiting = list(self.services)
        while waiting:
            for svc in list(waiting):
                assert svc.proc is not None
                rc = svc.proc.poll()
                if rc is not None:
                    raise Failed(self.death_message(svc, rc, "during start-up"))
                if self.healthy(svc):
                    waiting.remove(svc)
                    took = time.monotonic() - svc.started_at
                    say(f"{svc.name}: ready on {svc.url} ({took:.1f}s)")
                elif time.monotonic() - svc.started_at > HEALTH_TIMEOUT:
                    raise Failed(
                        f"{svc.name}: {svc.url}/healthz did not answer 200 within {HEALTH_TIMEOUT:.0f}s\n"
                        f"---- last lines of {svc.log_path} ----\n{log_tail(svc.log_path)}\n----"
                    )
            if waiting:
                time.sleep(0.25)

    @staticmethod
    def healthy(svc: Service) -> bool:
        try:
            with urllib.request.urlopen(svc.url + "/healthz", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def seed(self) -> None:
        if not module_exists("deploy.seed"):
            say("seed: deploy.seed does not exist yet, skipped")
            return
        say("seed: python -m deploy.seed")
        rc = run_helper([self.python, "-m", "deploy.seed"], self.base_env, "deploy.seed")
        if rc != 0:
            say(f"seed: WARNING: `python -m deploy.seed` failed (exit {rc}); the services keep running")

    def banner(self) -> None:
        rows = [("what", "where")]
        if self.with_console:
            rows.append(("console", f"{CONSOLE_URL}    sign in as intake_officer (every demo account: password demo)"))
            rows.append(("idp", f"{IDP_URL}    the identity provider (oidc-provider), log var/log/idp.log"))
        for svc in self.services:
            if svc.name not in ("idp", "console"):
                rows.append((svc.name, f"{svc.url}    docs {svc.url}/docs"))
        rows.append(("kafka", f"{HOST}:{KAFKA_PORT}    (data var/kafka, log var/kafka/kafka.log)"))
        rows.append(("logs", "var/log/<service>.log"))
        rows.append(("token", "make token ROLE=intake_officer [SUB=<user>] [PARTNER=<partner id>]"))
        width = max(len(r[0]) for r in rows)
        line = "-" * 78
        say(line)
        for a, b in rows:
            say(f"  {a.ljust(width)}  {b}")
        say(line)
        say("Passerelle is running. Ctrl-C to stop.")

    # -- running and stopping -------------------------------------------------------

    def watch(self) -> int:
        while True:
            for svc in self.services:
                assert svc.proc is not None
                rc = svc.proc.poll()
                if rc is not None:
                    say(self.death_message(svc, rc, "unexpectedly"))
                    return 1
            time.sleep(0.5)

    @staticmethod
    def death_message(svc: Service, rc: int, when: str) -> str:
        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
        return (f"{svc.name}: died {when} ({how})\n"
                f"---- last lines of {svc.log_path} ----\n{log_tail(svc.log_path)}\n----")

    def stop_services(self) -> None:
        running = [s for s in self.services if s.proc is not None and s.proc.poll() is None]
        for svc in running:
            try:
                os.killpg(svc.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        while any(s.proc.poll() is None for s in running) and time.monotonic() < deadline:
            time.sleep(0.1)
        for svc in running:
            if svc.proc.poll() is None:
                say(f"{svc.name}: did not stop within {STOP_GRACE:.0f}s: KILL")
                try:
                    os.killpg(svc.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                svc.proc.wait()
        # Anything left in a service's process group (workers it forked).
        for svc in self.services:
            if svc.proc is not None:
                try:
                    os.killpg(svc.proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        if running:
            say("services stopped")

    def shutdown(self) -> None:
        if not self.kafka_started and not any(s.proc is not None for s in self.services):
            return
        say("stopping ...")
        try:
            self.stop_services()
        finally:
            self.stop_kafka()
        say("everything stopped")


def main() -> int:
    global _libc
    os.chdir(REPO)
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        _libc = None

    def on_signal(signum, _frame):
        raise Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    sup = None
    rc = 0
    try:
        sup = Supervisor()
        if sup.with_console:
            say(f"console: {CONSOLE_URL} (once everything has started)")
        sup.check_ports()
        sup.make_keys()
        sup.prepare_console()
        VAR.mkdir(exist_ok=True)
        sup.start_kafka()
        sup.create_topics()
        sup.start_services()
        sup.wait_healthy()
        sup.seed()
        sup.banner()
        rc = sup.watch()
    except Stop as stop:
        say(f"\n{stop} received")
        rc = 0
    except Failed as exc:
        say(f"ERROR: {exc}")
        rc = 1
    finally:
        # No more interruptions: finish stopping everything.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if sup is not None:
            sup.shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
