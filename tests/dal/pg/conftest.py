"""The `pg` fixture of the PostgreSQL store tests: the project's stores (`Postgres`, dal/pg) on
the run's database, its tables truncated before each test: the suite's `pg_client`
(tests/fixtures.py) under the name these tests read best with."""

from __future__ import annotations

import pytest

from dal.pg import Postgres


@pytest.fixture
def pg(pg_client: Postgres) -> Postgres:
    return pg_client
