"""The project's exception base, at the bottom of the import graph so every layer shares it.

Every message is meant to be shown to a person as is: it says what was wrong and what is
allowed. Each layer above adds the errors it raises in an `errors` module of its own (this
one names none of them: it sits below them all); front ends turn any `ImagineError` into a
message in one place.
"""

from __future__ import annotations


class ImagineError(Exception):
    """Base of every error whose message a user or operator can act on."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class ConfigError(ImagineError):
    """A setting has a value that cannot work; raised at start-up."""
