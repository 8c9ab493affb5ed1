"""Who may do what on the secured Kafka profile (docs/security.md): SCRAM principals and their ACLs.

    python -m deploy.kafka_access services             the four services' principals, the audit's, their ACLs
    python -m deploy.kafka_access partner PARTNER_ID   a partner's principal and ACLs; prints its password

Run by an administrator against a broker started with KAFKA_SECURITY=sasl (deploy/kafka.sh),
with KAFKA_BOOTSTRAP_SERVERS, KAFKA_ADMIN_USER (default admin) and KAFKA_ADMIN_PASSWORD;
PASSERELLE_TOPIC_PREFIX is honoured. A service's password comes from
PASSERELLE_KAFKA_PASSWORD_<SERVICE>, the audit's from PASSERELLE_KAFKA_PASSWORD_AUDIT; a
partner's from --password, else a new random one.

The layout (every name below carries the topic prefix; nothing else is allowed, since the
broker's authorizer refuses whatever no ACL allows):

- service `<s>` (principal User:<s>) writes its own topic `<s>.events` and its checkpoints
  on `audit.checkpoints`; reads the topics its consumers read (`services.<s>.consumers.TOPICS`)
  with its group `passerelle-<s>`, and parks their records in their `.dlq` topics.
- partners also runs the partner feeds: reads every service's topic with the feed's group,
  writes (and creates) the `partner.*` topics under the feed's transactional id.
- the audit (principal User:audit: the audit service and `make audit`) reads every service's
  topic `<s>.events` and `audit.checkpoints` from offset 0, with no consumer group (it commits
  nothing): READ and DESCRIBE on those topics, nothing else; it writes nowhere.
- partner `<id>` (principal User:partner-<id>) reads `partner.<id>.events`, with consumer
  groups whose names start with `partner.<id>.`; nothing else.

aiokafka can create neither ACLs nor SCRAM credentials: the set is applied by Kafka's own
Admin client (`deploy/kafka.sh access`, deploy/kafka/Access.java), in one run.
"""

from __future__ import annotations

import importlib
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.partners.feeds import FEED_NAME
from shared.topics import CHECKPOINTS_TOPIC, SERVICES, dlq_topic, event_topic, partner_feed_topic

KAFKA_SH = Path(__file__).resolve().parent / "kafka.sh"


@dataclass(frozen=True)
class Allow:
    """One ACL: `principal` may do `operation` on a resource (type, LITERAL or PREFIXED name)."""

    principal: str
    resource_type: str  # TOPIC | GROUP | TRANSACTIONAL_ID
    name: str
    operation: str  # READ | WRITE | DESCRIBE | CREATE
    pattern: str = "LITERAL"

    def line(self) -> str:
        return "\t".join(("allow", self.principal, self.resource_type, self.pattern, self.name, self.operation))


AUDIT = "audit"


def service_principal(service: str) -> str:
    return service


def audit_principal() -> str:
    return AUDIT


def partner_principal(partner_id: str) -> str:
    return f"partner-{partner_id}"


def partner_group_prefix(partner_id: str, prefix: str = "") -> str:
    """A partner's consumer groups are named `<prefix>partner.<id>.<anything>`."""
    return f"{prefix}partner.{partner_id}."


def consumed_topics(service: str) -> list[str]:
    """The topics a service's consumers read, from its own code (none when it is not installed)."""
    try:
        module = importlib.import_module(f"services.{service}.consumers")
    except ModuleNotFoundError:
        return []
    return list(getattr(module, "TOPICS", []))


def service_acls(service: str, prefix: str = "") -> list[Allow]:
    user = f"User:{service_principal(service)}"
    own = [prefix + event_topic(service), prefix + CHECKPOINTS_TOPIC]
    reads = [prefix + t for t in consumed_topics(service)]
    parks = [prefix + dlq_topic(t) for t in consumed_topics(service)]
    acls = [Allow(user, "TOPIC", t, op) for t in own + parks for op in ("WRITE", "DESCRIBE")]
    acls += [Allow(user, "TOPIC", t, op) for t in reads for op in ("READ", "DESCRIBE")]
    acls.append(Allow(user, "GROUP", f"passerelle-{service}", "READ"))  # the kernel's consumer group
    if service == "partners":
        feed_reads = [prefix + event_topic(s) for s in SERVICES]
        acls += [Allow(user, "TOPIC", t, op) for t in feed_reads if t not in reads for op in ("READ", "DESCRIBE")]
        acls += [Allow(user, "TOPIC", prefix + "partner.", op, "PREFIXED") for op in ("WRITE", "DESCRIBE", "CREATE")]
        acls += [Allow(user, "TRANSACTIONAL_ID", prefix + FEED_NAME, op) for op in ("WRITE", "DESCRIBE")]
        acls.append(Allow(user, "GROUP", prefix + FEED_NAME, "READ"))
    return acls


