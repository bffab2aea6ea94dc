"""Text as the prompt blocklist compares it: the tricks that make a word look the same to a
person but different to a program are undone, on the entries and on the prompts alike.

- width and compatibility forms (NFKC): `Ｆｏｏ` → `Foo`, `ﬁ` → `fi`;
- invisible characters: zero-width spaces and joiners, soft hyphens (Unicode format, Cf);
- accents and other combining marks: `fóo` → `foo`;
- look-alike letters of other scripts (Cyrillic `о`, Greek `ο`, …) → the Latin letter, from
  Unicode's confusables table as the confusable-homoglyphs package (MIT) ships it;
- case (casefold: `ß` → `ss`).

`forms(text)` then gives the spellings a plain entry is looked for in, as words separated
by single spaces: the words as written, and each word with its inner punctuation dropped
(`f.o.o`, `f-o-o`, `f_o_o` → `foo`). Spaced-out letters (`f o o`) are the blocklist's to find:
it looks for each word entry also as its letters separated by spaces, so only single letters
match, never longer words (`an al` is not `anal`), and `a f o o` is found as well.
"""

from __future__ import annotations

import functools
import re
import unicodedata

WORD = re.compile(r"[^\W_]+")  # letters and digits; `_` separates like punctuation
NOT_WORD = re.compile(r"[\W_]+")
# Scripts written without spaces between words: an entry in them matches anywhere in the text.
UNSPACED = re.compile(r"[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
DROPPED_CATEGORIES = frozenset({"Cf", "Mn", "Me"})  # invisible formatting, combining marks


@functools.cache
def look_alikes() -> dict[str, str]:
    """Each non-ASCII character that looks like an ASCII letter or digit → that character.

    Loaded on first use (the table is ~1 MB of JSON, 0.2 s): only servers with a blocklist
    pay for it. A look-alike whose listed twin is itself non-ASCII (Greek `τ` → small capital
    `ᴛ`) is followed one step further to reach the Latin letter."""
    from confusable_homoglyphs.confusables import confusables_data  # type: ignore[import-untyped]

    def ascii_twin(char: str, depth: int = 0) -> str | None:
        twins = [entry["c"] for entry in confusables_data.get(char, ())]
        for twin in twins:
            if len(twin) == 1 and twin.isascii() and twin.isalnum():
                return str(twin)
        if depth == 0:
            for twin in twins:
                if len(twin) == 1 and not twin.isascii():
                    found = ascii_twin(twin, 1)
                    if found is not None:
                        return found
        return None

    table: dict[str, str] = {}
    for char in confusables_data:
        if len(char) == 1 and not char.isascii():
            twin = ascii_twin(char)
            if twin is not None:
                table[char] = twin
    return table


def normalise(text: str) -> str:
    """`text` with width, invisible characters, marks, look-alikes and case undone."""
    text = unicodedata.normalize("NFKC", text)
    text = "".join(char for char in unicodedata.normalize("NFD", text)
                   if unicodedata.category(char) not in DROPPED_CATEGORIES)
    table = look_alikes()
    return unicodedata.normalize("NFC", "".join(_latin(table, char) for char in text).casefold())


def _latin(table: dict[str, str], char: str) -> str:
    """The Latin twin of a look-alike, tried in lower case first (Greek `Ι` looks like `l`,
    its lower case `ι` like `i`: the letter it stands for), then as written (the table
    knows Cyrillic `К` but not `к`)."""
    folded = char.casefold()
    return table.get(folded) or table.get(char, char)


def words(text: str) -> list[str]:
    """The words of already normalised text (letters and digits; anything else separates)."""
    return WORD.findall(text)


def forms(normalised: str) -> tuple[str, ...]:
    """The spellings of normalised text a plain entry is looked for in (see the module doc);
    each is words joined by single spaces, the identical ones once."""
    as_written = " ".join(words(normalised))
    squeezed = [joined for chunk in normalised.split()
                if (joined := NOT_WORD.sub("", chunk))]
    return tuple(dict.fromkeys((as_written, " ".join(squeezed))))


def unspaced(entry: str) -> bool:
    """An entry in a script written without spaces (Chinese, Japanese, Thai)."""
    return UNSPACED.search(entry) is not None
