"""Errors the generator raises: a model that cannot load, a run that fails or is cancelled."""

from __future__ import annotations

from settings.errors import ImagineError


class ModelError(ImagineError):
    """The model could not be loaded or does not support what was asked."""


class GenerationError(ImagineError):
    """Generation failed for a reason the operator can fix (out of memory, bad device)."""


class LoraError(GenerationError):
    """A LoRA a request names cannot be used: unknown, unreadable, or made for another model."""


class GenerationCancelled(ImagineError):
    """The job was cancelled while it was running."""


class ImageRejected(ImagineError):
    """An image a user handed in (image prompt, mask) cannot be used; the message says why."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's first line, cut to fit a one-line message (libraries' errors run on
    for pages)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return first if len(first) <= limit else first[: limit - 1] + "…"
