"""The distance and freshness rule of security levels 2 and 3 (services.location)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dal.models import FailReason
from services.location import distance_meters, location_verdict

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ANCHOR = (41.0122, 28.9760)  # Beyazıt, Istanbul
# One degree of latitude is about 111,195 m on the mean Earth.
METERS_PER_DEGREE_LAT = 111_195.08


def _north(meters: float) -> tuple[float, float]:
    return ANCHOR[0] + meters / METERS_PER_DEGREE_LAT, ANCHOR[1]


def _verdict(meters: float, **kwargs: object) -> FailReason | None:
    lat, lon = _north(meters)
    args: dict[str, object] = {
        "anchor": ANCHOR,
        "latitude": lat,
        "longitude": lon,
        "accuracy": 10.0,
        "sent_at": NOW,
        "now": NOW,
        "forwarded": False,
        "via_bot": False,
        "radius": 150.0,
    }
    args.update(kwargs)
    return location_verdict(**args)  # type: ignore[arg-type]


def test_distance_matches_known_figures() -> None:
    # Istanbul (Beyazıt) to Ankara (Kızılay): about 350 km as the crow flies.
    assert distance_meters(*ANCHOR, 39.9208, 32.8541) == pytest.approx(350_600, rel=0.01)
    assert distance_meters(*ANCHOR, *_north(100)) == pytest.approx(100, abs=0.5)
    assert distance_meters(*ANCHOR, *ANCHOR) == 0


def test_radius_boundary_with_a_small_accuracy() -> None:
    assert _verdict(149, accuracy=0) is None
    assert _verdict(151, accuracy=0) is FailReason.LOCATION_TOO_FAR


def test_accuracy_widens_the_circle_by_at_most_the_radius() -> None:
    assert _verdict(190, accuracy=50) is None  # 190 <= 150 + 50
    assert _verdict(210, accuracy=50) is FailReason.LOCATION_TOO_FAR
    assert _verdict(299, accuracy=150) is None
    assert _verdict(301, accuracy=150) is FailReason.LOCATION_TOO_FAR


def test_forwarded_and_stale_locations_do_not_count_even_when_near() -> None:
    assert _verdict(0, forwarded=True) is FailReason.LOCATION_FORWARDED
    assert _verdict(0, sent_at=NOW - timedelta(seconds=60)) is None
    assert _verdict(0, sent_at=NOW - timedelta(seconds=61)) is FailReason.LOCATION_STALE
    assert _verdict(0, sent_at=NOW + timedelta(minutes=5)) is FailReason.LOCATION_STALE


def test_a_location_that_proves_nothing_is_pending_review_with_its_own_reason() -> None:
    """A pin sent through an inline bot, a location without a reported
    accuracy, and one whose accuracy is worse than the radius prove nothing, even at the
    anchor itself."""
    assert _verdict(0, accuracy=10, via_bot=True) is FailReason.LOCATION_VIA_BOT
    assert _verdict(0, accuracy=None) is FailReason.LOCATION_NO_ACCURACY
    assert _verdict(0, accuracy=151) is FailReason.LOCATION_INACCURATE
    assert _verdict(0, accuracy=150) is None
    assert _verdict(0, accuracy=0.0) is None  # a reported 0 is a reported accuracy
