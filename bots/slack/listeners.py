"""The Slack listeners: each acks at once, turns the payload into a request, and hands over.

`register(app, jobs, limits)` wires them into a Bolt App for either transport (HTTP mode or
Socket Mode); the slow part (status message, submit) runs in `SlackJobs` after the ack.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bots.errors import PromptError
from bots.grammar import USAGE, parse
from bots.limits import Limits
from bots.slack import text as say
from bots.slack.jobs import Origin, SlackJobs

log = logging.getLogger(__name__)

COMMAND = "/imagine"
# Every button this app makes; ActionValue.decode says which actions are known.
ACTION_PATTERN = re.compile(r"^imagine:[a-z_]+(:\d+)?$")


def usage_text(error: str | None = None) -> str:
    lead = f"{say.escape(error)}\n" if error else ""
    return f"{lead}{USAGE}"


def register(app: App, jobs: SlackJobs, limits: Limits) -> None:
    """Wire the listeners: the command, mentions, direct messages and the buttons."""

    @app.command(COMMAND)
    def imagine_command(ack: Ack, command: dict[str, Any]) -> None:
        """Draw a prompt: `/imagine a red fox in snow --ar 16:9`."""
        text = say.plain_text(command.get("text", ""))
        if not text:
            ack(text=usage_text(), response_type="ephemeral")
            return
        try:
            image_request = parse(text, limits)
        except PromptError as exc:
            ack(text=usage_text(exc.message), response_type="ephemeral")
            return
        ack()
        jobs.start(image_request, Origin(user=command["user_id"], channel=command["channel_id"],
                                         response_url=command.get("response_url", ""),
                                         team=command.get("team_id", "")))

    @app.event("app_mention")
    def mention(event: dict[str, Any], body: dict[str, Any], context: BoltContext) -> None:
        """`@imagine a fox --ar 16:9` in a channel: answered in the mention's thread."""
        if jobs.first_delivery(body.get("event_id", "")):
            _from_message(jobs, limits, event, context)

    @app.event("message")
    def direct_message(event: dict[str, Any], body: dict[str, Any],
                       context: BoltContext) -> None:
        """A direct message to the app is a prompt too; other messages are not for us."""
        if event.get("channel_type") != "im" or event.get("subtype") or event.get("bot_id"):
            return
        if jobs.first_delivery(body.get("event_id", "")):
            _from_message(jobs, limits, event, context)

    @app.action(ACTION_PATTERN)
    def button(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """Reroll, Vary, Upscale or Cancel under a status message."""
        ack()
        try:
            value = say.ActionValue.decode(action["action_id"], action.get("value", ""))
        except ValueError:
            log.warning("ignoring a button this app did not make: %s", action.get("action_id"))
            return
        message = body.get("message") or {}
        origin = Origin(user=body["user"]["id"], channel=(body.get("channel") or {}).get("id", ""),
                        thread=message.get("thread_ts") or message.get("ts", ""),
                        response_url=body.get("response_url", ""),
                        team=(body.get("team") or {}).get("id", ""))
        if value.action == "cancel":
            jobs.cancel(value.job_id, origin)
        else:
            jobs.follow(value, origin)


def _from_message(jobs: SlackJobs, limits: Limits, event: dict[str, Any],
                  context: BoltContext) -> None:
    text = say.plain_text(say.strip_mention(event.get("text", ""), context.bot_user_id))
    origin = Origin(user=event.get("user", ""), channel=event["channel"],
                    thread=event.get("thread_ts") or event["ts"], team=event.get("team", ""))
    if not text:
        jobs.tell(origin, usage_text())
        return
    try:
        image_request = parse(text, limits)
    except PromptError as exc:
        jobs.tell(origin, usage_text(exc.message))
        return
    jobs.start(image_request, origin)
