"""A local fake of Discord: the REST API (v10) and the gateway websocket, for tests and benches.

It follows Discord's documented payloads closely enough for a real discord.py client and for
our REST deliverer: HELLO → IDENTIFY → READY (guild unavailable) → GUILD_CREATE, heartbeat
ACKs, JSON answers with the exact `application/json` content type discord.py insists on.
Every REST call is recorded (JSON bodies and multipart parts alike); a call can be answered
with a 429 and `retry_after` once, and interaction tokens expire 15 minutes after their
interaction was created, as on Discord.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.aio_server import ThreadedAioServer

DISCORD_EPOCH_MS = 1420070400000
TOKEN_LIFETIME = 15 * 60
BOT_TOKEN = "fake-bot-token"
ACK_DELAY = 0.05  # seconds between a heartbeat and its ACK
HEARTBEAT_ACK = json.dumps({"op": 11, "d": None, "s": None, "t": None})
_counter = itertools.count(1)


def snowflake(at: float | None = None) -> str:
    """A Discord id whose timestamp is `at` (epoch seconds), unique in this process."""
    ms = int((time.time() if at is None else at) * 1000)
    return str(((ms - DISCORD_EPOCH_MS) << 22) | (next(_counter) % (1 << 22)))


def created_at(snowflake_id: str) -> float:
    return ((int(snowflake_id) >> 22) + DISCORD_EPOCH_MS) / 1000


@dataclass
class Call:
    """One REST request as the fake saw it."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    headers: dict[str, str]
    json: Any = None  # the JSON body, or the multipart `payload_json`
    files: list[dict[str, Any]] = field(default_factory=list)  # name, filename, type, data
    status: int = 200
    at: float = 0.0

    @property
    def multipart(self) -> bool:
        return self.headers.get("Content-Type", "").startswith("multipart/form-data")


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    retry_after: float
    times: int


def _json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None
                   ) -> web.Response:
    # Exactly "application/json": discord.py does not parse a body whose type has a charset.
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


