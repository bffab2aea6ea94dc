"""A local fake of Slack's Web API, shaped like Slack's documentation, recording every call.

Serves what the bot uses: auth.test, chat.postMessage/update/postEphemeral/delete/
getPermalink, files.delete, users.info (GET), usergroups.users.list,
the three steps of files_upload_v2 (files.getUploadURLExternal → POST bytes to upload_url →
files.completeUploadExternal), response_url posts, files people shared (`share_file`: their
bytes at `url_private_download`, only with the bot token, as Slack serves them), and the
signed requests a test sends.
Methods answer `{"ok": true, ...}`; scripted failures answer like Slack does: `ratelimited`
with HTTP 429 and Retry-After, other errors with HTTP 200 and `{"ok": false, "error": …}`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tests.fakes.slack_socket import Ack, SocketModeServer

BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-A0000APP-test-token"
SIGNING_SECRET = "test-signing-secret"
BOT_USER = "UBOT0001"
BOT_ID = "BBOT0001"
TEAM = "T0000001"


@dataclass
class Call:
    method: str  # "chat.postMessage", "upload", "response_url"…
    params: dict[str, Any]
    token: str
    status: int
    answer: dict[str, Any]
    body: bytes = b""
    at: float = field(default_factory=time.perf_counter)


@dataclass
class Failure:
    error: str
    status: int = 200
    retry_after: str | None = None
    channel: str | None = None  # only for calls to this channel


@dataclass
class FakeSlack:
    token: str = BOT_TOKEN
    app_token: str = APP_TOKEN  # Socket Mode's app-level token (apps.connections.open)
    url: str = ""
    socket: SocketModeServer | None = None  # set when started with socket_mode=True
    calls: list[Call] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    # Channels the bot is not a member of: posting there answers not_in_channel.
    outside: set[str] = field(default_factory=set)
    # users.info answers: overrides by user id (e.g. {"is_admin": True}); others are members.
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    # usergroups.users.list answers: user-group id → its members' ids (others: no_such_subteam).
    user_groups: dict[str, list[str]] = field(default_factory=dict)
    # Files people shared, by id: their bytes, served at url_private_download, and the file
    # objects files.info answers with.
    shared: dict[str, bytes] = field(default_factory=dict)
    shared_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Condition = field(default_factory=threading.Condition)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    # The bot token's scopes, sent as Slack does in auth.test's x-oauth-scopes header.
    scopes: tuple[str, ...] | None = None

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def fail(self, method: str, error: str, *, status: int = 200, retry_after: str | None = None,
             times: int = 1, channel: str | None = None) -> None:
        """Answer the next `times` calls of `method` with `error` (ratelimited → 429)."""
        if error == "ratelimited":
            status = 429
            retry_after = retry_after or "1"
        with self.lock:
            self.failures.setdefault(method, []).extend(
                Failure(error, status, retry_after, channel) for _ in range(times))

    def of(self, method: str, ok: bool | None = True) -> list[Call]:
        with self.lock:
            return [c for c in self.calls
                    if c.method == method and (ok is None or c.answer.get("ok") is ok)]

    def response_url(self) -> str:
        """A fresh response_url, as Slack puts in every command and interaction."""
        return f"{self.url}/response/{time.time_ns()}"

    def share_file(self, data: bytes, name: str = "image.png", mimetype: str = "image/png",
                   size: int | None = None) -> dict[str, Any]:
        """A file a person shared, as Slack's events carry it (`files` of a message)."""
        with self.lock:
            file_id = f"F{next(self._ids):08d}"
            self.shared[file_id] = data
        private = f"{self.url}/files-pri/{TEAM}-{file_id}/{name}"
        info = {"id": file_id, "name": name, "title": name, "mimetype": mimetype,
                "filetype": name.rsplit(".", 1)[-1], "size": len(data) if size is None else size,
                "url_private": private, "url_private_download": f"{private}?download=1",
                "mode": "hosted", "is_external": False}
        self.shared_info[file_id] = info
        return info

    def download(self, path: str, token: str) -> tuple[int, bytes]:
        """GET of a shared file: its bytes with the bot token, else 403 (recorded as a call)."""
        file_id = path.split("/")[2].rsplit("-", 1)[-1]
        with self.lock:
            ok = token == self.token and file_id in self.shared
            self.calls.append(Call("file_download", {"file": file_id}, token, 200 if ok else 403,
                                   {"ok": ok}))
            self.lock.notify_all()
            return (200, self.shared[file_id]) if ok else (403, b"")

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        with self.lock:
            return dict(self.messages[(channel, ts)])

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """Messages and completed uploads posted in the thread of `ts`."""
        with self.lock:
            return [m for m in self.messages.values()
                    if m["channel"] == channel and m.get("thread_ts") == ts]

    # --- the server's side ----------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ids):06d}"

    def _take_failure(self, method: str, params: dict[str, Any]) -> Failure | None:
        queue = self.failures.get(method, [])
        for index, failure in enumerate(queue):
            channel = params.get("channel") or params.get("channel_id")
            if failure.channel is None or failure.channel == channel:
                return queue.pop(index)
        return None

    def handle(self, method: str, params: dict[str, Any], token: str,
               body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            status, answer, headers = self._answer(method, params, token, body)
            self.calls.append(Call(method, params, token, status, answer, body))
            self.lock.notify_all()
            return status, answer, headers

    def wait(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Block until `predicate()` (called under the lock after each call) is truthy."""
        with self.lock:
            if not self.lock.wait_for(predicate, timeout):
                raise TimeoutError(f"no matching Slack call within {timeout} s")
            return predicate()

    def _answer(self, method: str, params: dict[str, Any], token: str,
                body: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        if method == "upload":  # the upload URL takes raw bytes, no token
            file_id = params["file_id"]
            if file_id not in self.uploads:
                return 404, {"ok": False}, {}
            self.uploads[file_id] = body
            return 200, {"ok": True}, {}
        if method == "response_url":
            return 200, {"ok": True}, {}
        if method == "apps.connections.open":
            return 200, self._apps_connections_open(token), {}
        if token != self.token:
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        failure = self._take_failure(method, params)
        if failure is not None:
            headers = {"Retry-After": failure.retry_after} if failure.retry_after else {}
            return failure.status, {"ok": False, "error": failure.error}, headers
        channel = str(params.get("channel") or params.get("channel_id") or "")
        if channel in self.outside and method in ("chat.postMessage",
                                                  "files.completeUploadExternal"):
            return 200, {"ok": False, "error": "not_in_channel"}, {}
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        scopes = {"x-oauth-scopes": ",".join(self.scopes)} if self.scopes is not None else {}
        return 200, handler(params), scopes if method == "auth.test" else {}

    def _apps_connections_open(self, token: str) -> dict[str, Any]:
        # Only an app-level token may open a connection; a bot token gets Slack's answer.
        if token.startswith("xoxb-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        if self.socket is None:  # started without socket_mode: not served, like any other
            return {"ok": False, "error": "unknown_method"}
        return {"ok": True, "url": self.socket.new_url()}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "imagine",
                "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID}

    def _chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        ts = self._next_ts()
        message = {"type": "message", "channel": params["channel"], "ts": ts,
                   "text": params.get("text", ""), "blocks": _json(params.get("blocks")) or [],
                   "thread_ts": params.get("thread_ts"), "user": BOT_USER, "bot_id": BOT_ID,
                   "edits": 0}
        self.messages[(params["channel"], ts)] = message
        return {"ok": True, "channel": params["channel"], "ts": ts,
                "message": {k: v for k, v in message.items() if k != "edits"}}

    def _chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        key = (params["channel"], params["ts"])
        if key not in self.messages:
            return {"ok": False, "error": "message_not_found"}
        message = self.messages[key]
        message.update(text=params.get("text", ""), blocks=_json(params.get("blocks")) or [],
                       edits=message["edits"] + 1)
        return {"ok": True, "channel": params["channel"], "ts": params["ts"],
                "text": message["text"]}

    def _chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"ok": True, "message_ts": self._next_ts()}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = str(params.get("user", ""))
        if not user.startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": {
            "id": user, "team_id": TEAM, "name": user.lower(), "deleted": False,
            "is_admin": False, "is_owner": False, "is_primary_owner": False,
            "is_restricted": False, "is_ultra_restricted": False, "is_bot": False,
            # Slack adds the user's language only when asked (include_locale=true).
            **({"locale": "en-US"} if str(params.get("include_locale")).lower() in (
                "true", "1") else {}),
            **self.users.get(user, {})}}

    def _usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup", ""))
        if group not in self.user_groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.user_groups[group])}

    def _conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        """The app's DM with one user (`users`): "D" + the user id, the same every time."""
        users = str(params.get("users", "")).split(",")
        if len(users) != 1 or not users[0].startswith(("U", "W")):
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "channel": {"id": "D" + users[0][1:], "is_im": True,
                                        "user": users[0]}}

    def _files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        info = self.shared_info.get(str(params.get("file", "")))
        return {"ok": True, "file": info} if info else {"ok": False, "error": "file_not_found"}

    def _files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if not params.get("filename") or not str(params.get("length", "")).isdigit():
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self._ids):08d}"
        self.uploads[file_id] = b""
        return {"ok": True, "file_id": file_id, "upload_url": f"{self.url}/upload/{file_id}"}

    def _chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.messages.pop((params.get("channel", ""), params.get("ts", "")), None) is None:
            return {"ok": False, "error": "message_not_found"}
        return {"ok": True, "channel": params["channel"], "ts": params["ts"]}

    def _chat_getPermalink(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        ts = str(params.get("message_ts", ""))
        return {"ok": True, "channel": params.get("channel"),
                "permalink": f"https://fake.slack.com/archives/{params.get('channel')}/p"
                             + ts.replace(".", "")}

    def _files_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        """The file leaves every message that shared it."""
        file_id = str(params.get("file", ""))
        if self.uploads.pop(file_id, None) is None:
            return {"ok": False, "error": "file_not_found"}
        for message in self.messages.values():
            if any(f["id"] == file_id for f in message.get("files", [])):
                message["files"] = [f for f in message["files"] if f["id"] != file_id]
        return {"ok": True}

    def _files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        files = _json(params.get("files")) or []
        if not files or any(not self.uploads.get(f["id"]) for f in files):
            return {"ok": False, "error": "file_upload_not_found"}
        ts = self._next_ts()
        channel = params.get("channel_id", "")
        self.messages[(channel, ts)] = {
            "type": "message", "subtype": "file_share", "channel": channel, "ts": ts,
            "text": params.get("initial_comment", ""), "thread_ts": params.get("thread_ts"),
            "files": [{"id": f["id"], "title": f.get("title"), "bytes": self.uploads[f["id"]]}
                      for f in files], "edits": 0}
        return {"ok": True, "files": [{"id": f["id"], "title": f.get("title", ""),
                                       "mimetype": "image/png"} for f in files]}


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


@contextmanager
def fake_slack(*, socket_mode: bool = False) -> Iterator[FakeSlack]:
    """A running fake on a free loopback port; `fake.api_url` is the SLACK_API_URL.

    With `socket_mode`, apps.connections.open hands out URLs of a running Socket Mode server
    (`fake.socket`).
    """
    slack = FakeSlack()
    if socket_mode:
        slack.socket = SocketModeServer().start()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            path = urlsplit(self.path).path
            if path.startswith("/upload/"):
                method, params = "upload", {"file_id": path.rsplit("/", 1)[1]}
            elif path.startswith("/response/"):
                method, params = "response_url", {"id": path.rsplit("/", 1)[1], **_json(body)}
            elif path.startswith("/api/"):
                method, params = path[len("/api/"):], self._params(body)
            else:
                self._reply(404, {"ok": False}, {})
                return
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            token = token or str(params.pop("token", ""))
            status, answer, headers = slack.handle(method, params, token, body)
            self._reply(status, answer, headers)

        def do_GET(self) -> None:  # noqa: N802 - Web API methods read over GET (users.info)
            parts = urlsplit(self.path)
            if parts.path.startswith("/files-pri/"):
                bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
                status, data = slack.download(parts.path, bearer)
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if not parts.path.startswith("/api/"):
                self._reply(404, {"ok": False}, {})
                return
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            token = token or str(params.pop("token", ""))
            self._reply(*slack.handle(parts.path[len("/api/"):], params, token, b""))

        def _params(self, body: bytes) -> dict[str, Any]:
            if self.headers.get("Content-Type", "").startswith("application/json"):
                return dict(json.loads(body or b"{}"))
            return {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}

        def _reply(self, status: int, answer: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    slack.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="fake-slack", daemon=True)
    thread.start()
    try:
        yield slack
    finally:
        if slack.socket is not None:
            slack.socket.stop()
        server.shutdown()
        server.server_close()


# --- what Slack sends to the app ------------------------------------------------------------


def sign(body: bytes, timestamp: int | None = None,
         secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's request signature headers: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest.hexdigest()}"}


def command_payload(text: str, response_url: str, *, user: str = "U0000USER",
                    channel: str = "C0000CHAN") -> dict[str, str]:
    """A slash command's fields, as Slack sends them (form-encoded over HTTP)."""
    return {"token": "legacy-verification", "team_id": TEAM, "team_domain": "fake",
            "channel_id": channel, "channel_name": "general", "user_id": user,
            "user_name": "someone", "command": "/imagine", "text": text,
            "api_app_id": "A0000APP", "is_enterprise_install": "false",
            "response_url": response_url, "trigger_id": "1.2.3"}


def event_callback(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    """An Events API event_callback around `event`."""
    return {"token": "legacy-verification", "team_id": TEAM, "api_app_id": "A0000APP",
            "event": {"event_ts": event.get("ts", ""), **event},
            "type": "event_callback", "event_id": event_id or f"Ev{time.time_ns()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}]}


def mention_event(text: str, *, user: str = "U0000USER", channel: str = "C0000CHAN",
                  ts: str | None = None, thread_ts: str | None = None,
                  files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An app_mention event: `@imagine text` in a channel (with the files shared with it)."""
    event: dict[str, Any] = {
        "type": "app_mention", "user": user, "text": f"<@{BOT_USER}> {text}".rstrip(),
        "ts": ts or f"{int(time.time())}.{time.time_ns() % 1000000:06d}",
        "channel": channel, "team": TEAM}
    if thread_ts:
        event["thread_ts"] = thread_ts
    if files:
        event["files"] = files
        event["upload"] = False
    return event


def direct_message_event(text: str, *, user: str = "U0000USER", channel: str = "D0000USER",
                         files: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A message.im event: a direct message to the app (subtype file_share with files)."""
    event: dict[str, Any] = {
        "type": "message", "channel_type": "im", "user": user, "text": text,
        "ts": f"{int(time.time())}.{time.time_ns() % 1000000:06d}", "channel": channel,
        "team": TEAM}
    if files:
        event.update(subtype="file_share", files=files, upload=False)
    return event


def block_actions(button: dict[str, Any], message: dict[str, Any], response_url: str, *,
                  user: str = "U0000USER") -> dict[str, Any]:
    """The block_actions payload of a click on `button` of `message`."""
    return {
        "type": "block_actions", "user": {"id": user, "username": "someone", "team_id": TEAM},
        "api_app_id": "A0000APP", "token": "legacy-verification",
        "container": {"type": "message", "message_ts": message["ts"],
                      "channel_id": message["channel"], "is_ephemeral": False},
        "trigger_id": "1.2.3", "team": {"id": TEAM, "domain": "fake"},
        "channel": {"id": message["channel"], "name": "general"},
        "message": {k: message[k] for k in ("type", "ts", "text", "blocks")
                    if k in message} | ({"thread_ts": message["thread_ts"]}
                                        if message.get("thread_ts") else {}),
        "response_url": response_url,
        "actions": [{"action_id": button["action_id"], "block_id": "b",
                     "text": button["text"], "value": button["value"], "type": "button",
                     "action_ts": str(time.time())}],
    }


@dataclass
class SlackSender:
    """Sends signed requests shaped like Slack's to the app's /slack/events."""

    app_url: str
    slack: FakeSlack
    secret: str = SIGNING_SECRET

    @property
    def events_url(self) -> str:
        return f"{self.app_url}/slack/events"

    def post(self, body: bytes, content_type: str, *, timestamp: int | None = None,
             secret: str | None = None) -> requests.Response:
        headers = {"Content-Type": content_type, **sign(body, timestamp, secret or self.secret)}
        return requests.post(self.events_url, data=body, headers=headers, timeout=30)

    def command(self, text: str, *, user: str = "U0000USER", channel: str = "C0000CHAN",
                **kwargs: Any) -> requests.Response:
        """A slash command, form-encoded as Slack sends it."""
        form = command_payload(text, self.slack.response_url(), user=user, channel=channel)
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded", **kwargs)

    def event(self, event: dict[str, Any], event_id: str | None = None,
              **kwargs: Any) -> requests.Response:
        """An Events API event_callback, JSON as Slack sends it."""
        body = json.dumps(event_callback(event, event_id)).encode()
        return self.post(body, "application/json", **kwargs)

    def mention(self, text: str, **kwargs: Any) -> requests.Response:
        return self.event(mention_event(text, **kwargs))

    def click(self, button: dict[str, Any], message: dict[str, Any], *,
              user: str = "U0000USER") -> requests.Response:
        """A block_actions payload for a button of `message`, form-encoded as `payload`."""
        payload = block_actions(button, message, self.slack.response_url(), user=user)
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded")


@dataclass
class SocketSender:
    """Pushes the same payloads to an app connected over Socket Mode; returns its acks."""

    slack: FakeSlack

    @property
    def socket(self) -> SocketModeServer:
        assert self.slack.socket is not None, "start the fake with fake_slack(socket_mode=True)"
        return self.slack.socket

    def command(self, text: str, *, user: str = "U0000USER",
                channel: str = "C0000CHAN") -> Ack:
        payload = command_payload(text, self.slack.response_url(), user=user, channel=channel)
        return self.socket.ack(self.socket.send("slash_commands", payload))

    def event(self, event: dict[str, Any], event_id: str | None = None,
              retry_attempt: int = 0) -> Ack:
        envelope = self.socket.send("events_api", event_callback(event, event_id),
                                    retry_attempt=retry_attempt,
                                    retry_reason="timeout" if retry_attempt else "")
        return self.socket.ack(envelope)

    def mention(self, text: str, **kwargs: Any) -> Ack:
        return self.event(mention_event(text, **kwargs))

    def click(self, button: dict[str, Any], message: dict[str, Any], *,
              user: str = "U0000USER") -> Ack:
        payload = block_actions(button, message, self.slack.response_url(), user=user)
        return self.socket.ack(self.socket.send("interactive", payload))


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The message's buttons by label."""
    found = {}
    for block in message.get("blocks") or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            found[element["text"]["text"]] = element
    return found
