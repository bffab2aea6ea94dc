"""The web server as seen from outside: IMAGINE_PUBLIC_URL answers from this host, and the
secrets that guard it are set when it binds beyond loopback."""

from __future__ import annotations

import http.client
import ipaddress
import urllib.error
import urllib.request

from bots.doctor.report import Check, fail, ok, skipped, warn
from settings import Settings

TIMEOUT = 3.0
LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_public_url(settings: Settings) -> Check:
    name = "public url"
    if "public_url" not in settings.model_fields_set:
        return skipped(name, f"IMAGINE_PUBLIC_URL unset (links say {settings.public_url})")
    url = settings.public_url.rstrip("/") + "/healthz"
    try:
        status, kind = _get(url)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return fail(name, f"{url} unreachable from this host: {exc}",
                    "start `imagine web` (or `imagine up`), and check DNS, the proxy in front "
                    "of it and IMAGINE_PUBLIC_URL itself (if only the outside world can "
                    "reach it, check from there)")
    if status in (200, 503) and kind.startswith("application/json"):
        return ok(name, f"{url} answers ({status})")
    return warn(name, f"{url} answers {status}, not as imagine's /healthz does",
                "make sure the URL (and the proxy in front) leads to `imagine web`")


def _get(url: str) -> tuple[int, str]:
    """Status and Content-Type of a GET (an HTTP error status is an answer too)."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            return answer.status, answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", "")

def check_secrets(settings: Settings) -> Check:
    name = "web secrets"
    if is_loopback(settings.web_host):
        return skipped(name, f"the web server binds to {settings.web_host} (this host only)")
    missing = [variable for variable, value in (("IMAGINE_URL_SECRET", settings.url_secret),
                                                ("IMAGINE_API_TOKEN",
                                                 settings.api_token or settings.api_tokens or None))
               if value is None]
    if missing:
        return fail(name, f"the web server binds to {settings.web_host} but "
                          f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} unset: "
                          "anyone who reaches it can draw prompts and use the API",
                    f"set {', '.join(missing)} (e.g. `openssl rand -hex 32`), or "
                    "IMAGINE_WEB_HOST=127.0.0.1 behind a proxy")
    return ok(name, f"binds to {settings.web_host}; IMAGINE_URL_SECRET and IMAGINE_API_TOKEN "
                    "are set")
