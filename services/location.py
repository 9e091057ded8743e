"""Whether a shared location proves a student is in the room (security levels 2 and 3).

The rule: a location counts only when it was sent now, from the student's own
phone: not forwarded, and its message is at most `MAX_AGE` old. It is near enough when its
distance from the teacher's location is at most the radius plus the accuracy the phone reports,
where the accuracy widens the circle by no more than the radius itself.

What a location cannot prove: Telegram does not attest coordinates, so the
rule refuses those that say nothing even by the client's own account. A location sent through
an inline bot (`via_bot`) is a venue any bot can make up; one with no reported accuracy was not
measured by the phone (a pin dropped on the map has none); one whose accuracy is worse than the
radius cannot tell the classroom from the next building. Each is pending review with its own
reason, however near it claims to be.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from dal.models import FailReason

EARTH_RADIUS_METERS = 6_371_008.8  # mean Earth radius
MAX_AGE = timedelta(seconds=60)
# Messages carry whole seconds: a location stamped a second "in the future" is clock skew.
_SKEW = timedelta(seconds=5)


def distance_meters(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_METERS * math.asin(min(1.0, math.sqrt(h)))


def location_verdict(
    *,
    anchor: tuple[float, float],
    latitude: float,
    longitude: float,
    accuracy: float | None,
    sent_at: datetime,
    now: datetime,
    forwarded: bool,
    radius: float,
    via_bot: bool = False,
) -> FailReason | None:
    """None when the location proves presence, else the reason it does not."""
    if forwarded:
        return FailReason.LOCATION_FORWARDED
    if via_bot:
        return FailReason.LOCATION_VIA_BOT
    if now - sent_at > MAX_AGE or sent_at - now > _SKEW:
        return FailReason.LOCATION_STALE
    if accuracy is None:
        return FailReason.LOCATION_NO_ACCURACY
    if accuracy > radius:
        return FailReason.LOCATION_INACCURATE
    slack = max(accuracy, 0.0)
    if distance_meters(anchor[0], anchor[1], latitude, longitude) > radius + slack:
        return FailReason.LOCATION_TOO_FAR
    return None


__all__ = ["MAX_AGE", "distance_meters", "location_verdict"]
