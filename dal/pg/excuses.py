"""`ExcuseStore`: students' excuse requests and their decisions (`excuse_requests`).

A request is decided once: `decide` changes a pending request only, in one statement, so of two
concurrent decisions exactly one wins. What an approval does to the attendance record goes
through `CorrectionStore` (its audit trail), not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID

import asyncpg

from dal.errors import Conflict, NotFound
from dal.pg.common import Store

__all__ = ["ExcuseRequest", "ExcuseStatus", "ExcuseStore", "PlannedLesson"]


class ExcuseStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ExcuseRequest:
    request_id: int
    student_number: str
    student_name: str
    attendance_id: UUID | None
    lesson_code: str | None
    lesson_name: str
    lesson_start: datetime
    teacher_school_number: str | None
    reason: str
    file_id: str | None
    file_kind: str | None
    status: ExcuseStatus
    decided_by: str | None
    decision_reason: str | None
    created_at: datetime
    decided_at: datetime | None


@dataclass(frozen=True, slots=True)
class PlannedLesson:
    """A lesson of a student's cached schedule and the teacher user who teaches it."""

    course_code: str
    course_name: str
    start_time: datetime
    teacher_school_number: str | None


_COLUMNS = (
    "e.request_id, e.student_number, coalesce(u.user_full_name, e.student_number) AS"
    " student_name, e.attendance_id, e.lesson_code, e.lesson_name, e.lesson_start,"
    " e.teacher_school_number, e.reason, e.file_id, e.file_kind, e.status, e.decided_by,"
    " e.decision_reason, e.created_at, e.decided_at"
)
_FROM = " FROM excuse_requests AS e LEFT JOIN users AS u ON u.user_school_number = e.student_number"


def _request(row: asyncpg.Record) -> ExcuseRequest:
    values = dict(row)
    values["status"] = ExcuseStatus(values["status"])
    return ExcuseRequest(**values)


