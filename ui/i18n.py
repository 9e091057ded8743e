"""Every user-facing string comes from a gettext catalog: `locales/<locale>/LC_MESSAGES/attn.po`.

The catalogs are monolingual: a msgid is a stable symbolic key (`start.linked`), not the English
text. The English catalog holds the English wording, and every other catalog falls back to it
for a missing or empty entry (`GNUTranslations.add_fallback`). Why: rewording the English never
orphans a translation (its key stays), and Weblate and Poedit both handle monolingual PO files.
Translators see the English above each entry as an extracted comment (`#.`), which
`scripts/i18n.py update` keeps current. Adding a language is adding a catalog (README,
"Translations").

The locale of an update is the sender's Telegram language (`LocaleMiddleware`: the catalog of
the language code's primary subtag, so `tr`/`tr-TR` get Turkish; English otherwise) and lives
in aiogram's context variable (`I18n.use_locale`), so handlers just call `t(key, **values)`.
Code that runs outside an update (outbox delivery, the status board) names the recipient's
locale: `t(key, locale=...)` or `with use_locale(...)`.

Placeholders are `str.format` fields. `t()` HTML-escapes every value (replies are HTML) unless it
is wrapped in `Raw`. Counted nouns go through `tn(key, n, **values)` (ngettext; a plural entry's
msgid_plural is its key again). Times, dates and numbers are formatted by Babel for the current
locale (`time_text`, `date_time_text`, `percent_number`).

Compiled catalogs (`.mo`) are built by `scripts/i18n.py compile` (`make install`, the Docker
build) and are not committed. When a `.mo` is missing or older than its `.po`, the `.po` is
compiled in memory at load instead, so an edited catalog is never silently ignored.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, tzinfo
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any, Final

from aiogram import Dispatcher
from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from babel import Locale
from babel.dates import DateTimePattern, parse_pattern
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import NumberPattern
from babel.numbers import parse_pattern as parse_number_pattern

DOMAIN: Final = "attn"
DEFAULT_LOCALE: Final = "en"


def N_(key: str) -> str:
    """Marks a key for extraction (`scripts/i18n.py`) where it is not `t()`'s literal argument."""
    return key


# Keys formed at run time (f"role.{role}", f"level.{n}", f"why.{reason}", f"cmd.{command}"):
# named here so that extraction keeps them in the template.
RUNTIME_KEYS: Final = (
    N_("role.student"),
    N_("role.teacher"),
    N_("level.1"),
    N_("level.2"),
    N_("level.3"),
    N_("why.LOCATION_TOO_FAR"),
    N_("why.LOCATION_FORWARDED"),
    N_("why.LOCATION_STALE"),
    N_("why.LOCATION_MISSING"),
    N_("why.LOCATION_VIA_BOT"),
    N_("why.LOCATION_NO_ACCURACY"),
    N_("why.LOCATION_INACCURATE"),
    N_("why.OVER_CAP"),
    N_("cmd.start"),
    N_("cmd.help"),
    N_("cmd.login"),
    N_("cmd.start_session"),
    N_("cmd.end_session"),
    N_("cmd.attendees"),
    N_("cmd.history"),
    N_("cmd.export"),
    N_("cmd.my_attendance"),
    N_("cmd.excuse"),
    N_("cmd.reminders"),
    N_("cmd.receipts"),
    N_("cmd.me"),
    N_("cmd.logout"),
    N_("cmd.privacy"),
    N_("cmd.cancel"),
)

COMMANDS: Final = (
    "start",
    "help",
    "login",
    "start_session",
    "end_session",
    "attendees",
    "history",
    "export",
    "my_attendance",
    "excuse",
    "reminders",
    "receipts",
    "me",
    "logout",
    "privacy",
    "cancel",
)


class Raw(str):
    """A value already rendered as HTML (another `t()` result); `t()` does not escape it."""

    __slots__ = ()


# --- loading ---------------------------------------------------------------------------


def locales_dir() -> Path:
    """The catalogs beside this module: `ui/locales` links to the top-level `locales/` in a
    checkout (and an editable install), and a built wheel carries them as package data."""
    return Path(__file__).resolve().parent / "locales"


