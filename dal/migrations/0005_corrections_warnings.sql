-- The audit trail of corrections to saved attendance, and the low-attendance warning
-- state per student and course. Numbered 0005 (0004, security levels, was written alongside);
-- versions need only be unique and increasing (dal/migrations.py).

-- Every change to a saved session: who made it, when and why. `student_number` is NULL for a
-- change to the whole session (soft-deleted). Statuses are dal.models.RecordStatus values.
CREATE TABLE record_corrections (
    correction_id  bigserial   PRIMARY KEY,
    attendance_id  uuid        NOT NULL REFERENCES attendances (attendance_id),
    student_number text        NULL REFERENCES users (user_school_number),
    action         text        NOT NULL CONSTRAINT record_corrections_action_check
                               CHECK (action IN ('status', 'excused', 'added',
                                                 'record_deleted', 'session_deleted')),
    old_status     text        NULL,
    new_status     text        NULL,
    reason         text        NULL,
    changed_by     text        NOT NULL REFERENCES users (user_school_number),
    changed_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX record_corrections_attendance_idx ON record_corrections (attendance_id, changed_at);

-- Whether a student was last told they are below ATTENDANCE_WARNING_PERCENT in a course
-- (course key: the lesson code, or the lesson name of sessions without one). A warning is
-- sent when `below` turns true; it turns false when the student recovers.
CREATE TABLE attendance_warnings (
    student_number text        NOT NULL REFERENCES users (user_school_number),
    course_key     text        NOT NULL,
    below          boolean     NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (student_number, course_key)
);
