-- The hot queries stay flat over years of data. Only additions.

-- /start_session's lookup of a teacher's lessons: `teacher_key` holds every teacher's key of a
-- row joined by '|'; the array of those keys is indexed, and the lookup asks for rows whose
-- array contains the teacher's key (`@>`), which this index serves.
CREATE INDEX schedule_entries_teacher_keys_idx
    ON schedule_entries USING gin (string_to_array(teacher_key, '|'));

-- The term a session belongs to ("YYYY-D", as schedule_entries.term): written at
-- finalization from the term that was current when it opened. NULL: unknown.
ALTER TABLE attendances ADD COLUMN term text NULL;

-- Backfill, first from the cached schedule entry of the session's course at its scheduled
-- start (or its start) ...
UPDATE attendances AS a
SET term = s.term
FROM (
    SELECT DISTINCT ON (course_code, start_time) course_code, start_time, term
    FROM schedule_entries
    WHERE term IS NOT NULL
    ORDER BY course_code, start_time, term DESC
) AS s
WHERE a.term IS NULL
  AND a.lesson_code = s.course_code
  AND s.start_time = coalesce(a.scheduled_start, a.start_time);

-- ... then, for ad-hoc sessions and lessons no longer cached, from the span of dates the
-- cached entries of each term cover (the latest term whose span holds the session's start).
UPDATE attendances AS a
SET term = (
    SELECT spans.term
    FROM (
        SELECT term, min(start_time) AS first, max(end_time) AS last
        FROM schedule_entries
        WHERE term IS NOT NULL
        GROUP BY term
    ) AS spans
    WHERE a.start_time >= spans.first AND a.start_time < spans.last
    ORDER BY spans.term DESC
    LIMIT 1
)
WHERE a.term IS NULL;

-- The reports of one term: a teacher's sessions of the term, a student's records through
-- them (attendance_records_student_idx, then the attendances' primary key).
CREATE INDEX attendances_teacher_term_idx
    ON attendances (teacher_school_number, term)
    WHERE NOT is_deleted;

-- A course's sessions (the course key of dal/pg/common.py: the lesson code, else the name):
-- the warnings' counts, /export and the course reports join a course's sessions only.
CREATE INDEX attendances_course_key_idx
    ON attendances ((coalesce(lesson_code, lesson_name)), start_time)
    WHERE NOT is_deleted;
