-- Lesson slots and sections, terms, one status vocabulary for records.
-- Only additions: no column is renamed or dropped.

-- The term a cached schedule entry came from: the portal's `Yil` and `Donem` of the data URL,
-- written "YYYY-D" (so that the text order is the term order). NULL: cached before this
-- migration, or the portal named no term.
ALTER TABLE schedule_entries ADD COLUMN term text NULL;
CREATE INDEX schedule_entries_term_idx ON schedule_entries (term);

-- The lesson slot a session belongs to ("CODE|isodow|HH:MM|teacher keys", local time) and the
-- lesson's scheduled start; both NULL for an ad-hoc session (a typed lesson name).
ALTER TABLE attendances ADD COLUMN lesson_slot text NULL;
ALTER TABLE attendances ADD COLUMN scheduled_start timestamptz NULL;

-- A record's status (dal.models.RecordStatus) and the teacher's note, kept apart from the
-- reason code: `fail_reason` holds only a reason code (dal.models.FailReason) from now on.
ALTER TABLE attendance_records ADD COLUMN status text NULL;
ALTER TABLE attendance_records ADD COLUMN teacher_note text NULL;

-- Existing rows: "REJECTED: note" becomes reason REJECTED plus the note.
UPDATE attendance_records
SET teacher_note = nullif(btrim(substr(fail_reason, length('REJECTED:') + 1)), ''),
    fail_reason = 'REJECTED'
WHERE fail_reason LIKE 'REJECTED:%';

UPDATE attendance_records
SET status = CASE
        WHEN is_attended AND is_late THEN 'late'
        WHEN is_attended THEN 'present'
        WHEN fail_reason IS NULL OR fail_reason IN ('ABSENT', 'MARKED_ABSENT') THEN 'absent'
        WHEN fail_reason = 'REJECTED' THEN 'rejected'
        WHEN fail_reason = 'EXCUSED' THEN 'excused'
        ELSE 'pending'
    END;
UPDATE attendance_records SET fail_reason = NULL WHERE is_attended;
UPDATE attendance_records SET fail_reason = 'ABSENT' WHERE NOT is_attended AND fail_reason IS NULL;

ALTER TABLE attendance_records ALTER COLUMN status SET NOT NULL;
ALTER TABLE attendance_records ADD CONSTRAINT attendance_records_status_check
    CHECK (status IN ('present', 'late', 'absent', 'pending', 'rejected', 'excused'));
