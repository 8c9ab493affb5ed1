"""Settings, read from the environment: never chosen by code.

Defaults are those of `make run` (SQLite files under var/, Kafka on
127.0.0.1:9092, the development keys outside the repository: shared/keys.py). Every address, database URL and key path can be overridden
with a `PASSERELLE_*` variable; the Kafka address with the conventional
`KAFKA_BOOTSTRAP_SERVERS`, PostgreSQL with libpq's `POSTGRES_*` names.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Literal
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.keys import default_keys_dir

REPO_ROOT = Path(__file__).resolve().parent.parent

SERVICE_PORTS = {"intake": 8001, "partners": 8002, "funding": 8003, "followup": 8004, "audit": 8005}


def service_url(service: str) -> str:
    """Where a service answers: `PASSERELLE_<SERVICE>_URL`, else its fixed local port."""
    return os.environ.get(f"PASSERELLE_{service.upper()}_URL", f"http://127.0.0.1:{SERVICE_PORTS[service]}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASSERELLE_", extra="ignore")

    service: str = "intake"
    # "all": HTTP and the background work (relay, consumers, projector) in one process;
    # "api": HTTP only; "worker": the background work (and HTTP, for health and metrics).
    role: Literal["all", "api", "worker"] = "all"
    host: str = "127.0.0.1"
    port: int = 0  # 0: the service's fixed port (SERVICE_PORTS)
    data_dir: Path = REPO_ROOT / "var"
    # The development keys (checkpoint signing keys and their `.verifier` files, the master key,
    # the JWT pair): outside the repository, `$XDG_DATA_HOME/passerelle/keys` or
    # `~/.local/share/passerelle/keys` (shared/keys.py). `python -m shared.cli keys` makes them.
    keys_dir: Path = Field(default_factory=default_keys_dir)

    # "sqlite" (embedded default, one file per service) or "postgres".
    persistence: str = "sqlite"
    postgres_host: str = Field("127.0.0.1", validation_alias=AliasChoices("PASSERELLE_POSTGRES_HOST", "POSTGRES_HOST"))
    postgres_port: int = Field(5432, validation_alias=AliasChoices("PASSERELLE_POSTGRES_PORT", "POSTGRES_PORT"))
    postgres_user: str = Field("passerelle", validation_alias=AliasChoices("PASSERELLE_POSTGRES_USER", "POSTGRES_USER"))
    postgres_password: str = Field(
        "passerelle", validation_alias=AliasChoices("PASSERELLE_POSTGRES_PASSWORD", "POSTGRES_PASSWORD")
    )
    # Empty: passerelle_<service>.
    postgres_dbname: str = ""
    postgres_pool_size: int = 10

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices("PASSERELLE_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = ""
    # The secured profile (deploy/kafka.sh with KAFKA_SECURITY=sasl): SASL_PLAINTEXT with SCRAM,
    # each service as its own principal. PLAINTEXT (the default) needs none of the rest.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT"] = Field(
        "PLAINTEXT", validation_alias=AliasChoices("PASSERELLE_KAFKA_SECURITY_PROTOCOL", "KAFKA_SECURITY_PROTOCOL"))
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] = Field(
        "SCRAM-SHA-256", validation_alias=AliasChoices("PASSERELLE_KAFKA_SASL_MECHANISM", "KAFKA_SASL_MECHANISM"))
    kafka_username: str = Field("", validation_alias=AliasChoices("PASSERELLE_KAFKA_USERNAME", "KAFKA_USERNAME"))
    kafka_password: str = Field("", validation_alias=AliasChoices("PASSERELLE_KAFKA_PASSWORD", "KAFKA_PASSWORD"),
                                repr=False)
    # The relay publishes at most this many events per broker round trip.
    relay_batch_size: int = 500
    # Fallback polling when nothing wakes the relay or a projector (seconds).
    poll_interval: float = 0.5
    consumer_max_attempts: int = 3
    # /readyz answers 503 above this consumer lag (records).
    ready_max_lag: int = 10_000
    # The partner feed sends an event this long after it happened, not sooner: by then every save
    # stamped before it (an assignment, its end, a feed's enablement) has committed (seconds).
    feed_settle_seconds: float = 2.0

    # JWT: RS256. The development key pair lives under keys_dir and is made on first use;
    # a public key file or a JWKS URL replaces it in production.
    jwt_private_key_path: Path | None = None
    jwt_public_key_path: Path | None = None
    jwt_issuer: str = "passerelle-dev"
    # Production: the identity provider's JWKS (keys by `kid`; the set is cached this many seconds).
    jwt_jwks_url: str = ""
    # The issuer of the tokens the JWKS keys sign (the provider's URL); empty: jwt_issuer.
    jwt_jwks_issuer: str = ""
    jwt_jwks_lifespan: float = 300.0
    # An unknown `kid` fetches the set again at most this often (tokens with made-up kids
    # must not turn into a flood of requests to the provider).
    jwt_jwks_cooldown: float = 30.0
    jwt_audience: str = "passerelle"
    # Master key wrapping the per-person data keys (base64, 32 bytes); made under keys_dir when empty.
    master_key_path: Path | None = None
    # The Ed25519 key that signs the log's checkpoints (made under keys_dir for development).
    checkpoint_key_path: Path | None = None
    checkpoint_every_events: int = 1000
    checkpoint_every_seconds: float = 10.0
    # The audit's trusted keys: verifier keys (`GET /v1/keys`' verifier_key), comma separated.
    # Empty: the development keys under keys_dir (never in production).
    audit_verifier_keys: str = ""
    # The audit's reader processes (each its own Kafka consumer of whole logs: every partition of
    # their topics, checking the records, growing the trees): 0 is two per core (at most one per log).
    audit_readers: int = 0

    cors_origins: list[str] = ["http://localhost:5173", "http://127.0.0.1:5173"]
    max_body_bytes: int = 64 * 1024
    log_level: str = "INFO"
    # Where traces go: "none", "console" or an OTLP endpoint is left for deployment.
    trace_exporter: str = "none"
    trace_sql: bool = False  # a span per SQL statement (costly; for diagnosis)

    @property
    def http_port(self) -> int:
        return self.port or SERVICE_PORTS.get(self.service, 8000)

    @cached_property
    def database_name(self) -> str:
        return self.postgres_dbname or f"passerelle_{self.service}"

    def eventsourcing_env(self) -> dict[str, str]:
        """The eventsourcing library's own environment for this service's store."""
        if self.persistence == "postgres":
            return {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": self.database_name,
                "POSTGRES_HOST": self.postgres_host,
                "POSTGRES_PORT": str(self.postgres_port),
                "POSTGRES_USER": self.postgres_user,
                "POSTGRES_PASSWORD": self.postgres_password,
                "POSTGRES_POOL_SIZE": str(self.postgres_pool_size),
                "POSTGRES_MAX_OVERFLOW": str(self.postgres_pool_size),
                # Writers queue on the table lock; give them time rather than fail.
                "POSTGRES_LOCK_TIMEOUT": "10",
                "POSTGRES_CONNECT_TIMEOUT": "10",
                # Never "y": the db-function path silently drops tracking records.
                "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
            }
        if self.persistence == "sqlite":
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": str(self.data_dir / f"{self.service}.events.db"),
                "SQLITE_LOCK_TIMEOUT": "10",
            }
        raise ValueError(f"unknown persistence {self.persistence!r}: use 'sqlite' or 'postgres'")

    def views_url(self) -> str:
        """SQLAlchemy URL of the read models: the service's own database."""
        if self.persistence == "postgres":
            return (
                f"postgresql+psycopg://{self.postgres_user}:{self.postgres_password}"
                f"@{self.postgres_host}:{self.postgres_port}/{self.database_name}"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / f'{self.service}.views.db'}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def kafka_client_options(self) -> dict[str, str]:
        """The address and credentials every aiokafka client of this service is made with."""
        options = {"bootstrap_servers": self.kafka_bootstrap_servers}
        if self.kafka_security_protocol != "PLAINTEXT":
            options.update(security_protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
                           sasl_plain_username=self.kafka_username, sasl_plain_password=self.kafka_password)
        return options
