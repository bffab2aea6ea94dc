"""Errors the queue raises: no room for another job (in the queue, or in the user's share of
it), or no such job."""

from __future__ import annotations

from settings.errors import ImagineError


class QueueFullError(ImagineError):
    """The global queue or the user's share of it is full; try again later."""


class UserLimitError(QueueFullError):
    """This user already has IMAGINE_MAX_JOBS_PER_USER unfinished jobs (HTTP: 429, not 503)."""


class JobNotFound(ImagineError):
    """No job with that id (it never existed or its record expired)."""