class FakeDiscord:
    """Run with `start()`/`stop()` (a thread with its own event loop) or as a context manager."""

    def __init__(self) -> None:
        self.application_id = snowflake()
        self.bot_user = {"id": self.application_id, "username": "imagine", "discriminator": "0",
                         "global_name": "imagine", "avatar": None, "bot": True, "flags": 0,
                         "public_flags": 0, "verified": True, "mfa_enabled": False}
        self.guild_id = snowflake()
        self.channel_id = snowflake()
        self.owner = self.user("owner")
        # Roles of the guild besides @everyone (role objects, `role()`), sent in GUILD_CREATE.
        self.roles: list[dict[str, Any]] = []
        self.calls: list[Call] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self._originals: dict[str, str] = {}  # interaction token → original response id
        self._tokens: dict[str, float] = {}  # interaction token → created_at
        self._nonces: dict[tuple[str, str], str] = {}
        self._cdn: dict[str, tuple[bytes, str]] = {}  # /attachments/… path → bytes, type
        self._failures: list[_Failure] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self._lock = threading.Lock()
        self._server = ThreadedAioServer("fake-discord")

    # --- life cycle -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def env(self) -> dict[str, str]:
        """What points `imagine discord` and the deliver worker at this fake."""
        return {"DISCORD_TOKEN": BOT_TOKEN, "DISCORD_API_URL": self.api_url,
                "DISCORD_GATEWAY_URL": self.gateway_url}

    def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{message}/{filename}", self._attachment_file)
        app.router.add_route("*", "/api/v10/{path:.*}", self._rest)
        self._server.start(app)
        return self

    def stop(self) -> None:
        self._server.stop(self._sockets)

    def __enter__(self) -> FakeDiscord:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- objects as Discord sends them ---------------------------------------------------
    @staticmethod
    def user(name: str, user_id: str | None = None) -> dict[str, Any]:
        return {"id": user_id or snowflake(), "username": name, "discriminator": "0",
                "global_name": name, "avatar": None, "bot": False, "flags": 0,
                "public_flags": 0}

    def _channel(self) -> dict[str, Any]:
        return {"id": self.channel_id, "type": 0, "guild_id": self.guild_id, "name": "general",
                "position": 0, "permission_overwrites": [], "nsfw": False, "parent_id": None,
                "topic": None, "last_message_id": None, "rate_limit_per_user": 0, "flags": 0}

    def _member(self, user: dict[str, Any]) -> dict[str, Any]:
        return {"user": user, "roles": [], "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False, "mute": False, "flags": 0, "nick": None, "avatar": None,
                "premium_since": None, "pending": False, "permissions": "2251799813685247"}

    def _guild(self) -> dict[str, Any]:
        everyone = {"id": self.guild_id, "name": "@everyone", "permissions": "2251799813685247",
                    "position": 0, "color": 0, "hoist": False, "managed": False,
                    "mentionable": False, "flags": 0}
        return {"id": self.guild_id, "name": "Test guild", "icon": None, "owner_id":
                self.owner["id"], "unavailable": False, "member_count": 2, "large": False,
                "features": [], "roles": [everyone, *self.roles], "emojis": [], "stickers": [],
                "channels": [self._channel()], "threads": [], "members":
                [self._member(self.bot_user)], "voice_states": [], "presences": [],
                "premium_tier": 0, "verification_level": 0, "explicit_content_filter": 0,
                "default_message_notifications": 0, "mfa_level": 0, "nsfw_level": 0,
                "system_channel_flags": 0, "preferred_locale": "en-US", "afk_timeout": 300,
                "joined_at": "2024-01-01T00:00:00+00:00", "stage_instances": [],
                "guild_scheduled_events": [], "soundboard_sounds": []}

    def role(self, name: str) -> str:
        """A new role of the guild (before the bot connects); its id."""
        role_id = snowflake()
        self.roles.append({"id": role_id, "name": name, "permissions": "0", "position": 1,
                           "color": 0, "hoist": False, "managed": False,
                           "mentionable": False, "flags": 0})
        return role_id

    def attachment(self, data: bytes, filename: str = "image.png",
                   content_type: str | None = "image/png", size: int | None = None
                   ) -> dict[str, Any]:
        """An attachment object whose bytes the fake CDN serves at its `url`; `size` is what
        Discord claims (a test's way to send "too large" without the bytes)."""
        attachment_id = snowflake()
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        with self._lock:
            self._cdn[f"/attachments/{attachment_id}/{filename}"] = (
                data, content_type or "application/octet-stream")
        found: dict[str, Any] = {"id": attachment_id, "filename": filename,
                                 "size": len(data) if size is None else size, "url": url,
                                 "proxy_url": url, "flags": 0}
        if content_type is not None:
            found["content_type"] = content_type
        return found

    async def _attachment_file(self, request: web.Request) -> web.Response:
        with self._lock:
            found = self._cdn.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found[0], content_type=found[1])

    def message_payload(self, content: str, author: dict[str, Any] | None = None, *,
                        mention_bot: bool = True, channel_id: str | None = None,
                        dm: bool = False, attachments: list[dict[str, Any]] | None = None
                        ) -> dict[str, Any]:
        """A MESSAGE_CREATE from a person; `<@bot>` is prefixed when it mentions the bot."""
        author = author or self.user("alice")
        text = f"<@{self.application_id}> {content}" if mention_bot else content
        data: dict[str, Any] = {
            "id": snowflake(), "channel_id": channel_id or self.channel_id, "author": author,
            "content": text, "timestamp": "2024-01-01T00:00:00+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": "@everyone" in text,
            "mentions": [self.bot_user] if mention_bot else [], "mention_roles": [],
            "attachments": attachments or [], "embeds": [], "pinned": False, "type": 0,
            "flags": 0, "components": []}
        if not dm:
            data["guild_id"] = self.guild_id
            data["member"] = {k: v for k, v in self._member(author).items() if k != "user"}
        return data

    def dm_channel(self, user: dict[str, Any]) -> dict[str, Any]:
        return {"id": snowflake(), "type": 1, "recipients": [user], "last_message_id": None,
                "flags": 0}

    def interaction_payload(self, data: dict[str, Any], user: dict[str, Any] | None = None, *,
                            kind: int = 2, message: dict[str, Any] | None = None,
                            age: float = 0.0, attachment_size_limit: int = 10 * 1024 * 1024
                            ) -> dict[str, Any]:
        """An INTERACTION_CREATE (2: application command, 3: component, 4: autocomplete).

        `age` backdates the interaction's id (its creation time, as clients read it) while
        the fake still accepts its token: a test's way to reach "the token has expired by
        the time the result is ready" without waiting 15 minutes.
        """
        user = user or self.user("alice")
        interaction_id = snowflake(time.time() - age)
        token = f"tok-{interaction_id}"
        with self._lock:
            self._tokens[token] = time.time()
        payload: dict[str, Any] = {
            "id": interaction_id, "application_id": self.application_id, "type": kind,
            "data": data, "guild_id": self.guild_id, "channel_id": self.channel_id,
            "channel": self._channel(), "member": self._member(user), "token": token,
            "version": 1, "app_permissions": "2251799813685247", "locale": "en-US",
            "guild_locale": "en-US", "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": self.guild_id},
            "attachment_size_limit": attachment_size_limit}
        if message is not None:
            payload["message"] = message
        return payload

    def command_payload(self, user: dict[str, Any] | None = None, age: float = 0.0,
                        command: str = "imagine", **options: Any) -> dict[str, Any]:
        """INTERACTION_CREATE for `/imagine` (or `command`) with the given options
        (prompt=..., seed=...); an attachment object (`attachment()`) is an ATTACHMENT
        option (type 11) whose value is its id, the object itself under `resolved`."""
        types = {str: 3, int: 4, bool: 5, float: 10}
        data: dict[str, Any] = {"id": snowflake(), "name": command, "type": 1, "options": [
            {"name": name, "type": 11, "value": value["id"]} if isinstance(value, dict) else
            {"name": name, "type": types[type(value)], "value": value}
            for name, value in options.items()]}
        attachments = {v["id"]: v for v in options.values() if isinstance(v, dict)}
        if attachments:
            data["resolved"] = {"attachments": attachments}
        return self.interaction_payload(data, user, age=age)

    def message_command_payload(self, name: str, target: dict[str, Any],
                                user: dict[str, Any] | None = None) -> dict[str, Any]:
        """INTERACTION_CREATE for the message context-menu command `name` on `target`."""
        data = {"id": snowflake(), "name": name, "type": 3, "target_id": target["id"],
                "resolved": {"messages": {target["id"]: target}}}
        return self.interaction_payload(data, user)

    def button_payload(self, custom_id: str, message: dict[str, Any],
                       user: dict[str, Any] | None = None) -> dict[str, Any]:
        """INTERACTION_CREATE for a press of the button `custom_id` on `message`."""
        data = {"custom_id": custom_id, "component_type": 2}
        return self.interaction_payload(data, user, kind=3, message=message)

    # --- the gateway -------------------------------------------------------------------
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250},
                                      "s": None, "t": None}))
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            payload = json.loads(msg.data)
            op = payload.get("op")
            if op == 1:
                self.heartbeats += 1
                # A moment later, as over a real network: discord.py records the send time
                # only after the send returns, and an instant ACK reads as a 41 s lag.
                asyncio.get_running_loop().call_later(
                    ACK_DELAY, lambda: asyncio.ensure_future(ws.send_str(HEARTBEAT_ACK)))
            elif op == 2:
                self.identifies.append(payload["d"])
                await self._send(ws, "READY", {
                    "v": 10, "user": self.bot_user, "session_id": f"session-{snowflake()}",
                    "resume_gateway_url": self.gateway_url, "guilds":
                    [{"id": self.guild_id, "unavailable": True}], "private_channels": [],
                    "relationships": [], "application": {"id": self.application_id,
                                                         "flags": 0}})
                await self._send(ws, "GUILD_CREATE", self._guild())
                self._sockets.append(ws)
            elif op == 6:  # RESUME: not kept; invalid session makes the client identify anew
                await ws.send_str(json.dumps({"op": 9, "d": False, "s": None, "t": None}))
        if ws in self._sockets:
            self._sockets.remove(ws)
        return ws

    async def _send(self, ws: web.WebSocketResponse, event: str, data: Any) -> None:
        self._seq += 1
        await ws.send_str(json.dumps({"op": 0, "t": event, "s": self._seq, "d": data}))

    @property
    def connected(self) -> int:
        """How many gateway sessions got READY and are still open."""
        return len([ws for ws in self._sockets if not ws.closed])

    def dispatch(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send a gateway event to the newest session; returns `data`."""

        async def send() -> None:
            live = [ws for ws in self._sockets if not ws.closed]
            if not live:
                raise RuntimeError("no bot is connected to the fake gateway")
            await self._send(live[-1], event, data)

        self._server.call(send())
        return data

    # --- scripted failures -------------------------------------------------------------
    def rate_limit_next(self, method: str, path_pattern: str, retry_after: float = 1.0,
                        times: int = 1) -> None:
        """Answer the next `times` matching calls with 429 and `retry_after` seconds."""
        with self._lock:
            self._failures.append(_Failure(method, re.compile(path_pattern), retry_after, times))

    def _scripted_failure(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method and failure.pattern.search(path):
                    failure.times -= 1
                    if failure.times <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    # --- REST ----------------------------------------------------------------------------
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        call = Call(request.method, path, dict(request.query), dict(request.headers),
                    at=time.monotonic())
        if call.multipart:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":  # type: ignore[union-attr]
                    call.json = json.loads(data)
                else:
                    call.files.append({"name": part.name, "filename": part.filename,  # type: ignore[union-attr]
                                       "type": part.headers.get("Content-Type"),  # type: ignore[union-attr]
                                       "data": bytes(data)})
        else:
            raw = await request.read()
            call.json = json.loads(raw) if raw else None
        call.at = time.monotonic()  # when the whole request had arrived
        with self._lock:
            self.calls.append(call)
        failure = self._scripted_failure(request.method, path)
        if failure is not None:
            call.status = 429
            return _json_response(
                {"message": "You are being rate limited.", "retry_after": failure.retry_after,
                 "global": False}, 429,
                {"Retry-After": str(max(1, round(failure.retry_after))),
                 "X-RateLimit-Scope": "user"})
        status, body = self._answer(request.method, path, call)
        call.status = status
        if status == 204:
            return web.Response(status=204)
        return _json_response(body, status)

    def _answer(self, method: str, path: str, call: Call) -> tuple[int, Any]:
        bot_auth = call.headers.get("Authorization") == f"Bot {BOT_TOKEN}"
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]], bool]] = [
            ("GET", r"/users/@me", lambda call: (200, self.bot_user), True),
            ("GET", r"/oauth2/applications/@me", self._application, True),
            ("GET", r"/gateway", lambda call: (200, {"url": self.gateway_url}), False),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands, True),
            ("GET", r"/applications/(\d+)/commands", self._get_commands, True),
            ("GET", r"/applications/(\d+)/guilds/(\d+)/commands", self._get_commands, True),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_commands, True),
            ("POST", r"/channels/(\d+)/messages", self._create_message, True),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_message, True),
            ("DELETE", r"/channels/(\d+)/messages/(\d+)", self._delete_message, True),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback, False),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup, False),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)", self._get_webhook_message,
             False),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)",
             self._edit_webhook_message, False),
            ("DELETE", r"/webhooks/(\d+)/([^/]+)/messages/(@original|\d+)",
             self._delete_webhook_message, False),
        ]
        for route_method, pattern, handler, needs_bot in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                if needs_bot and not bot_auth:
                    return 401, {"message": "401: Unauthorized", "code": 0}
                return handler(call, *match.groups())
        return 404, {"message": "404: Not Found", "code": 0}

    def _application(self, call: Call) -> tuple[int, Any]:
        return 200, {"id": self.application_id, "name": "imagine", "description": "",
                     "icon": None, "bot_public": True, "bot_require_code_grant": False,
                     "owner": self.owner, "team": None, "verify_key": "0" * 64, "flags": 0,
                     "summary": "", "bot": self.bot_user}

    def _put_commands(self, call: Call, app_id: str, guild_id: str | None = None
                      ) -> tuple[int, Any]:
        # Discord answers every command with a description ("" for context menus).
        commands = [{"description": "", **c, "id": snowflake(), "application_id": app_id,
                     "version": snowflake(),
                     "default_member_permissions": c.get("default_member_permissions"),
                     **({"guild_id": guild_id} if guild_id else {})} for c in call.json]
        self.commands[guild_id or "global"] = commands
        return 200, commands

    def _get_commands(self, call: Call, app_id: str, guild_id: str | None = None
                      ) -> tuple[int, Any]:
        return 200, self.commands.get(guild_id or "global", [])

    def _new_message(self, channel_id: str, body: dict[str, Any], call: Call,
                     webhook_id: str | None = None) -> dict[str, Any]:
        message_id = snowflake()
        attachments = self._uploaded(message_id, body, call)
        reference = body.get("message_reference")
        message = {
            "id": message_id, "channel_id": channel_id, "author": self.bot_user,
            "content": body.get("content", ""), "timestamp": "2024-01-01T00:00:00+00:00",
            "edited_timestamp": None, "tts": False, "mention_everyone": False, "mentions": [],
            "mention_roles": [], "attachments": attachments, "embeds": body.get("embeds", []),
            "pinned": False, "type": 19 if reference else 0, "flags": body.get("flags", 0),
            "components": body.get("components", []), "nonce": body.get("nonce")}
        if reference:
            message["message_reference"] = {**reference, "channel_id": channel_id}
        if webhook_id:
            message["webhook_id"] = webhook_id
        with self._lock:
            self.messages[message_id] = message
        return message

    def _uploaded(self, message_id: str, body: dict[str, Any], call: Call
                  ) -> list[dict[str, Any]]:
        """Attachment objects of the request's files (`attachments[].id` = file index)."""
        attachments = []
        for index, part in enumerate(call.files):
            meta: dict[str, Any] = next((a for a in body.get("attachments", []) if str(a.get("id")) ==
                         str(index)), {})
            attachments.append({
                "id": snowflake(), "filename": meta.get("filename", part["filename"]),
                "size": len(part["data"]), "content_type": part["type"],
                "description": meta.get("description"),
                "url": f"{self.base_url}/attachments/{message_id}/{part['filename']}",
                "proxy_url": f"{self.base_url}/attachments/{message_id}/{part['filename']}",
                "flags": 0})
            with self._lock:  # the CDN serves what was posted, as Discord's does
                self._cdn[f"/attachments/{message_id}/{part['filename']}"] = (
                    part["data"], part["type"] or "application/octet-stream")
        return attachments

    def _create_message(self, call: Call, channel_id: str) -> tuple[int, Any]:
        body = call.json or {}
        nonce = body.get("nonce")
        if nonce and body.get("enforce_nonce"):
            with self._lock:
                earlier = self._nonces.get((channel_id, str(nonce)))
            if earlier is not None:  # Discord returns the message made with this nonce
                return 200, self.messages[earlier]
        message = self._new_message(channel_id, body, call)
        if nonce:
            with self._lock:
                self._nonces[(channel_id, str(nonce))] = message["id"]
        return 200, message

    def _edit_message(self, call: Call, channel_id: str, message_id: str) -> tuple[int, Any]:
        with self._lock:
            message = self.messages.get(message_id)
        if message is None or message_id in self.deleted:
            return 404, {"message": "Unknown Message", "code": 10008}
        for key in ("content", "components", "embeds", "flags"):
            if call.json and key in call.json:
                message[key] = call.json[key]
        if call.json and "attachments" in call.json:
            # Discord's edit: the listed attachments stay (by their snowflake id), the others
            # go, and uploaded files join (listed by their index in the form): [] clears.
            listed = {str(a.get("id")) for a in call.json["attachments"]}
            kept = [a for a in message["attachments"] if a["id"] in listed]
            message["attachments"] = kept + self._uploaded(message_id, call.json, call)
        elif call.files:  # files without the list are added to what the message has
            message["attachments"] = message["attachments"] + self._uploaded(message_id, {}, call)
        message["edited_timestamp"] = "2024-01-01T00:00:01+00:00"
        return 200, message

    def _delete_message(self, call: Call, channel_id: str, message_id: str) -> tuple[int, Any]:
        if message_id not in self.messages or message_id in self.deleted:
            return 404, {"message": "Unknown Message", "code": 10008}
        self.deleted.add(message_id)
        return 204, None

    def _token_valid(self, token: str) -> bool:
        with self._lock:
            created = self._tokens.get(token)
        return created is not None and time.time() - created < TOKEN_LIFETIME

    def _callback(self, call: Call, interaction_id: str, token: str) -> tuple[int, Any]:
        if not self._token_valid(token):
            return 404, {"message": "Unknown interaction", "code": 10062}
        body = call.json or {}
        kind = body.get("type")
        data = body.get("data") or {}
        original_id = None
        if kind in (4, 5):
            original = self._new_message(self.channel_id, data, call, self.application_id)
            original["interaction_token"] = token
            original["flags"] = data.get("flags", 0)
            original_id = original["id"]
            with self._lock:
                self._originals[token] = original_id
        if call.query.get("with_response") not in ("1", "true", "True"):
            return 204, None
        answer: dict[str, Any] = {"interaction": {
            "id": interaction_id, "type": 2, "response_message_id": original_id,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(data.get("flags", 0) & 64)}}
        if original_id is not None:
            answer["resource"] = {"type": kind, "message": self.messages[original_id]}
        return 200, answer

    def _webhook_target(self, token: str, which: str) -> str | None:
        with self._lock:
            return self._originals.get(token) if which == "@original" else which

    def _followup(self, call: Call, app_id: str, token: str) -> tuple[int, Any]:
        if not self._token_valid(token):
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        message = self._new_message(self.channel_id, call.json or {}, call, app_id)
        return 200, message

    def _get_webhook_message(self, call: Call, app_id: str, token: str, which: str
                             ) -> tuple[int, Any]:
        if not self._token_valid(token):
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        target = self._webhook_target(token, which)
        if target is None or target not in self.messages or target in self.deleted:
            return 404, {"message": "Unknown Message", "code": 10008}
        return 200, self.messages[target]

    def _edit_webhook_message(self, call: Call, app_id: str, token: str, which: str
                              ) -> tuple[int, Any]:
        if not self._token_valid(token):
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        target = self._webhook_target(token, which)
        if target is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return self._edit_message(call, self.channel_id, target)

    def _delete_webhook_message(self, call: Call, app_id: str, token: str, which: str
                                ) -> tuple[int, Any]:
        if not self._token_valid(token):
            return 401, {"message": "Invalid Webhook Token", "code": 50027}
        target = self._webhook_target(token, which)
        if target is None:
            return 404, {"message": "Unknown Message", "code": 10008}
        return self._delete_message(call, self.channel_id, target)

    # --- what tests read -----------------------------------------------------------------
    def find(self, method: str | None = None, path: str | None = None,
             status: int | None = None) -> list[Call]:
        """Recorded calls, filtered by method, a path regex and the status answered."""
        with self._lock:
            calls = list(self.calls)
        return [c for c in calls if (method is None or c.method == method)
                and (path is None or re.search(path, c.path))
                and (status is None or c.status == status)]

    def posts_with_files(self) -> list[Call]:
        """Accepted calls that created a message with attachments."""
        return [c for c in self.find("POST", status=200) if c.files
                and re.fullmatch(r"/channels/\d+/messages|/webhooks/\d+/[^/]+", c.path)]
