-- Per student, course and term: how many of the course's sessions the student has a visible
-- record of, by status. Kept in step with the records by the transactions that change them
-- (finalization, a teacher's corrections, a session or record soft-deleted), so that the
-- low-attendance check and /my_attendance read one row per course instead of every record
-- of every year. Course key as dal/pg/common.py COURSE_KEY_SQL; `term` is attendances.term,
-- '' where that is unknown (NULL cannot be part of the key).
CREATE TABLE attendance_course_counts (
    student_number text    NOT NULL REFERENCES users (user_school_number) ON DELETE CASCADE,
    term           text    NOT NULL,
    course_key     text    NOT NULL,
    -- The name of the course's latest finalized session, for the summary line.
    lesson_name    text    NOT NULL,
    present        integer NOT NULL DEFAULT 0,
    late           integer NOT NULL DEFAULT 0,
    absent         integer NOT NULL DEFAULT 0,
    pending        integer NOT NULL DEFAULT 0,
    rejected       integer NOT NULL DEFAULT 0,
    excused        integer NOT NULL DEFAULT 0,
    held           integer GENERATED ALWAYS AS
                   (present + late + absent + pending + rejected + excused) STORED,
    -- The key serves both readers: a student's courses of a term (/my_attendance) and a
    -- class's students in one course and term (the warning check).
    PRIMARY KEY (student_number, term, course_key)
);

INSERT INTO attendance_course_counts
    (student_number, term, course_key, lesson_name, present, late, absent, pending, rejected,
     excused)
SELECT r.student_number,
       coalesce(a.term, ''),
       coalesce(a.lesson_code, a.lesson_name),
       (array_agg(a.lesson_name ORDER BY a.start_time DESC))[1],
       count(*) FILTER (WHERE r.status = 'present'),
       count(*) FILTER (WHERE r.status = 'late'),
       count(*) FILTER (WHERE r.status = 'absent'),
       count(*) FILTER (WHERE r.status = 'pending'),
       count(*) FILTER (WHERE r.status = 'rejected'),
       count(*) FILTER (WHERE r.status = 'excused')
FROM attendance_records AS r
JOIN attendances AS a ON a.attendance_id = r.attendance_id
WHERE NOT r.is_deleted AND NOT a.is_deleted
GROUP BY 1, 2, 3;

-- The warning state grows from "below or not" to a level: 0 nothing to say, 1 at most one
-- more session can be missed before the term ends below the threshold, 2 below it now. A
-- notice goes out when the level rises; `previous_level` is the level the last change left
-- behind (read back by the statement that changes it). `below` stays, as level = 2.
ALTER TABLE attendance_warnings ADD COLUMN level smallint NOT NULL DEFAULT 0;
ALTER TABLE attendance_warnings ADD COLUMN previous_level smallint NOT NULL DEFAULT 0;
UPDATE attendance_warnings SET level = 2 WHERE below;
