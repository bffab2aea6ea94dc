"""Slack (the bot token by auth.test, its scopes against the manifest's, the Socket Mode
token) and Discord (the bot token, its application, whether /imagine is registered).

Calls go where the bots' own go (SLACK_API_URL through slack_sdk, DISCORD_API_URL through
bots.discord.rest) with short timeouts; nothing is posted anywhere.
"""

from __future__ import annotations

from importlib import resources

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bots.discord.rest import DiscordApiError, DiscordRest
from bots.doctor.report import Check, fail, ok, skipped, warn
from bots.slack.client import api_base_url
from settings import Settings
from tasks.core.delivery import PermanentDeliveryError, RateLimited, TransientDeliveryError

TIMEOUT = 5  # seconds per call
DISCORD_ERRORS = (PermanentDeliveryError, RateLimited, TransientDeliveryError)
BOT_TOKEN_FIX = ("copy the Bot User OAuth Token (xoxb-…) from your Slack app's OAuth & "
                 "Permissions page into SLACK_BOT_TOKEN (reinstall the app if it was revoked)")
APP_TOKEN_FIX = ("in your Slack app's Basic Information → App-Level Tokens, generate a token "
                 "with the connections:write scope and put that (xapp-…) in SLACK_APP_TOKEN; "
                 "the bot token (xoxb-…) belongs in SLACK_BOT_TOKEN")
DISCORD_TOKEN_FIX = ("copy the bot token from the Discord developer portal (your application "
                     "→ Bot → Reset Token) into DISCORD_TOKEN")


def manifest_scopes() -> set[str]:
    """The bot scopes bots/slack_manifest.yml asks for (what the features need)."""
    # Read by hand, not with a YAML library: the list's shape is fixed and PyYAML is not a
    # dependency of imagine.
    text = resources.files("bots").joinpath("slack_manifest.yml").read_text(encoding="utf-8")
    scopes: set[str] = set()
    in_bot = False
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        if stripped == "bot:":
            in_bot = True
        elif in_bot and stripped.startswith("- "):
            scopes.add(stripped[2:].strip())
        elif in_bot and stripped:
            break
    return scopes


def check_slack(settings: Settings) -> list[Check]:
    parts = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    if not any(parts):
        return [skipped("slack", "not configured (SLACK_BOT_TOKEN unset)")]
    if settings.slack_bot_token is None:
        return [fail("slack", "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set but "
                              "SLACK_BOT_TOKEN is not", BOT_TOKEN_FIX)]
    token = settings.slack_bot_token.get_secret_value()
    client = WebClient(token=token, base_url=api_base_url(settings), timeout=TIMEOUT)
    return [*_auth(client, token), _mode(settings, client)]


def _auth(client: WebClient, token: str) -> list[Check]:
    if token.startswith("xapp-"):
        return [fail("slack auth", "SLACK_BOT_TOKEN holds an app-level token (xapp-…)",
                     BOT_TOKEN_FIX)]
    try:
        answer = client.auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error", "?") if exc.response is not None else "?"
        return [fail("slack auth", f"auth.test refused SLACK_BOT_TOKEN: {error}",
                     BOT_TOKEN_FIX)]
    except (SlackClientError, OSError) as exc:
        return [fail("slack auth", f"Slack unreachable at {client.base_url}: {exc}",
                     "check this host's network access to slack.com (or SLACK_API_URL)")]
    auth = ok("slack auth", f"bot {answer.get('user')} ({answer.get('user_id')}) in "
                            f"workspace {answer.get('team')} ({answer.get('team_id')})")
    headers = {key.lower(): value for key, value in (answer.headers or {}).items()}
    return [auth, _scopes(headers.get("x-oauth-scopes"))]


def _scopes(header: str | list[str] | None) -> Check:
    if isinstance(header, list):  # some transports keep repeated headers as lists
        header = ",".join(header)
    if header is None:
        return warn("slack scopes", "Slack did not say which scopes the token has "
                                    "(no x-oauth-scopes header)",
                    "compare the app's OAuth scopes with bots/slack_manifest.yml by hand")
    granted = {scope.strip() for scope in header.split(",") if scope.strip()}
    missing = sorted(manifest_scopes() - granted)
    if missing:
        return fail("slack scopes", f"the bot token lacks {', '.join(missing)}",
                    "add those Bot Token Scopes under OAuth & Permissions (or recreate the "
                    "app from bots/slack_manifest.yml) and reinstall the app to the workspace")
    return ok("slack scopes", f"all {len(manifest_scopes())} scopes of the manifest granted")