class ExcuseStore(Store):
    async def add_request(
        self,
        *,
        student_number: str,
        attendance_id: UUID | None,
        lesson_code: str | None,
        lesson_name: str,
        lesson_start: datetime,
        teacher_school_number: str | None,
        reason: str,
        file_id: str | None,
        file_kind: str | None,
    ) -> ExcuseRequest:
        """A new pending request; Conflict when one is already open for the same session (or
        planned lesson)."""
        try:
            request_id = await self._pool.fetchval(
                "INSERT INTO excuse_requests (student_number, attendance_id, lesson_code,"
                " lesson_name, lesson_start, teacher_school_number, reason, file_id, file_kind)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING request_id",
                student_number,
                attendance_id,
                lesson_code,
                lesson_name,
                lesson_start,
                teacher_school_number,
                reason,
                file_id,
                file_kind,
            )
        except asyncpg.UniqueViolationError as exc:
            raise Conflict("an open excuse request exists") from exc
        return await self.get_request(request_id=int(request_id))

    async def get_request(self, *, request_id: int) -> ExcuseRequest:
        row = await self._pool.fetchrow(
            f"SELECT {_COLUMNS}{_FROM} WHERE e.request_id = $1", request_id
        )
        if row is None:
            raise NotFound(f"no excuse request {request_id}")
        return _request(row)

    async def get_student_requests(self, *, student_number: str) -> list[ExcuseRequest]:
        """The student's requests, oldest first."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS}{_FROM} WHERE e.student_number = $1"
            " ORDER BY e.created_at, e.request_id",
            student_number,
        )
        return [_request(row) for row in rows]

    async def get_pending_created(
        self, *, since: datetime, until: datetime, limit: int = 500
    ) -> list[ExcuseRequest]:
        """Pending requests created in [since, until), oldest first (at most `limit`)."""
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS}{_FROM} WHERE e.status = 'pending'"
            " AND e.created_at >= $1 AND e.created_at < $2"
            " ORDER BY e.created_at, e.request_id LIMIT $3",
            since,
            until,
            limit,
        )
        return [_request(row) for row in rows]

    async def get_pending_for_sessions(self, *, attendance_ids: list[UUID]) -> list[ExcuseRequest]:
        """The pending requests about these saved sessions, oldest first."""
        if not attendance_ids:
            return []
        rows = await self._pool.fetch(
            f"SELECT {_COLUMNS}{_FROM} WHERE e.attendance_id = ANY($1::uuid[])"
            " AND e.status = 'pending' ORDER BY e.created_at, e.request_id",
            attendance_ids,
        )
        return [_request(row) for row in rows]

    async def decide(
        self,
        *,
        request_id: int,
        status: ExcuseStatus,
        decided_by: str,
        reason: str | None,
        attendance_id: UUID | None = None,
    ) -> ExcuseRequest | None:
        """Decide a pending request; None when it is no longer pending (decided already).
        `attendance_id` fills in the session of an apology in advance once it is known."""
        if status is ExcuseStatus.PENDING:
            raise ValueError("a decision is approved or rejected")
        row = await self._pool.fetchrow(
            "UPDATE excuse_requests SET status = $2, decided_by = $3, decision_reason = $4,"
            " decided_at = now(), attendance_id = coalesce(attendance_id, $5)"
            " WHERE request_id = $1 AND status = 'pending' RETURNING request_id",
            request_id,
            status.value,
            decided_by,
            reason,
            attendance_id,
        )
        if row is None:
            return None
        return await self.get_request(request_id=request_id)

    async def attach_session(self, *, request_id: int, attendance_id: UUID) -> bool:
        """An approved apology in advance gets its session, once; False when it had one."""
        status = await self._pool.execute(
            "UPDATE excuse_requests SET attendance_id = $2"
            " WHERE request_id = $1 AND attendance_id IS NULL",
            request_id,
            attendance_id,
        )
        return status.endswith(" 1")

    async def get_waiting_apologies(self, *, saved_since: datetime) -> list[tuple[int, UUID]]:
        """(request id, attendance id) of approved apologies in advance whose lesson has been
        saved since `saved_since`: a session of the same lesson code, scheduled (or started)
        at the planned start, by the request's teacher."""
        rows = await self._pool.fetch(
            "SELECT e.request_id, a.attendance_id FROM excuse_requests AS e"
            " JOIN attendances AS a ON a.lesson_code = e.lesson_code"
            " AND coalesce(a.scheduled_start, a.start_time) = e.lesson_start"
            " AND a.teacher_school_number = e.teacher_school_number AND NOT a.is_deleted"
            " WHERE e.status = 'approved' AND e.attendance_id IS NULL"
            " AND e.lesson_start >= $1 ORDER BY e.request_id",
            saved_since,
        )
        return [(int(r["request_id"]), r["attendance_id"]) for r in rows]

    async def get_planned_lessons(
        self, *, student_number: str, start: datetime, end: datetime
    ) -> list[PlannedLesson]:
        """The student's cached lessons starting in [start, end), each with the teacher user
        whose own cached schedule holds the same lesson (or, failing that, who saved a session
        of that course last), by start time."""
        rows = await self._pool.fetch(
            "SELECT s.course_code, s.course_name, s.start_time, coalesce("
            " (SELECT t.school_number FROM schedule_entries AS t"
            "  JOIN users AS tu ON tu.user_school_number = t.school_number"
            "  WHERE tu.role = 'teacher' AND t.course_code = s.course_code"
            "  AND t.start_time = s.start_time ORDER BY t.school_number LIMIT 1),"
            " (SELECT a.teacher_school_number FROM attendances AS a"
            "  WHERE a.lesson_code = s.course_code AND NOT a.is_deleted"
            "  ORDER BY a.start_time DESC LIMIT 1)) AS teacher_school_number"
            " FROM schedule_entries AS s"
            " WHERE s.school_number = $1 AND s.start_time >= $2 AND s.start_time < $3"
            " ORDER BY s.start_time, s.course_code",
            student_number,
            start,
            end,
        )
        return [PlannedLesson(**dict(row)) for row in rows]

    async def delete_decided_before(self, *, before: datetime) -> int:
        """Privacy retention: requests decided (or left pending) before `before` go, with
        their reasons and file ids; the corrections they caused stay in the audit trail."""
        status = await self._pool.execute(
            "DELETE FROM excuse_requests WHERE coalesce(decided_at, created_at) < $1", before
        )
        return int(status.rsplit(" ", 1)[-1])
