"""Name handling for portal data: Turkish case folding, academic titles, matching keys.

Teacher names arrive from Aksis upper-case, with academic titles, in two places: the staff
landing page (`Doç. Dr. ELİF KARTAL`) and the `Hocalar` field of schedule entries. Both sides
go through `person_key()` so that they compare equal however the portal writes them
(docs/portal.md §5).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "CODE_LENGTH",
    "code_digits",
    "is_code",
    "person_key",
    "strip_titles",
    "teacher_keys",
    "turkish_casefold",
]

CODE_LENGTH = 6

# Title words, written without Turkish letters (see `_ascii_fold`), that may precede a name.
# Compound titles are runs of these words: "Dr. Öğr. Üyesi", "Arş. Gör. Dr.", "Yrd. Doç. Dr.".
_TITLE_WORDS = frozenset(
    {
        "prof",
        "profesor",
        "doc",
        "docent",
        "dr",
        "doktor",
        "ogr",
        "ogretim",
        "uyesi",
        "gor",
        "gorevlisi",
        "ars",
        "arastirma",
        "yrd",
        "yard",
        "yardimci",
        "okt",
        "okutman",
        "uzm",
        "uzman",
    }
)

# A leading word (letters only) with an optional dot, and the separators after it.
_LEADING_WORD = re.compile(r"\s*([^\W\d_]+)(\.?)[\s.]*")
_SPACES = re.compile(r"\s+")
_ASCII = str.maketrans("çğıöşüâîû", "cgiosuaiu")
# Separators between several teachers in one `Hocalar` field. " - " needs its spaces:
# hyphenated surnames ("YILMAZ-KAYA") stay whole.
_TEACHER_SEPARATORS = re.compile(r"[,;/&\n\r|]|\s[-–]\s")


def turkish_casefold(value: str) -> str:
    """Case-fold the Turkish way: `İ` -> `i`, `I` -> `ı`, then the Unicode case fold.

    `"İ".lower()` is `"i̇"` (with a combining dot) and `"I".lower()` is `"i"`, both wrong for
    Turkish names.
    """
    value = unicodedata.normalize("NFC", value)
    return value.replace("İ", "i").replace("I", "ı").casefold()


def _ascii_fold(value: str) -> str:
    return turkish_casefold(value).translate(_ASCII)


def strip_titles(name: str) -> str:
    """The name without leading academic titles, in its original case, spaces collapsed.

    Recognizes `Prof. Dr.`, `Doç. Dr.`, `Dr. Öğr. Üyesi`, `Arş. Gör.`, `Öğr. Gör.`, `Dr.`,
    `Yrd. Doç. Dr.`, `Okt.`, `Uzm.` and their spellings without dots, without Turkish letters
    or in any case ("DR.ÖĞR.ÜYESİ", "doc dr"). Only leading words are removed, so a surname that
    happens to look like a title elsewhere in the name is kept.
    """
    rest = unicodedata.normalize("NFC", name).strip()
    while True:
        match = _LEADING_WORD.match(rest)
        if match is None or _ascii_fold(match.group(1)) not in _TITLE_WORDS:
            break
        # A title word must be a word of its own: followed by a dot, a space or the end.
        after = rest[match.end(1) : match.end(1) + 1]
        if after and after != "." and not after.isspace():
            break
        rest = rest[match.end() :]
    return _SPACES.sub(" ", rest).strip()


def person_key(name: str) -> str:
    """A key under which every spelling of one person's name compares equal.

    Titles removed, whitespace collapsed, Turkish case folded: "Doç. Dr. ELİF KARTAL",
    "ELİF KARTAL" and "Elif  Kartal" all give "elif kartal". Applying it to a key returns the
    key unchanged.
    """
    return turkish_casefold(strip_titles(name)).strip(" .,;:")


def teacher_keys(hocalar: str) -> list[str]:
    """Keys of every teacher named in a `Hocalar` field, in order, without duplicates.

    Several teachers are separated by `,`, `;`, `/`, `&`, `|`, line breaks or a spaced dash
    (" - "). An empty field gives an empty list.
    """
    keys: list[str] = []
    for part in _TEACHER_SEPARATORS.split(hocalar):
        key = person_key(part)
        if key and key not in keys:
            keys.append(key)
    return keys


def code_digits(text: str | None) -> str | None:
    """The check-in code in `text` as six ASCII digits, or None when `text` cannot be one.

    Phones with an Arabic, Persian or full-width keyboard type `١٢٣٤٥٦`, `۱۲۳۴۵۶` or `１２３４５６`:
    any Unicode decimal digit counts as its value. Spaces around the code are ignored.
    """
    if text is None:
        return None
    stripped = text.strip()
    if len(stripped) != CODE_LENGTH:
        return None
    if stripped.isascii():  # the usual keyboard: no per-character lookup (the hot path)
        return stripped if stripped.isdigit() else None
    try:
        return "".join(str(unicodedata.decimal(c)) for c in stripped)
    except ValueError:  # not a decimal digit
        return None


def is_code(text: str | None) -> bool:
    """Exactly a six-digit check-in code: the one test of the check-in handler's filter and of
    the lock-free path in front of it (bot/fsm.py), so that the two never disagree."""
    return code_digits(text) is not None
