"""Runs a sample service's relay in its own process (killed by the crash test)."""

from __future__ import annotations

import asyncio
import sys

from shared.relay import Relay
from shared.settings import Settings
from tests.integration.sample import SampleApplication


async def main(settings: Settings, batch_size: int) -> None:
    app = SampleApplication(settings)
    relay = Relay(app, settings.topic("sample.events"), batch_size=batch_size, poll_interval=0.05)
    await relay.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(Settings.model_validate_json(sys.argv[1]), int(sys.argv[2])))
