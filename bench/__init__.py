"""Passerelle's benchmark harness (`make bench`).

Not a test: it measures, on the same PostgreSQL and Kafka as the integration
tests (started by `deploy/test.sh --bench`), and prints a table of figures with
their targets; the figures also go to `var/bench/results.json`.

    python -m bench [--help]

1. `bench.commands`  the command path (`POST /v1/projects` on a real intake
   process) beside the library's raw save rate on the same server.
2. `bench.relay`     `shared.relay.Relay` beside raw aiokafka produce of the same records.
3. `bench.roundtrip` ProjectSubmitted -> PartnersRecorded through intake, Kafka and partners.
5. `bench.followup`  followup's visit logging throughput and indicator query latency.
"""
