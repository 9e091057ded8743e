"""Exports that Moodle and spreadsheets take as they are (on real PostgreSQL).

The mod_attendance bulk "Import attendance" file and the gradebook import file, checked
against the formats their sources document (services/moodle.py names them), and the XLSX
read back the way an office suite opens it: LibreOffice headless converts it (and the two
Moodle files) and the values come back the same. Skipped, saying why, where LibreOffice is
not installed; `.ci/run` installs Debian's `libreoffice-calc`.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import openpyxl
import pytest

from dal.models import Role
from dal.pg import Postgres
from services.moodle import GRADEBOOK_ID_HEADER, MOD_ATTENDANCE_HEADER
from tests.services.test_term_reports import COURSE, START, _course, _documents
from tests.support import signed_in

pytestmark = pytest.mark.stores

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
needs_office = pytest.mark.skipif(
    SOFFICE is None, reason="no LibreOffice (Debian: apt-get install libreoffice-calc)"
)

# The hand-written plan of tests/services/test_term_reports.py in Moodle's acronyms: pending (?) is
# left out, rejected (R) goes in as absent, the excused absence as E with its reason.
SESSION_DAYS = ["2026-02-16", "2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16"]
EXPECTED_MOODLE = {
    "2024001": "PLAEP",
    "2024002": "AA-AP",
    "2024003": "PPPP-",
    "2024004": "P----",
}
EXPECTED_GRADES = {"2024001": "75.0", "2024002": "20.0", "2024003": "100.0", "2024004": "100.0"}


async def _moodle_files(pg: Postgres) -> dict[str, bytes]:
    _, reports = await _course(pg)
    documents = await _documents(
        reports,
        signed_in("T0001", Role.TEACHER),
        course_key=COURSE,
        formats=("moodle", "grades", "xlsx"),
        now=START,
    )
    return dict(documents)


def _expected_attendance_rows() -> set[tuple[str, str, str]]:
    return {
        (f"{SESSION_DAYS[week]} 09:00", number, letter)
        for number, letters in EXPECTED_MOODLE.items()
        for week, letter in enumerate(letters)
        if letter != "-"
    }


async def test_the_mod_attendance_file_has_one_row_per_student_per_session_in_moodles_acronyms(
    pg_client: Postgres,
) -> None:
    files = await _moodle_files(pg_client)
    name = "YBS101_moodle_attendance_2026-02-16.csv"
    data = files[name]
    assert not data.startswith(b"\xef\xbb\xbf")  # Moodle's reader wants plain UTF-8
    text = data.decode("utf-8")
    assert text.splitlines()[0] == ",".join(MOD_ATTENDANCE_HEADER)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["session"], r["idnumber"], r["status"]) for r in rows} == (
        _expected_attendance_rows()
    )
    assert len(rows) == 14  # one pending record left out, no duplicates
    # The session column is what the importer matches: `Y-m-d H:i` in local time.
    for row in rows:
        datetime.strptime(row["session"], "%Y-%m-%d %H:%M")  # noqa: DTZ007
    remarks = {(r["idnumber"], r["session"][:10]): r["remarks"] for r in rows if r["remarks"]}
    assert remarks == {
        ("2024001", "2026-03-09"): "Sağlık raporu",
        ("2024002", "2026-03-09"): "başka şube",
    }


async def test_the_gradebook_file_maps_the_id_number_to_one_attendance_column(
    pg_client: Postgres,
) -> None:
    files = await _moodle_files(pg_client)
    text = files["YBS101_moodle_grades_2026-02-16.csv"].decode("utf-8")
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    assert header == [GRADEBOOK_ID_HEADER, f"Attendance % ({COURSE})"]
    grades = dict(reader)
    assert grades == EXPECTED_GRADES
    for value in grades.values():
        assert 0 <= float(value) <= 100  # a point as the decimal mark, whatever the locale


async def test_the_xlsx_colours_each_status_and_formats_the_rate_as_a_percentage(
    pg_client: Postgres,
) -> None:
    files = await _moodle_files(pg_client)
    sheet = openpyxl.load_workbook(io.BytesIO(files["YBS101_2026-02-16.xlsx"])).worksheets[0]
    rules = {
        rule.formula[0]: rule.dxf.fill.bgColor.rgb
        for ranges in sheet.conditional_formatting
        for rule in ranges.rules
        if str(ranges.sqref) == "C2:G5"
    }
    assert set(rules) == {'"P"', '"L"', '"A"', '"E"'}
    assert len(set(rules.values())) == 4  # four different colours
    rate = sheet.cell(row=3, column=11)  # 2024001, "% Devam / Attendance %"
    assert (rate.value, rate.number_format) == (0.75, "0.0%")


def _office(source: Path, target: str, outdir: Path, infilter: str | None = None) -> Path:
    """`source` converted by LibreOffice headless (its own profile, so runs never share one)."""
    assert SOFFICE is not None
    command = [
        SOFFICE,
        f"-env:UserInstallation=file://{outdir / 'profile'}",
        "--headless",
        "--norestore",
        *([f"--infilter={infilter}"] if infilter else []),
        "--convert-to",
        target,
        "--outdir",
        str(outdir),
        str(source),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    produced = outdir / f"{source.stem}.{target.split(':')[0]}"
    assert produced.exists(), result.stdout + result.stderr
    return produced


@needs_office
async def test_libreoffice_reads_the_xlsx_and_the_moodle_files_back_unchanged(
    pg_client: Postgres, tmp_path: Path
) -> None:
    files = await _moodle_files(pg_client)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)

    # The XLSX as LibreOffice shows it (cells as shown: the rate with its percent sign).
    converted = _office(
        tmp_path / "YBS101_2026-02-16.xlsx", "csv:Text - txt - csv (StarCalc):44,34,76", tmp_path
    )
    shown = list(csv.reader(io.StringIO(converted.read_text(encoding="utf-8"))))
    body = {row[0]: row for row in shown[1:5]}
    assert body["2024001"][1:] == ["Çağrı Şahin", "P", "L", "A", "E", "P", "3", "5", "1", "75.0%"]
    assert body["2024002"][-1] == "20.0%"
    assert body["2024004"][1] == "=HYPERLINK(1)"  # text, never evaluated

    # The Moodle files opened as comma-separated UTF-8, every column as text.
    for name, columns in [
        ("YBS101_moodle_attendance_2026-02-16.csv", 4),
        ("YBS101_moodle_grades_2026-02-16.csv", 2),
    ]:
        as_text = "/".join(f"{i}/2" for i in range(1, columns + 1))
        book = _office(tmp_path / name, "xlsx", tmp_path, infilter=f"CSV:44,34,76,1,{as_text}")
        read = [
            tuple("" if v is None else str(v) for v in row)
            for row in openpyxl.load_workbook(book).worksheets[0].iter_rows(values_only=True)
        ]
        original = [tuple(r) for r in csv.reader(io.StringIO(files[name].decode("utf-8")))]
        assert read == original
