"""Runs the partner feeds job in its own process (killed by the crash test).

    python -m tests.integration.feed_worker SETTINGS_JSON MAX_RECORDS [STOP_IN_TRANSACTION MARKER]

With STOP_IN_TRANSACTION = n, the job stops dead inside its n-th transaction, once that
transaction's records are on the broker and before it commits, and writes MARKER: the test
then kills it there.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.partners.application import PartnersApplication
from services.partners.feeds import PartnerFeed
from shared.settings import Settings


class StoppingFeed(PartnerFeed):
    def __init__(self, *args, stop_in: int, marker: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_in = stop_in
        self.marker = marker
        self.transactions = 0

    async def before_commit(self, count: int) -> None:
        self.transactions += 1
        if self.transactions == self.stop_in:
            self.marker.write_text(f"{count} records sent, not committed\n")
            await asyncio.sleep(3600)


async def main(argv: list[str]) -> None:
    settings = Settings.model_validate_json(argv[1])
    app = PartnersApplication(settings)
    if len(argv) > 3:
        feed = StoppingFeed(app, settings, max_records=int(argv[2]), stop_in=int(argv[3]), marker=Path(argv[4]))
    else:
        feed = PartnerFeed(app, settings, max_records=int(argv[2]))
    await feed.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