def compile_po(po: Path) -> bytes:
    """The `.mo` image of a `.po` file (Babel leaves empty and fuzzy entries out, so they fall
    back to English)."""
    with po.open("rb") as source:
        catalog = read_po(source, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    return buffer.getvalue()


def load_translations(po: Path) -> gettext.GNUTranslations:
    """The compiled `.mo` next to `po` when it is at least as new, else `po` compiled now."""
    mo = po.with_suffix(".mo")
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as compiled:
            return gettext.GNUTranslations(compiled)
    return gettext.GNUTranslations(io.BytesIO(compile_po(po)))


class Catalogs(I18n):
    """aiogram's `I18n` over this project's catalogs: every locale falls back to English, and a
    locale without a catalog (a stored preference whose catalog was removed) reads English
    rather than bare keys."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__(path=path or locales_dir(), default_locale=DEFAULT_LOCALE, domain=DOMAIN)
        # Per locale, the singular texts looked up so far: the catalogs never change after
        # loading, so `t()` (on the check-in path) pays one dict lookup after the first call.
        self.memo: dict[str, dict[str, str]] = {name: {} for name in self.locales}

    def reload(self) -> None:
        super().reload()
        self.memo = {name: {} for name in self.locales}

    def remember(self, key: str, locale: str | None) -> str:
        """`gettext(key)` in `locale` (default: the current one), noted in `memo`."""
        locale = locale or self.ctx_locale.get()
        text = self.gettext(key, locale=locale)
        table = self.memo.get(locale)
        if table is not None:
            table[key] = text
        return text

    def find_locales(self) -> dict[str, gettext.GNUTranslations]:
        names = {p.parent.parent.name for p in self.path.glob(f"*/LC_MESSAGES/{self.domain}.[pm]o")}
        found = {
            name: load_translations(self.path / name / "LC_MESSAGES" / f"{self.domain}.po")
            for name in sorted(names)
        }
        english = found.get(self.default_locale)
        if english is None:
            raise RuntimeError(f"no {self.default_locale!r} catalog under {self.path}")
        for name, translations in found.items():
            if name != self.default_locale:
                translations.add_fallback(english)
        return found

    @contextmanager
    def context(self) -> Iterator[Catalogs]:
        """aiogram's `I18n.context()`, also noted where `t()` looks first (`I18n.get_current`
        raises and catches a LookupError outside a context: 2 µs a call)."""
        token = _ACTIVE.set(self)
        try:
            with super().context():
                yield self
        finally:
            _ACTIVE.reset(token)

    def gettext(
        self, singular: str, plural: str | None = None, n: int = 1, locale: str | None = None
    ) -> str:
        locales = self.locales
        translations = locales.get(locale or self.ctx_locale.get()) or locales[DEFAULT_LOCALE]
        if plural is None:
            return translations.gettext(singular)
        return translations.ngettext(singular, plural, n)


_ACTIVE: ContextVar[Catalogs | None] = ContextVar("attn_catalogs", default=None)


@functools.cache
def default_catalogs() -> Catalogs:
    """The catalogs under `locales_dir()`, read once on first use (immutable data)."""
    return Catalogs()


def current() -> Catalogs:
    """The catalogs of this context (set by `LocaleMiddleware` or `Catalogs.context()`), else
    the default ones."""
    return _ACTIVE.get() or default_catalogs()


def current_locale() -> str:
    return current().current_locale


@contextmanager
def use_locale(locale: str) -> Iterator[None]:
    """Render in `locale` (the recipient's) inside the block: for code outside an update."""
    with current().use_locale(locale):
        yield


def pick_locale(language_code: str | None, available: Collection[str]) -> str:
    """The catalog for a Telegram `language_code` ("tr", "tr-TR", "pt-br"): its primary subtag
    when that has a catalog, English otherwise."""
    if language_code:
        language = language_code.replace("_", "-").split("-", 1)[0].lower()
        if language in available:
            return language
    return DEFAULT_LOCALE


class LocaleMiddleware(I18nMiddleware):
    """Sets the update's locale from the sender's Telegram language.

    Registered once per update (an update outer middleware, after aiogram's own that finds the
    sender) and on the `errors` observer, so that the error router answers in the sender's
    language too: `register(dispatcher)`. aiogram's `I18nMiddleware.setup` would put it on every
    event observer instead, and its call enters two context managers; this one sets the three
    context variables directly (the check-in path runs it for every code).
    """

    def __init__(self, catalogs: Catalogs) -> None:
        super().__init__(i18n=catalogs, i18n_key=None)
        self._catalogs = catalogs

    def register(self, dispatcher: Dispatcher) -> LocaleMiddleware:
        dispatcher.update.outer_middleware(self)
        dispatcher.errors.outer_middleware(self)
        return self

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        sender: User | None = data.get("event_from_user")
        return pick_locale(sender.language_code if sender else None, self._catalogs.locales)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        catalogs = self._catalogs
        locale = catalogs.ctx_locale.set(await self.get_locale(event, data))
        active = _ACTIVE.set(catalogs)
        instance = catalogs.set_current(catalogs)
        try:
            return await handler(event, data)
        finally:
            catalogs.reset_current(instance)
            _ACTIVE.reset(active)
            catalogs.ctx_locale.reset(locale)


# --- rendering -------------------------------------------------------------------------


def _fill(template: str, values: dict[str, object]) -> str:
    return template.format(
        **{k: (v if isinstance(v, Raw) else escape(str(v), quote=False)) for k, v in values.items()}
    )


def t(key: str, /, *, locale: str | None = None, **values: object) -> str:
    """The message `key` in the current locale (or `locale`), with `values` HTML-escaped
    (except `Raw` ones) and filled in."""
    catalogs = _ACTIVE.get() or default_catalogs()
    table = catalogs.memo.get(locale or catalogs.ctx_locale.get())
    template = table.get(key) if table is not None else None
    if template is None:
        template = catalogs.remember(key, locale)
    if not values:
        return template
    return _fill(template, values)


def tn(key: str, n: int, /, *, locale: str | None = None, **values: object) -> str:
    """The plural message `key` in the form for the count `n` (the count itself is passed as
    one of `values`, under the placeholder's name)."""
    template = (_ACTIVE.get() or default_catalogs()).gettext(key, key, n, locale=locale)
    if not values:
        return template
    return _fill(template, values)


# --- times, dates and numbers (Babel) ------------------------------------------------------

# CLDR skeletons: the locale orders the fields and picks separators and month names. `H` is the
# 24-hour clock the university uses, in every language.
TIME: Final = "Hm"  # 14:05
DATE: Final = "yMMMd"  # en: Dec 1, 2026 · tr: 1 Ara 2026
DAY: Final = "MMMd"  # en: Dec 1 · tr: 1 Ara


@functools.cache
def _locale(name: str) -> Locale:
    return Locale.parse(name)


@functools.cache
def _pattern(skeleton: str, locale: str) -> DateTimePattern:
    """The locale's pattern for a skeleton, parsed once (a time is in every check-in reply)."""
    return parse_pattern(_locale(locale).datetime_skeletons[skeleton])


@functools.cache
def _date_and_time(locale: str) -> str:
    """How the locale joins a date ({1}) and a time ({0}): "{1}, {0}" in English."""
    return str(_locale(locale).datetime_formats["medium"]).replace("'", "")


def time_text(moment: datetime, tz: tzinfo) -> str:
    """Hours and minutes in `tz`, as the current locale writes them."""
    locale = current_locale()
    return _pattern(TIME, locale).apply(moment.astimezone(tz), _locale(locale))


def date_time_text(moment: datetime, tz: tzinfo, *, year: bool = True) -> str:
    """Date (the month by name) and time in `tz`, as the current locale writes them."""
    locale = current_locale()
    local, babel_locale = moment.astimezone(tz), _locale(locale)
    date = _pattern(DATE if year else DAY, locale).apply(local, babel_locale)
    time = _pattern(TIME, locale).apply(local, babel_locale)
    return _date_and_time(locale).replace("{1}", date).replace("{0}", time)


_PERCENT_NUMBER: Final[NumberPattern] = parse_number_pattern("#,##0.#")


def percent_number(value: float) -> str:
    """A percentage's number, at most one decimal, with the locale's decimal sign; the catalog
    places the % sign ("{percent}%", Turkish "%{percent}")."""
    return str(_PERCENT_NUMBER.apply(Decimal(f"{value:.1f}"), _locale(current_locale())))
