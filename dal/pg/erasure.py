"""`ErasureStore`: a KVKK/GDPR erasure request, `attn forget-user SCHOOL_NUMBER`.

Unlike /logout and the retention purge (dal/pg/retention.py), which keep the attendance register,
an erasure removes the person from every table, in one transaction:

- their own rows go: the `users` row, their attendance records, low-attendance warning states,
  cached schedule, excuse requests (reasons and document file ids), and the corrections made
  to their records;
- rows that are other people's and only name them are kept with the name replaced: sessions
  the person taught and corrections the person made move to a tombstone user (`X` + 15 hex
  digits, named `(erased)`), and their name (and its `person_key`) is replaced by `(erased)` in
  other students' cached schedules, sessions' lesson slots, teachers' notes, correction
  reasons and excuse requests' texts; requests the person was to decide (or decided) keep no
  reference to them.

A name is found in those texts as a whole name in any letter case, Turkish i's alike, with any
spacing between its words (`name_pattern`): the portal spells a teacher "Doç. Dr. ELİF KARTAL"
where the users row says "Elif Kartal", and a plain `replace` kept that spelling. Only whole
names: erasing "Ali Can" leaves "Ali Canan" and "Vali Can" in other people's texts as they are.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from dal.pg.common import Store

__all__ = ["ERASED_NAME", "ErasedPerson", "ErasureStore", "erase_slot_key", "name_pattern"]

ERASED_NAME = "(erased)"

# Letters that may touch a name inside a word: ASCII, Latin-1 and Latin Extended-A/B (Turkish
# among them), digits and the underscore. Spelled out, so that a match never depends on the
# database's locale (under C, PostgreSQL's [[:alpha:]] knows no ş).
_WORD_CHAR = "A-Za-z0-9_\u00c0-\u024f"
_I_ALIKE = "iİıI"


def name_pattern(name: str) -> str | None:
    """A PostgreSQL regular expression that finds `name` as a whole name in a text: each letter
    in either case (i, İ, ı and I all alike, as Turkish and ASCII spellings of one name mix),
    any run of white space between the words, and no letter or digit right before or after.
    None for a name without words (nothing to look for)."""
    words = name.split()
    if not words:
        return None
    parts = []
    for word in words:
        chars = []
        for c in word:
            if c in _I_ALIKE:
                chars.append(f"[{_I_ALIKE}]")
            elif c.isalnum():
                variants = {c} | {v for v in (c.lower(), c.upper()) if len(v) == 1}
                chars.append(f"[{''.join(sorted(variants))}]" if len(variants) > 1 else c)
            else:
                chars.append("\\" + c)  # a non-alphanumeric character, escaped: itself
        parts.append("".join(chars))
    return f"(?<![{_WORD_CHAR}])" + "\\s+".join(parts) + f"(?![{_WORD_CHAR}])"


def erase_slot_key(slot: str, name_key: str) -> str:
    """A lesson slot ("CODE|isodow|HH:MM|key,key", services.lesson_finder.lesson_slot) with the
    teacher key `name_key` replaced by `(erased)`; other slots unchanged."""
    head, sep, keys = slot.rpartition("|")
    if not sep:
        return slot
    names = [ERASED_NAME if k == name_key else k for k in keys.split(",")]
    return f"{head}|{','.join(names)}"


@dataclass(frozen=True, slots=True)
class ErasedPerson:
    school_number: str
    full_name: str
    role: str
    telegram_id: int | None
    records: int  # attendance records deleted
    sessions_kept: int  # sessions the person taught, now under the tombstone
    tombstone: str | None  # the stand-in user's number, when one was needed
    excuse_requests: int = 0  # the person's own excuse requests deleted


class ErasureStore(Store):
    async def get_person(self, *, school_number: str) -> tuple[str, str, int | None] | None:
        """(full name, role, Telegram id) of the person, or None when there is no such user."""
        row = await self._pool.fetchrow(
            "SELECT user_full_name, role, telegram_id FROM users WHERE user_school_number = $1",
            school_number,
        )
        if row is None:
            return None
        return row["user_full_name"], row["role"], row["telegram_id"]

    async def erase_person(self, *, school_number: str, name_key: str) -> ErasedPerson | None:
        """Remove the person (see the module docstring); None when there is no such user.
        `name_key` is `services.text.person_key` of their name, as cached schedules hold it."""
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "SELECT user_full_name, role, telegram_id FROM users"
                " WHERE user_school_number = $1 FOR UPDATE",
                school_number,
            )
            if row is None:
                return None
            name: str = row["user_full_name"]
            taught = int(
                await conn.fetchval(
                    "SELECT count(*) FROM attendances WHERE teacher_school_number = $1",
                    school_number,
                )
            )
            corrected = int(
                await conn.fetchval(
                    "SELECT count(*) FROM record_corrections WHERE changed_by = $1"
                    " AND student_number IS DISTINCT FROM $1",
                    school_number,
                )
            )
            tombstone: str | None = None
            if taught or corrected:
                tombstone = "X" + secrets.token_hex(8)[:15].upper()
                await conn.execute(
                    "INSERT INTO users (user_school_number, user_full_name, role)"
                    " VALUES ($1, $2, $3)",
                    tombstone,
                    ERASED_NAME,
                    row["role"],
                )
                await conn.execute(
                    "UPDATE attendances SET teacher_school_number = $2"
                    " WHERE teacher_school_number = $1",
                    school_number,
                    tombstone,
                )
            await conn.execute(
                "DELETE FROM record_corrections WHERE student_number = $1", school_number
            )
            if tombstone is not None:
                await conn.execute(
                    "UPDATE record_corrections SET changed_by = $2 WHERE changed_by = $1",
                    school_number,
                    tombstone,
                )
            excuses = await conn.execute(
                "DELETE FROM excuse_requests WHERE student_number = $1", school_number
            )
            # Requests of others this person was to decide or decided: the references go
            # (the columns are also ON DELETE SET NULL; explicit, so nothing depends on it).
            await conn.execute(
                "UPDATE excuse_requests SET teacher_school_number = NULL"
                " WHERE teacher_school_number = $1",
                school_number,
            )
            await conn.execute(
                "UPDATE excuse_requests SET decided_by = NULL WHERE decided_by = $1",
                school_number,
            )
            deleted = await conn.execute(
                "DELETE FROM attendance_records WHERE student_number = $1", school_number
            )
            await conn.execute(
                "DELETE FROM attendance_warnings WHERE student_number = $1", school_number
            )
            await conn.execute(
                "DELETE FROM attendance_course_counts WHERE student_number = $1", school_number
            )
            await conn.execute(
                "DELETE FROM schedule_entries WHERE school_number = $1", school_number
            )
            # Free texts and other people's cached schedules that spell the name.
            pattern = name_pattern(name)
            for table, column in (
                ("schedule_entries", "teachers"),
                ("attendance_records", "teacher_note"),
                ("record_corrections", "reason"),
                ("attendances", "deletion_reason"),
                ("excuse_requests", "reason"),
                ("excuse_requests", "decision_reason"),
            ):
                if pattern is None:
                    break
                await conn.execute(
                    f"UPDATE {table} SET {column} = regexp_replace({column}, $1, $2, 'g')"
                    f" WHERE {column} ~ $1",
                    pattern,
                    ERASED_NAME,
                )
            if name_key:
                await conn.execute(
                    "UPDATE schedule_entries SET teacher_key = array_to_string(array("
                    "SELECT CASE WHEN k = $1 THEN $2 ELSE k END"
                    " FROM unnest(string_to_array(teacher_key, '|')) AS k), '|')"
                    " WHERE $1 = ANY(string_to_array(teacher_key, '|'))",
                    name_key,
                    ERASED_NAME,
                )
                slots = await conn.fetch(
                    "SELECT attendance_id, lesson_slot FROM attendances"
                    " WHERE strpos(lesson_slot, $1) > 0",
                    name_key,
                )
                for slot in slots:
                    await conn.execute(
                        "UPDATE attendances SET lesson_slot = $2 WHERE attendance_id = $1",
                        slot["attendance_id"],
                        erase_slot_key(slot["lesson_slot"], name_key),
                    )
            await conn.execute("DELETE FROM users WHERE user_school_number = $1", school_number)
        return ErasedPerson(
            school_number=school_number,
            full_name=name,
            role=row["role"],
            telegram_id=row["telegram_id"],
            records=int(deleted.split()[-1]),
            sessions_kept=taught,
            tombstone=tombstone,
            excuse_requests=int(excuses.split()[-1]),
        )
