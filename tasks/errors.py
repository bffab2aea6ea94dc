"""Errors the tasks layer raises: no room for another job (in the queue, or in the user's
share of it), no such job, an image gone from storage, and outbound requests refused or
failed."""

from __future__ import annotations

import http.client

from settings.errors import ImagineError


class QueueFullError(ImagineError):
    """The global queue or the user's share of it is full; try again later."""


class UserLimitError(QueueFullError):
    """This user already has IMAGINE_MAX_JOBS_PER_USER unfinished jobs (HTTP: 429, not 503)."""


class PolicyRefusal(ImagineError):
    """A rule of the server's policy refused the job (tasks/policy). `status` is the HTTP
    answer, `rule` what the audit trail records (never shown to the user), `retry_after`
    the seconds until it may work (quotas)."""

    status = 403

    def __init__(self, message: str, *, rule: str = "", retry_after: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.retry_after = retry_after


class PromptRefused(PolicyRefusal):
    """The prompt (or negative prompt, or its translation or enhancement) hit the blocklist."""


class AccessDenied(PolicyRefusal):
    """This user, channel, server or role may not use the bot, or the user is banned."""


class QuotaExceeded(PolicyRefusal):
    """The user's daily quota is spent; `retry_after` is the seconds to the reset."""

    status = 429


class JobNotFound(ImagineError):
    """No job with that id (it never existed or its record expired)."""


class ImageMissing(ImagineError):
    """A job names an image that is no longer in storage (retention, `imagine gc`, by hand)."""


class OutboundError(ImagineError):
    """A request to an address a user gave was refused, or did not finish.

    `retryable` says whether the same request may work later (a timeout, a reset connection,
    a name that does not resolve yet) or cannot (a refused address, a bad certificate).
    """

    retryable = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class OutboundRefused(OutboundError):
    """The URL breaks a rule: not http(s), credentials in it, a non-public address, too many
    redirects. Nothing was sent to it."""


class OutboundTimeout(OutboundError):
    """The whole exchange took longer than its deadline (IMAGINE_OUTBOUND_TIMEOUT)."""

    retryable = True


class OutboundUnreachable(OutboundError):
    """No answer: the name does not resolve, the connection failed or broke mid-reply."""

    retryable = True


class OutboundTooLarge(OutboundError):
    """The reply's body is longer than the caller's cap; reading stopped there."""

    def __init__(self, message: str, *, status: int, headers: http.client.HTTPMessage) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers
