"""Who calls the API: the name of the bearer token a request presents.

IMAGINE_API_TOKENS names each token (JSON name → token) so that API jobs are attributed to a
name (`api:<name>`: quotas, the audit trail) and IMAGINE_API_ADMINS can name the tokens that
may read the audit trail. IMAGINE_API_TOKEN stays valid as the token named "default" (a token
of that name in IMAGINE_API_TOKENS takes its place). With no token configured the API is open
and callers are known by their address.
"""

from __future__ import annotations

import hashlib
import hmac

from flask import g

from settings import Settings

DEFAULT_NAME = "default"  # the name IMAGINE_API_TOKEN's holder goes by


def configured(settings: Settings) -> dict[str, str]:
    """Every valid token by its name (empty: the API needs no token)."""
    tokens = {name: token.get_secret_value() for name, token in settings.api_tokens.items()}
    if settings.api_token is not None and DEFAULT_NAME not in tokens:
        tokens[DEFAULT_NAME] = settings.api_token.get_secret_value()
    return tokens


def required(settings: Settings) -> bool:
    """Whether the API asks for a bearer token."""
    return settings.api_token is not None or bool(settings.api_tokens)


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    scheme, _, value = (header or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def token_name(settings: Settings, header: str | None) -> str | None:
    """The name of the token an Authorization header presents, None when it presents none
    or one that is not valid. Every configured token is compared, each in constant time over
    equal-length digests, so the time taken says nothing about which token came close."""
    given = bearer(header)
    if given is None:
        return None
    wanted = _digest(given)
    found: str | None = None
    for name, token in configured(settings).items():
        if hmac.compare_digest(wanted, _digest(token)) and found is None:
            found = name
    return found


def is_admin(settings: Settings, name: str | None) -> bool:
    """Whether the token named `name` may read the audit trail (IMAGINE_API_ADMINS)."""
    return name is not None and name in settings.api_admins


def owner_of(settings: Settings, name: str) -> str:
    """Who owns a job a token holder made (only the owner may cancel it): a short hash of
    the token itself, as jobs made with IMAGINE_API_TOKEN were always marked."""
    token = configured(settings).get(name, name)
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def remember(name: str) -> None:
    """Keep the caller's token name for the rest of this request (api.authorise sets it)."""
    g.imagine_token_name = name


def current() -> str | None:
    """The token name of this request's caller, None for an anonymous one."""
    name = g.get("imagine_token_name")
    return name if isinstance(name, str) else None
