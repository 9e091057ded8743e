-- Excuse requests from students: a missed session (an attendance record of theirs) or a
-- lesson still to come from their schedule (an apology in advance), with a reason and maybe a
-- document, decided once by the lesson's teacher. A student never changes a record: an
-- approval goes through the teacher's correction path (record_corrections keeps it).

CREATE TABLE excuse_requests (
    request_id            bigserial   PRIMARY KEY,
    student_number        text        NOT NULL
                                      REFERENCES users (user_school_number) ON DELETE CASCADE,
    -- The saved session the request is about; NULL for a lesson not held yet (then the
    -- lesson's code and planned start say which one).
    attendance_id         uuid        NULL REFERENCES attendances (attendance_id),
    lesson_code           text        NULL,
    lesson_name           text        NOT NULL,
    lesson_start          timestamptz NOT NULL,
    -- Who decides: the session's teacher (or the planned lesson's). An erased teacher leaves
    -- the request undecidable rather than naming them.
    teacher_school_number text        NULL
                                      REFERENCES users (user_school_number) ON DELETE SET NULL,
    reason                text        NOT NULL,
    -- Telegram's file_id of the attached photo or PDF; the file itself is never downloaded.
    file_id               text        NULL,
    file_kind             text        NULL CONSTRAINT excuse_requests_file_kind_check
                                      CHECK (file_kind IN ('photo', 'pdf')),
    status                text        NOT NULL DEFAULT 'pending'
                                      CONSTRAINT excuse_requests_status_check
                                      CHECK (status IN ('pending', 'approved', 'rejected')),
    decided_by            text        NULL
                                      REFERENCES users (user_school_number) ON DELETE SET NULL,
    decision_reason       text        NULL,
    created_at            timestamptz NOT NULL DEFAULT now(),
    decided_at            timestamptz NULL,
    CONSTRAINT excuse_requests_file_check CHECK ((file_id IS NULL) = (file_kind IS NULL)),
    CONSTRAINT excuse_requests_target_check
        CHECK (attendance_id IS NOT NULL OR lesson_code IS NOT NULL)
);

-- One open request per student and session (or planned lesson).
CREATE UNIQUE INDEX excuse_requests_open_session_idx
    ON excuse_requests (student_number, attendance_id)
    WHERE status = 'pending' AND attendance_id IS NOT NULL;
CREATE UNIQUE INDEX excuse_requests_open_planned_idx
    ON excuse_requests (student_number, lesson_code, lesson_start)
    WHERE status = 'pending' AND attendance_id IS NULL;
CREATE INDEX excuse_requests_student_idx ON excuse_requests (student_number, created_at);
-- Approved apologies in advance that wait for their session to be saved.
CREATE INDEX excuse_requests_planned_idx
    ON excuse_requests (lesson_code, lesson_start)
    WHERE status = 'approved' AND attendance_id IS NULL;
