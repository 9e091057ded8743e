"""Fixtures of the end-to-end tests: `portal`, the local Aksis with the class of
tests/e2e/classroom.py (a module that needs another class defines its own `portal`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.e2e.classroom import seat_class
from tests.fakes.aksis_server import FakeAksis


@pytest.fixture
async def portal() -> AsyncIterator[FakeAksis]:
    async with FakeAksis() as fake:
        seat_class(fake, datetime.now(UTC))
        yield fake
