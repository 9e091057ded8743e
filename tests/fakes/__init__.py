"""Local stand-ins for the outside systems, speaking their real protocols over HTTP."""

from tests.fakes.aksis_server import (
    FakeAccount,
    FakeAksis,
    PortalLesson,
    RecordedRequest,
    portal_lesson,
)

__all__ = ["FakeAccount", "FakeAksis", "PortalLesson", "RecordedRequest", "portal_lesson"]
