"""`make bench` starts: every benchmark module imports (a merge once left a stray decorator in
bench/finalize.py that only `make bench` would have shown)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODULES = sorted(f"bench.{p.stem}" for p in BENCH.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_a_failing_section_is_a_missed_row_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One broken benchmark used to end `make bench` before the table was printed, hiding every
    figure measured before it. Now each section prints as it finishes, a failure is one
    missed row naming the error, and the sections after it still run."""
    import asyncio
    import contextlib
    from collections.abc import AsyncIterator

    import bench.__main__ as runner
    from bench.common import Row

    ran: list[str] = []

    async def section(name: str, dsn: str, quick: bool) -> list[Row]:
        ran.append(name)
        if name == "delivery":
            raise RuntimeError("the fake Bot API did not start")
        return [Row(name, "figure", 1.0, "x", ">= 1", True)]

    @contextlib.asynccontextmanager
    async def database(url: str) -> AsyncIterator[str]:
        yield "postgresql://unused"

    async def flush(url: str) -> None:
        return None

    monkeypatch.setattr(runner, "_section", section)
    monkeypatch.setattr(runner, "throwaway_database", database)
    monkeypatch.setattr(runner, "flush_redis", flush)
    rows = asyncio.run(runner._run({"checkin", "delivery", "export"}, quick=True))

    assert ran == ["checkin", "delivery", "export"]
    failed = [r for r in rows if r.section == "delivery"]
    assert len(failed) == 1 and failed[0].met is False
    assert "RuntimeError: the fake Bot API did not start" in failed[0].name
    assert [r.section for r in rows if r.met] == ["checkin", "export"]
    out = capsys.readouterr().out
    assert out.index("checkin") < out.index("failed: RuntimeError") < out.index("export")
