"""The project's one exception hierarchy.

It lives at the bottom of the import graph (generator/) so that every layer can raise and
catch it: bots → tasks → generator. Every message is meant to be shown to a person as is:
it says what was wrong and what is allowed.
"""

from __future__ import annotations


class ImagineError(Exception):
    """Base of every error whose message a user or operator can act on."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(ImagineError):
    """A setting has a value that cannot work; raised at start-up."""


class PromptError(ImagineError):
    """The prompt text or one of its flags is invalid (shown to the chat user)."""


class ModelError(ImagineError):
    """The model could not be loaded or does not support what was asked."""


class GenerationError(ImagineError):
    """Generation failed for a reason the operator can fix (out of memory, bad device)."""


class GenerationCancelled(ImagineError):
    """The job was cancelled while it was running."""


class QueueFullError(ImagineError):
    """The global queue or the user's share of it is full; try again later."""


class JobNotFound(ImagineError):
    """No job with that id (it never existed or its record expired)."""
