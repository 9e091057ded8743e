-- ATTN initial schema. The seed's tables and column names (docs/contracts.md, "Data") are
-- kept as they were; every other column is an addition. Applied by dal/migrations.py inside
-- one transaction, so a failure leaves nothing behind.

CREATE TABLE users (
    user_school_number text        PRIMARY KEY,
    user_full_name     text        NOT NULL,
    role               text        NOT NULL CONSTRAINT users_role_check
                                   CHECK (role IN ('student', 'teacher')),
    telegram_id        bigint      CONSTRAINT users_telegram_id_key UNIQUE,
    language           text        NOT NULL DEFAULT 'en',
    reminders_enabled  boolean     NOT NULL DEFAULT true,
    linked_at          timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attendances (
    attendance_id         uuid        PRIMARY KEY,
    teacher_school_number text        NOT NULL
                                      REFERENCES users (user_school_number),
    lesson_name           text        NOT NULL,
    lesson_code           text,
    start_time            timestamptz NOT NULL,
    end_time              timestamptz,
    security_option       text        NOT NULL DEFAULT 'code',
    is_deleted            boolean     NOT NULL DEFAULT false,
    deletion_reason       text,
    deletion_time         timestamptz
);

-- A teacher's history, newest first (get_attendances).
CREATE INDEX attendances_teacher_start_idx
    ON attendances (teacher_school_number, start_time DESC)
    WHERE NOT is_deleted;

CREATE TABLE attendance_records (
    attendance_id   uuid        NOT NULL REFERENCES attendances (attendance_id),
    student_number  text        NOT NULL REFERENCES users (user_school_number),
    is_attended     boolean     NOT NULL,
    attendance_time timestamptz,
    fail_reason     text,
    is_late         boolean     NOT NULL DEFAULT false,
    source          text        NOT NULL DEFAULT 'code'
                                CONSTRAINT attendance_records_source_check
                                CHECK (source IN ('code', 'teacher')),
    is_deleted      boolean     NOT NULL DEFAULT false,
    deletion_reason text,
    deletion_time   timestamptz,
    PRIMARY KEY (attendance_id, student_number)
);

-- A student's history (get_student_history).
CREATE INDEX attendance_records_student_idx
    ON attendance_records (student_number)
    WHERE NOT is_deleted;

-- Each user's cached portal schedule (written at login): one row per dated lesson
-- occurrence. It doubles as the enrollment list.
CREATE TABLE schedule_entries (
    school_number text        NOT NULL
                              REFERENCES users (user_school_number) ON DELETE CASCADE,
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    course_code   text        NOT NULL,
    course_name   text        NOT NULL,
    teachers      text        NOT NULL,
    teacher_key   text        NOT NULL,
    PRIMARY KEY (school_number, start_time, course_code)
);

CREATE INDEX schedule_entries_teacher_key_start_idx
    ON schedule_entries (teacher_key, start_time);
CREATE INDEX schedule_entries_course_code_idx
    ON schedule_entries (course_code);
CREATE INDEX schedule_entries_start_time_idx
    ON schedule_entries (start_time);
