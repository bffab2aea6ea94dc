"""AUTOMATIC1111's emphasis syntax read into weighted pieces of text.

    (words)        × 1.1 (each pair of round brackets multiplies again: ((words)) × 1.21)
    [words]        ÷ 1.1
    (words:1.3)    × 1.3
    \\( \\) \\[ \\] \\\\   the bracket (or backslash) itself, no weight
    BREAK          ends the current 75-token chunk; the rest starts a new one

This is the syntax people copy from model sites, so it is read the way that web UI reads it,
stray brackets included: a bracket never closed weights everything after it, a closing
bracket with nothing open is plain text. Compel's own syntax (`word+`, `.and()`, quotes) is
not read: in an A1111 prompt `close-up` and `"sign"` are words.

Pure Python, no torch: the front ends call `check` to refuse a bad weight before queuing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from settings.errors import ImagineError
from settings.i18n import _

UP = 1.1  # what one pair of round brackets multiplies by
WEIGHT_MIN = 0.0
WEIGHT_MAX = 3.0  # far past the ~1.6 where images fall apart; above it is surely a typo

_PIECE = re.compile(
    r"""\\(?P<escaped>[()\[\]\\])
      | (?P<open>[(\[])
      | :\s*(?P<weight>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)
      | (?P<close>[)\]])
      | (?P<text>[^\\()\[\]:]+|[:\\])""",
    re.VERBOSE,
)
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


class PromptSyntaxError(ImagineError):
    """A prompt's weight syntax cannot be used; the message says what is allowed."""


@dataclass(frozen=True)
class Piece:
    """Text and the weight it is drawn with (1.0 = as written)."""

    text: str
    weight: float = 1.0


Chunk = tuple[Piece, ...]


def parse(prompt: str) -> tuple[Chunk, ...]:
    """The prompt's chunks (split at BREAK), each its pieces, neighbours of equal weight joined.

    Raises PromptSyntaxError for a (words:W) weight outside WEIGHT_MIN..WEIGHT_MAX.
    """
    pieces: list[Piece | None] = []  # None marks a BREAK
    round_opens: list[int] = []
    square_opens: list[int] = []
    for match in _PIECE.finditer(prompt):
        if match["escaped"] is not None:
            pieces.append(Piece(match["escaped"]))
        elif match["open"] == "(":
            round_opens.append(len(pieces))
        elif match["open"] == "[":
            square_opens.append(len(pieces))
        elif match["weight"] is not None and round_opens:
            _multiply(pieces, round_opens.pop(), _weight(match))
        elif match["close"] == ")" and round_opens:
            _multiply(pieces, round_opens.pop(), UP)
        elif match["close"] == "]" and square_opens:
            _multiply(pieces, square_opens.pop(), 1 / UP)
        else:
            _add_text(pieces, match[0])
    # Unclosed brackets still count, as in A1111 ("(masterpiece, best quality" is common).
    for start in round_opens:
        _multiply(pieces, start, UP)
    for start in square_opens:
        _multiply(pieces, start, 1 / UP)
    return _chunks(pieces)


def check(prompt: str) -> None:
    """Raise PromptSyntaxError when a (words:W) weight is outside WEIGHT_MIN..WEIGHT_MAX."""
    parse(prompt)


def plain_text(chunks: tuple[Chunk, ...]) -> str:
    """The words alone, without weights or breaks: what a model without weights is given."""
    words = (piece.text.strip() for chunk in chunks for piece in chunk)
    return " ".join(word for word in words if word)


def is_plain(prompt: str, chunks: tuple[Chunk, ...]) -> bool:
    """True when the prompt has no syntax at all: one chunk, one piece, weight 1, the text as written."""
    if len(chunks) > 1:
        return False
    pieces = chunks[0] if chunks else ()
    return all(piece.weight == 1.0 for piece in pieces) and "".join(p.text for p in pieces) == prompt


def _weight(match: re.Match[str]) -> float:
    weight = float(match["weight"])
    if not WEIGHT_MIN <= weight <= WEIGHT_MAX:
        raise PromptSyntaxError(
            _("Prompt weight {weight} is not allowed: write (words:W) with W from {low} to "
              "{high}, e.g. (red hat:1.3).").format(weight=match["weight"], low=f"{WEIGHT_MIN:g}",
                                                    high=f"{WEIGHT_MAX:g}")
        )
    return weight


def _add_text(pieces: list[Piece | None], text: str) -> None:
    for index, part in enumerate(_BREAK.split(text)):
        if index:
            pieces.append(None)
        if part:
            pieces.append(Piece(part))


def _multiply(pieces: list[Piece | None], start: int, factor: float) -> None:
    for index in range(start, len(pieces)):
        piece = pieces[index]
        if piece is not None:
            pieces[index] = Piece(piece.text, piece.weight * factor)


def _chunks(pieces: list[Piece | None]) -> tuple[Chunk, ...]:
    chunks: list[list[Piece]] = [[]]
    for piece in pieces:
        if piece is None:
            chunks.append([])
        elif chunks[-1] and chunks[-1][-1].weight == piece.weight:
            chunks[-1][-1] = Piece(chunks[-1][-1].text + piece.text, piece.weight)
        else:
            chunks[-1].append(piece)
    return tuple(tuple(chunk) for chunk in chunks)
