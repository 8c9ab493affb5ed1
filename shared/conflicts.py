"""Retrying a command that lost an optimistic-concurrency race.

Two commands that load the same aggregate and save it both ask for the same
next version; the store lets one through and refuses the other with the
library's `IntegrityError`. For a command whose outcome depends on the state
it read (an envelope's last euros), the loser must load again and decide
again on the new state: it may now be refused by a rule, or succeed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from eventsourcing.persistence import IntegrityError


T = TypeVar("T")


def retry_on_conflict(command: Callable[[], T], attempts: int = 30) -> T:
    """Run `command` (load, decide, save) again while its save loses a race, at most `attempts` times.

    The transaction that failed wrote nothing; the store keeps its Idempotency-Key and
    consumer tracking record for the save that succeeds (`ServiceApplication.save`).
    """
    for attempt in range(1, attempts + 1):
        try:
            return command()
        except IntegrityError:
            if attempt == attempts:
                raise
            # A little random back-off, growing, so racing commands spread out.
            time.sleep(random.uniform(0, 0.002 * attempt))
    raise AssertionError("unreachable")
