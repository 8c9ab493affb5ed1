"""The audit's read models: kept in memory, rebuilt from Kafka at every start.

The verified logs themselves are `AuditApplication.logs` (a Merkle tree per
service). The audit has no SQL tables: what it shows must come from the records
alone, never from a copy that could drift from them.
"""

from __future__ import annotations

PROJECTIONS: list[object] = []
