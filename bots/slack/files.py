"""Files shared with the app: which one a message carries, and its bytes from Slack.

Slack serves a shared file at `url_private_download` only with the bot token (files:read).
The token goes to Slack's own hosts (and SLACK_API_URL's, where a test points it) and never
follows a redirect elsewhere; the size Slack states is checked before anything is read, and
no more than IMAGINE_MAX_UPLOAD_BYTES is ever read.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from bots.errors import PromptError
from settings.i18n import _

TIMEOUT = 20.0
IMAGE_TYPES = "PNG, JPEG, WebP or GIF"


class SharedFile(BaseModel):
    """The parts of a Slack file object the app needs."""

    id: str = ""
    name: str = "file"
    mimetype: str = ""
    size: int | None = None
    url: str = ""

    @classmethod
    def from_event(cls, file: dict[str, Any]) -> SharedFile:
        return cls(id=str(file.get("id", "")), name=str(file.get("name") or "file"),
                   mimetype=str(file.get("mimetype", "")),
                   size=file["size"] if isinstance(file.get("size"), int) else None,
                   url=str(file.get("url_private_download") or file.get("url_private") or ""))


def shared_file(event: dict[str, Any]) -> SharedFile | None:
    """The first file of a message (a prompt takes one image), or None."""
    files = event.get("files") or []
    return SharedFile.from_event(files[0]) if files and isinstance(files[0], dict) else None


def second_file(event: dict[str, Any]) -> SharedFile | None:
    """A message's second file: with --cn, its control image."""
    files = event.get("files") or []
    return SharedFile.from_event(files[1]) if len(files) > 1 and isinstance(
        files[1], dict) else None


def check(file: SharedFile, max_bytes: int) -> None:
    """PromptError for a file that is not an image or is larger than `max_bytes`."""
    if not file.mimetype.startswith("image/"):
        kind = file.mimetype or _("of an unknown type")
        raise PromptError(_("{file_name} is {kind}, not an image: share a {IMAGE_TYPES} with "
                            "the prompt.").format(
                              file_name=file.name, kind=kind, IMAGE_TYPES=IMAGE_TYPES))
    if file.size is not None and file.size > max_bytes:
        raise _too_big(file, max_bytes)


def _too_big(file: SharedFile, max_bytes: int) -> PromptError:
    return PromptError(_("{file_name} is larger than {megabytes}, the most an image may have "
                         "(IMAGINE_MAX_UPLOAD_BYTES): share a smaller one.").format(
                           file_name=file.name, megabytes=_megabytes(max_bytes)))


def _megabytes(count: int) -> str:
    if count < 1024 * 1024:
        return f"{count / 1024:.0f} KB"
    return f"{count / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")


def download(file: SharedFile, token: str, max_bytes: int, api_url: str) -> bytes:
    """The file's bytes, with the bot token; PromptError if Slack will not hand them over."""
    check(file, max_bytes)
    allowed = _allowed_hosts(api_url)
    if not file.url or (urlsplit(file.url).hostname not in allowed
                        and not _slack_host(file.url)):
        raise PromptError(_("Slack gave no download address for {file_name}: share it again.").format(
                              file_name=file.name))
    opener = urllib.request.build_opener(_SlackOnlyRedirects(allowed))
    request = urllib.request.Request(file.url, headers={"Authorization": f"Bearer {token}"})
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            if response.headers.get_content_type() == "text/html":
                # What Slack serves a token without files:read: its sign-in page.
                raise PromptError(_("Slack answered with a sign-in page instead of "
                                    "{file_name}: reinstall the app with the files:read scope.").format(
                                      file_name=file.name))
            data = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        hint = _(" (reinstall the app with the files:read scope)") if exc.code in (401, 403) else ""
        raise PromptError(_("Slack would not hand over {file_name} (HTTP {exc_code}){hint}; "
                            "share it again.").format(
                              file_name=file.name, exc_code=exc.code, hint=hint)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise PromptError(_("Could not download {file_name} from Slack ({exc}); share it again.").format(
                              file_name=file.name, exc=exc)) from None
    if len(data) > max_bytes:
        raise _too_big(file, max_bytes)
    return data


def _allowed_hosts(api_url: str) -> set[str]:
    host = urlsplit(api_url).hostname
    return {host} if host else set()


def _slack_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return urlsplit(url).scheme == "https" and (host == "slack.com" or host.endswith(".slack.com"))


class _SlackOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """urllib copies Authorization onto a redirect: follow one only to Slack's hosts."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any,
                         newurl: str) -> Any:
        if urlsplit(newurl).hostname not in self.allowed and not _slack_host(newurl):
            raise urllib.error.HTTPError(newurl, code, "redirect away from Slack refused",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