def audit_acls(prefix: str = "") -> list[Allow]:
    """What the audit's replay needs (services.audit.consumers): the topics' partitions and their
    beginning and end offsets (DESCRIBE), their records (READ). No group: it assigns partitions
    itself and commits no offsets."""
    user = f"User:{audit_principal()}"
    topics = [prefix + event_topic(s) for s in SERVICES] + [prefix + CHECKPOINTS_TOPIC]
    return [Allow(user, "TOPIC", t, op) for t in topics for op in ("READ", "DESCRIBE")]


def partner_acls(partner_id: str, prefix: str = "") -> list[Allow]:
    user = f"User:{partner_principal(partner_id)}"
    topic = prefix + partner_feed_topic(partner_id)
    group = partner_group_prefix(partner_id, prefix)
    return [Allow(user, "TOPIC", topic, "READ"), Allow(user, "TOPIC", topic, "DESCRIBE"),
            Allow(user, "GROUP", group, "READ", "PREFIXED"), Allow(user, "GROUP", group, "DESCRIBE", "PREFIXED")]


def apply(bootstrap: str, users: dict[str, str], acls: list[Allow], admin_user: str, admin_password: str) -> None:
    """Create (or update) the SCRAM users {name: password} and the ACLs; returns once the broker serves them."""
    for name, password in users.items():
        if "\t" in name + password or "\n" in name + password:
            raise ValueError("user names and passwords cannot hold tabs or line breaks")
    lines = [f"user\t{name}\t{password}" for name, password in users.items()] + [a.line() for a in acls]
    env = {**os.environ, "KAFKA_ADMIN_USER": admin_user, "KAFKA_ADMIN_PASSWORD": admin_password}
    done = subprocess.run([str(KAFKA_SH), "access", bootstrap], input="\n".join(lines) + "\n", text=True,
                          env=env, capture_output=True, timeout=180)
    if done.returncode != 0:
        raise RuntimeError(f"deploy/kafka.sh access failed ({done.returncode}): {done.stderr.strip()[-2000:]}")


def main(argv: list[str]) -> int:
    usage = "usage: python -m deploy.kafka_access services | partner PARTNER_ID [--password PASSWORD]"
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    admin_user = os.environ.get("KAFKA_ADMIN_USER", "admin")
    admin_password = os.environ.get("KAFKA_ADMIN_PASSWORD", "")
    prefix = os.environ.get("PASSERELLE_TOPIC_PREFIX", "")
    if not admin_password:
        print("KAFKA_ADMIN_PASSWORD is not set", file=sys.stderr)
        return 2
    if argv[1:2] == ["services"] and len(argv) == 2:
        users, acls = {}, []
        for name, principal, granted in [*((s, service_principal(s), service_acls(s, prefix)) for s in SERVICES),
                                         (AUDIT, audit_principal(), audit_acls(prefix))]:
            password = os.environ.get(f"PASSERELLE_KAFKA_PASSWORD_{name.upper()}")
            if not password:
                print(f"PASSERELLE_KAFKA_PASSWORD_{name.upper()} is not set", file=sys.stderr)
                return 2
            users[principal] = password
            acls += granted
        apply(bootstrap, users, acls, admin_user, admin_password)
        print(f"{len(users)} principals ({', '.join(users)}), {len(acls)} ACLs on {bootstrap}")
        return 0
    if argv[1:2] == ["partner"] and len(argv) in (3, 5):
        partner_id = argv[2]
        password = argv[4] if len(argv) == 5 and argv[3] == "--password" else secrets.token_urlsafe(24)
        apply(bootstrap, {partner_principal(partner_id): password}, partner_acls(partner_id, prefix),
              admin_user, admin_password)
        print(f"principal: {partner_principal(partner_id)}\npassword: {password}\n"
              f"topic: {prefix}{partner_feed_topic(partner_id)}\n"
              f"consumer groups: {partner_group_prefix(partner_id, prefix)}*")
        return 0
    print(usage, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
