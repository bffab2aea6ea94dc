"""Errors of the front ends' shared parts: a prompt or a follow-up that cannot be drawn."""

from __future__ import annotations

from settings.errors import ImagineError


class PromptError(ImagineError):
    """The prompt text, one of its flags or a button's request is invalid (shown to the user)."""