def _mode(settings: Settings, client: WebClient) -> Check:
    if settings.slack_app_token is None:
        if settings.slack_signing_secret is None:
            return fail("slack mode", "neither SLACK_APP_TOKEN (Socket Mode) nor "
                                      "SLACK_SIGNING_SECRET (HTTP mode) is set",
                        "Socket Mode (no public URL needed): " + APP_TOKEN_FIX + "; or HTTP "
                        "mode: copy the app's Signing Secret into SLACK_SIGNING_SECRET")
        return ok("slack mode", f"HTTP mode: Slack must reach {settings.public_url.rstrip('/')}"
                                "/slack/events")
    app_token = settings.slack_app_token.get_secret_value()
    if app_token.startswith("xoxb-"):
        return fail("slack mode", "SLACK_APP_TOKEN holds a bot token (xoxb-…): Socket Mode "
                                  "needs an app-level token", APP_TOKEN_FIX)
    if not app_token.startswith("xapp-"):
        return fail("slack mode", "SLACK_APP_TOKEN does not start with xapp- (not an "
                                  "app-level token)", APP_TOKEN_FIX)
    try:  # hands out a one-time WebSocket URL; nothing connects to it
        WebClient(base_url=client.base_url,
                  timeout=TIMEOUT).apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        error = exc.response.get("error", "?") if exc.response is not None else "?"
        return fail("slack mode", f"apps.connections.open refused SLACK_APP_TOKEN: {error}",
                    APP_TOKEN_FIX + "; Socket Mode must be enabled in the app's settings")
    except (SlackClientError, OSError) as exc:
        return warn("slack mode", f"could not try SLACK_APP_TOKEN: {exc}",
                    "check this host's network access to slack.com")
    return ok("slack mode", "Socket Mode: SLACK_APP_TOKEN opens connections")


def check_discord(settings: Settings) -> list[Check]:
    if settings.discord_token is None:
        return [skipped("discord", "not configured (DISCORD_TOKEN unset)")]
    rest = DiscordRest(settings.discord_api_url, settings.discord_token.get_secret_value(),
                       timeout=TIMEOUT)
    try:
        me = rest.request("GET", "/users/@me")
    except DiscordApiError as exc:
        return [fail("discord token", f"Discord refused DISCORD_TOKEN: {exc}",
                     DISCORD_TOKEN_FIX)]
    except DISCORD_ERRORS as exc:
        return [fail("discord token", f"Discord unreachable: {exc}",
                     "check this host's network access to discord.com (or DISCORD_API_URL)")]
    token = ok("discord token", f"bot {me.get('username')} ({me.get('id')})")
    return [token, _commands(settings, rest)]


def _commands(settings: Settings, rest: DiscordRest) -> Check:
    name = "discord commands"
    try:
        app_id = rest.request("GET", "/oauth2/applications/@me")["id"]
        commands = list(rest.request("GET", f"/applications/{app_id}/commands"))
        where = "globally"
        if settings.discord_guild_id:
            commands += rest.request(
                "GET", f"/applications/{app_id}/guilds/{settings.discord_guild_id}/commands")
            where = f"globally or in guild {settings.discord_guild_id}"
    except DISCORD_ERRORS as exc:
        return fail(name, f"could not list the application's commands: {exc}",
                    "check the token's application and DISCORD_GUILD_ID (the bot must be in "
                    "that guild)")
    names = sorted({str(command.get("name")) for command in commands})
    if "imagine" not in names:
        return fail(name, f"application {app_id}: /imagine is not registered {where}",
                    "run `imagine discord --sync` once (set DISCORD_GUILD_ID for instant "
                    "registration in one server; global commands take up to an hour)")
    return ok(name, f"application {app_id}: {', '.join('/' + n for n in names)} registered "
                    f"{where}")
