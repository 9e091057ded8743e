"""LOG_FORMAT=json writes Elastic Common Schema lines that a log pipeline can index as they are."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime, timedelta

from bot.build import VERSION
from bot.config import load_settings
from bot.logs import build_handler, job_context

TOKEN = "123456789:AAH" + "q" * 32


def _lines(emit: object) -> list[dict[str, object]]:
    settings = load_settings(bot_token=TOKEN, log_format="json", aksis_mode="demo")
    buffer = io.StringIO()
    handler = build_handler(settings, buffer)
    logger = logging.getLogger("attn.ecs")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_has_the_ecs_fields() -> None:
    before = datetime.now(UTC)

    def emit(logger: logging.Logger) -> None:
        with job_context("finalize"):
            logger.info("moved %d sessions", 3)

    [line] = _lines(emit)
    assert line["message"] == "moved 3 sessions"
    assert line["log.level"] == "INFO"
    assert line["log.logger"] == "attn.ecs"
    assert line["service.name"] == "attn"
    assert line["service.version"] == VERSION
    assert line["ecs.version"].startswith("8.")
    assert line["attn.job"] == "finalize"
    # RFC 3339 in UTC with a Z, milliseconds: not the local "2026-12-07 02:13:33,561".
    stamp = str(line["@timestamp"])
    assert stamp.endswith("Z") and "T" in stamp and "," not in stamp
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= parsed <= datetime.now(UTC) + timedelta(seconds=1)
    assert "time" not in line and "level" not in line


def test_an_exception_fills_error_fields_and_stays_scrubbed() -> None:
    def emit(logger: logging.Logger) -> None:
        try:
            raise ConnectionError(f"POST https://api.telegram.org/bot{TOKEN}/getMe refused")
        except ConnectionError:
            logger.exception("send failed")

    [line] = _lines(emit)
    assert line["log.level"] == "ERROR"
    assert line["error.type"] == "ConnectionError"
    assert "refused" in str(line["error.message"])
    assert "Traceback" in str(line["error.stack_trace"])
    assert "raise ConnectionError" in str(line["error.stack_trace"])
    text = json.dumps(line)
    assert TOKEN not in text and "q" * 32 not in text
    assert "bot***/getMe" in str(line["error.message"])
