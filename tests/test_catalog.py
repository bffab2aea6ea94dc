"""The message catalogs: every message marked in the code (`_()`, `ngettext`, `N_()`) has a
Simplified Chinese translation with the same placeholders, every .po file parses, and
user-facing errors are not left unmarked (a string literal given straight to an error the
user sees must be inside `_()`). Static: no services, well under a second."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from settings.i18n import LOCALES_DIR

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bots", "generator", "tasks", "settings")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
COMPLETE = ("zh_CN",)  # catalogs that must translate every message
PLACEHOLDER = re.compile(r"\{(\w*)[^{}]*\}")

# Errors whose messages are for the operator (start-up configuration), not for a user: they
# stay English on purpose (README "Languages").
OPERATOR_ERRORS = {"ConfigError"}


def extracted() -> dict[str, list[str]]:
    """msgid (the singular, and the plural of ngettext) → where it is marked (file:line)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for filename, line, message, _comments, _context in extract_from_dir(
                ROOT / package, method_map=[("**.py", "python")], keywords=KEYWORDS):
            for text in message if isinstance(message, tuple) else (message,):
                if text:
                    found.setdefault(text, []).append(f"{package}/{filename}:{line}")
    return found


def catalog(locale: str) -> dict[str, str | tuple[str, ...]]:
    """The merged translations of a locale's .po files (a file that does not parse fails)."""
    merged: dict[str, str | tuple[str, ...]] = {}
    for path in sorted((LOCALES_DIR / locale / "LC_MESSAGES").glob("*.po")):
        with path.open("rb") as handle:
            parsed = read_po(handle, locale=locale, abort_invalid=True)
        for message in parsed:
            if not message.id:
                continue
            ids = message.id if isinstance(message.id, tuple) else (message.id,)
            for text in ids:
                if message.string and any(message.string if isinstance(
                        message.string, tuple) else (message.string,)):
                    merged[text] = message.string
    return merged


def placeholders(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def test_every_po_file_parses() -> None:
    files = sorted(LOCALES_DIR.glob("*/LC_MESSAGES/*.po"))
    assert files
    for path in files:
        with path.open("rb") as handle:
            read_po(handle, abort_invalid=True)


@pytest.mark.parametrize("locale", COMPLETE)
def test_every_marked_message_is_translated_with_the_same_placeholders(locale: str) -> None:
    translations = catalog(locale)
    messages = extracted()
    missing = [f"{where[0]}: {text!r}" for text, where in sorted(messages.items())
               if text not in translations]
    assert not missing, (f"{len(missing)} messages have no {locale} translation (add them "
                         f"to settings/locales/{locale}/LC_MESSAGES/<task>.po):\n"
                         + "\n".join(missing))
    wrong = []
    for text, where in sorted(messages.items()):
        for translated in _forms(translations[text]):
            if placeholders(translated) != placeholders(text):
                wrong.append(f"{where[0]}: {text!r} → {translated!r}")
    assert not wrong, "placeholders differ between msgid and translation:\n" + "\n".join(wrong)


def _forms(translation: str | tuple[str, ...]) -> tuple[str, ...]:
    return translation if isinstance(translation, tuple) else (translation,)


def _error_classes() -> set[str]:
    """The names of ImagineError and its subclasses defined in the code (by name)."""
    bases: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases.setdefault(node.name, set()).update(
                        base.id if isinstance(base, ast.Name) else getattr(base, "attr", "")
                        for base in node.bases)
    errors = {"ImagineError"}
    while True:
        more = {name for name, parents in bases.items() if parents & errors} - errors
        if not more:
            return errors
        errors |= more


def unmarked_errors() -> list[str]:
    """file:line of each error built with a bare string (or f-string) as its message."""
    errors = _error_classes() - OPERATOR_ERRORS
    found = []
    for package in ("bots", "generator", "tasks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in errors and node.args
                        and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
                        and isinstance(getattr(node.args[0], "value", ""), str)):
                    found.append(f"{relative}:{node.lineno}: {node.func.id}(…)")
    return found


def test_user_facing_errors_are_marked_for_translation() -> None:
    found = unmarked_errors()
    assert not found, ("these errors reach users with an English literal: wrap the message "
                       "in _() (settings.i18n) and add its translation, or, for an "
                       "operator-only error, use ConfigError:\n" + "\n".join(found))

