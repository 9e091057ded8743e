"""Handler tests talk to the bot in-process (tests/client.py): `client` is the real app on
emptied stores with the local Aksis of the module's `portal` (tests/fixtures.py's class unless
the module defines its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.client import ChatClient, chat_client
from tests.fakes.aksis_server import FakeAksis


@pytest.fixture
async def client(pg_dsn: str, redis_url: str, portal: FakeAksis) -> AsyncIterator[ChatClient]:
    async with chat_client(pg_dsn=pg_dsn, redis_url=redis_url, aksis=portal) as chat:
        yield chat
