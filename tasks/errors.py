"""Errors the queue raises: no room for another job, or no such job."""

from __future__ import annotations

from settings.errors import ImagineError


class QueueFullError(ImagineError):
    """The global queue or the user's share of it is full; try again later."""


class JobNotFound(ImagineError):
    """No job with that id (it never existed or its record expired)."""
