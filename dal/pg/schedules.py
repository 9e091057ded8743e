"""`ScheduleStore`: the weekly schedules cached from the portal, and the lessons found in them.

Each user's cache holds the schedule of their last login, so of one term; entries are dated
occurrences, so a time window finds the lessons of the term they fall in. The one query that
is not bounded in time, a course's enrolment, names the term it wants (the term of the
teacher's lesson). "The current term" (`get_current_term`) is the newest term that has begun
by the cached dates: a page of a term yet to come counts from its first lesson on. Time windows
must be timezone-aware.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dal.errors import NotFound
from dal.models import ScheduleEntry
from dal.pg.accounts import LinkedUser
from dal.pg.common import LINKED_COLUMNS, Store

__all__ = ["ScheduleStore"]

_SCHEDULE_COLUMNS = (
    "school_number, start_time, end_time, course_code, course_name, teachers, teacher_key, term"
)


class ScheduleStore(Store):
    """Users' cached schedules: enrolment by lesson slot, lesson finding, reminders."""

    async def replace_schedule(
        self, *, school_number: str, entries: Sequence[ScheduleEntry]
    ) -> None:
        """Replace the user's cached schedule with `entries`, in one transaction.

        Entries repeating a (start_time, course_code) pair are stored once. NotFound when
        the user does not exist.
        """
        for entry in entries:
            if entry.school_number != school_number:
                raise ValueError(
                    f"schedule entry for {entry.school_number!r} given to {school_number!r}"
                )
        async with self._transaction() as conn:
            exists = await conn.fetchval(
                "SELECT true FROM users WHERE user_school_number = $1 FOR SHARE", school_number
            )
            if exists is None:
                raise NotFound(f"no user with school number {school_number!r}")
            await conn.execute(
                "DELETE FROM schedule_entries WHERE school_number = $1", school_number
            )
            if entries:
                await conn.execute(
                    f"INSERT INTO schedule_entries ({_SCHEDULE_COLUMNS})"
                    " SELECT $1, e.s, e.e, e.c, e.n, e.t, e.k, e.y FROM unnest("
                    "$2::timestamptz[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],"
                    " $7::text[], $8::text[]) AS e (s, e, c, n, t, k, y)"
                    " ON CONFLICT (school_number, start_time, course_code) DO NOTHING",
                    school_number,
                    [e.start_time for e in entries],
                    [e.end_time for e in entries],
                    [e.course_code for e in entries],
                    [e.course_name for e in entries],
                    [e.teachers for e in entries],
                    [e.teacher_key for e in entries],
                    [e.term for e in entries],
                )

    async def get_schedule(
        self, *, school_number: str, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """The user's lessons that overlap [start, end), by start time.

        Overlap (not "starts within") so that `start=now, end=now + 1 s` finds the lesson in
        progress.
        """
        _check_window(start, end)
        rows = await self._pool.fetch(
            f"SELECT {_SCHEDULE_COLUMNS} FROM schedule_entries"
            " WHERE school_number = $1 AND start_time < $3 AND end_time > $2"
            " ORDER BY start_time, course_code",
            school_number,
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def find_lessons_by_teacher_key(
        self, *, teacher_key: str, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """Distinct lesson occurrences taught by `teacher_key` overlapping [start, end).

        Taken from every cached schedule; one entry per (course_code, start_time, end_time),
        ordered by start time. The `school_number` of each returned entry is the lowest school
        number among the schedules holding that occurrence: it only says where the row was
        found and carries no meaning for the caller. A row's `teacher_key` holds the keys of all
        its teachers joined by `|`; `teacher_key` must equal one of them. Where schedules of
        two terms hold the same occurrence, the newer term's row is returned.
        """
        _check_window(start, end)
        rows = await self._pool.fetch(
            f"SELECT {_SCHEDULE_COLUMNS} FROM ("
            f" SELECT DISTINCT ON (course_code, start_time, end_time) {_SCHEDULE_COLUMNS}"
            " FROM schedule_entries"
            # The array of a row's teacher keys contains this one: served by the GIN index
            # of migration 0006 (schedule_entries_teacher_keys_idx).
            " WHERE string_to_array(teacher_key, '|') @> ARRAY[$1::text]"
            " AND start_time < $3 AND end_time > $2"
            " ORDER BY course_code, start_time, end_time, term DESC NULLS LAST, school_number"
            ") AS o ORDER BY start_time, course_code",
            teacher_key,
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def get_course_entries(
        self, *, course_code: str, term: str | None
    ) -> list[ScheduleEntry]:
        """The entries of `course_code` of `term` (None: schedules that named no term) in
        students' cached schedules (one per student, start and teachers), by school number:
        the caller tells sections apart by their slots (services.lesson_finder.lesson_slot)."""
        rows = await self._pool.fetch(
            f"SELECT DISTINCT {', '.join('s.' + c for c in _SCHEDULE_COLUMNS.split(', '))}"
            " FROM schedule_entries AS s"
            " JOIN users AS u ON u.user_school_number = s.school_number"
            " WHERE s.course_code = $1 AND u.role = 'student' AND s.term IS NOT DISTINCT FROM $2"
            " ORDER BY s.school_number, s.start_time",
            course_code,
            term,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]

    async def get_current_term(self, *, now: datetime) -> str | None:
        """The newest term whose cached lessons have begun by `now`; None when none has (or
        none names a term). A schedule of a term yet to come, read early by one student,
        changes nothing until that term's first lesson."""
        _check_window(now, now)
        term: str | None = await self._pool.fetchval(
            "SELECT max(term) FROM schedule_entries WHERE start_time <= $1", now
        )
        return term

    async def get_term_span(self, *, term: str) -> tuple[datetime, datetime] | None:
        """(first lesson start, last lesson end) over the cached schedules of `term`; None
        when no cached schedule names it."""
        row = await self._pool.fetchrow(
            "SELECT min(start_time) AS first, max(end_time) AS last FROM schedule_entries"
            " WHERE term = $1",
            term,
        )
        if row is None or row["first"] is None:
            return None
        return row["first"], row["last"]

    async def get_stale_term_contacts(self, *, term: str) -> list[LinkedUser]:
        """Reachable linked users whose cached schedule is from a term before `term` (or names
        none) and has nothing of `term`: they should sign in again."""
        rows = await self._pool.fetch(
            f"SELECT {LINKED_COLUMNS} FROM users AS u"
            " WHERE u.telegram_id IS NOT NULL AND u.undeliverable_at IS NULL"
            " AND EXISTS (SELECT 1 FROM schedule_entries AS s"
            "   WHERE s.school_number = u.user_school_number AND (s.term IS NULL OR s.term < $1))"
            " AND NOT EXISTS (SELECT 1 FROM schedule_entries AS s"
            "   WHERE s.school_number = u.user_school_number AND s.term >= $1)"
            " ORDER BY u.user_school_number",
            term,
        )
        return [LinkedUser.model_validate(dict(row)) for row in rows]

    async def get_teacher_lessons_starting(
        self, *, start: datetime, end: datetime
    ) -> list[ScheduleEntry]:
        """Lessons in teachers' own schedules starting in [start, end)."""
        _check_window(start, end)
        rows = await self._pool.fetch(
            "SELECT s.school_number, s.start_time, s.end_time, s.course_code, s.course_name,"
            " s.teachers, s.teacher_key, s.term FROM schedule_entries AS s"
            " JOIN users AS u ON u.user_school_number = s.school_number"
            " WHERE u.role = 'teacher' AND s.start_time >= $1 AND s.start_time < $2"
            " ORDER BY s.start_time, s.school_number, s.course_code",
            start,
            end,
        )
        return [ScheduleEntry.model_validate(dict(row)) for row in rows]


def _check_window(start: datetime, end: datetime) -> None:
    # asyncpg would read a naive datetime as UTC: silently wrong for Europe/Istanbul.
    if start.utcoffset() is None or end.utcoffset() is None:
        raise ValueError("start and end must be timezone-aware")
