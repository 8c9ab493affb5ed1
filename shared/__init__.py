"""The kernel every Passerelle service stands on.

One module a concept: `settings` (environment), `domain` (what aggregates share),
`store` (the eventsourcing application and its recorders), `envelope` (the
CloudEvents contract), `relay` (store to Kafka), `consumer` (Kafka to store,
effectively once), `projections` (read models), `auth`, `problems`, `http`,
`telemetry`, `topics`.
"""
