"""The one CSV writer every export goes through: cells are safe to open in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by
Excel, LibreOffice and Google Sheets (CSV injection: `=HYPERLINK(...)` in a name becomes a link
that can leak data). OWASP's rule: prefix such a cell with a single quote, so it opens as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """`value` as CSV cell text that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


# Turkish-locale Excel uses the comma as the decimal mark and expects `;` between fields: a
# comma-separated file opens as one column there. Every export of ATTN uses `;`.
DEFAULT_SEPARATOR = ";"


def csv_document(
    header: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    separator: str = DEFAULT_SEPARATOR,
    bom: bool = True,
) -> bytes:
    """A UTF-8 CSV document (with a byte-order mark unless told otherwise, so spreadsheet
    programs read Turkish letters right), fields separated by `separator`, whose every cell
    went through `safe_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator)
    writer.writerow([safe_cell(h) for h in header])
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return (("\ufeff" if bom else "") + buffer.getvalue()).encode("utf-8")
