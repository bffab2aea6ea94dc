"""The Slack listeners: each turns the payload into a request, records it, acks, hands over.

`register(app, jobs, intake, limits)` wires them into a Bolt App for either transport (HTTP
mode or Socket Mode). A prompt is recorded and submitted before the ack (a few Redis calls;
for events, whose ack Bolt sends before the listener runs, in a listener middleware), so after
an ack the job is in Redis whatever happens to this process; the slow part (the status
message, Slack calls) runs in `SlackJobs` after the ack. A prompt with an image (a shared
file, a URL) is held in Redis before the ack and downloaded after it (`SlackIntake`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bots.admin import is_admin_text
from bots.catalogue import listing, listing_text
from bots.errors import PromptError
from bots.followups import DELETE, REPORT, REVEAL, VARY_REGION
from bots.grammar import USAGE, parse
from bots.help import SLACK, help_text
from bots.limits import Limits
from bots.quota_text import QUOTA, quota_answer
from bots.slack import text as say
from bots.slack.admin import SlackAdmin
from bots.slack.files import second_file, shared_file
from bots.slack.intake import Held, SlackIntake, needs_download
from bots.slack.jobs import Origin, Refusal, SlackJobs
from bots.slack.manage import SlackManage
from bots.slack.reveal import SlackReveal
from settings.i18n import _
from tasks.core.jobs import Requester
from tasks.core.queue import Submitted

log = logging.getLogger(__name__)

COMMAND = "/imagine"
MODELS = "models"  # `/imagine models`: the listing instead of a prompt
HELP = "help"  # `/imagine help`: the help instead of a picture of the word
# Slack cuts a message's text at 40,000 characters; a listing that long ends in "and N more".
TEXT_LIMIT = 40_000
# Every button this app makes; ActionValue.decode says which actions are known.
ACTION_PATTERN = re.compile(r"^imagine:[a-z0-9_]+(:\d+)?$")
ACCEPTED = "imagine_accepted"  # context key: what the middleware made of an event


def usage_text(error: str | None = None) -> str:
    lead = f"{say.escape(error)}\n" if error else ""
    return lead + _(USAGE) + "\n" + _("`/imagine models` lists the models, LoRAs and "
                                     "ControlNets here.")


def register(app: App, jobs: SlackJobs, intake: SlackIntake, limits: Limits) -> None:
    """Wire the listeners: the command, mentions, direct messages and the buttons."""

    @app.command(COMMAND)
    def imagine_command(ack: Ack, command: dict[str, Any]) -> None:
        """Draw a prompt: `/imagine a red fox in snow --ar 16:9`."""
        text = say.prompt_text(command.get("text", ""))
        if not text or text.lower() == HELP:
            ack(text=help_text(SLACK), response_type="ephemeral")
            return
        if text.lower() == MODELS:  # for the asker's eyes, like every answer of a command
            ack(text=listing_text(listing(jobs.settings), limit=TEXT_LIMIT,
                                  escape=say.escape), response_type="ephemeral")
            return
        origin = _command_origin(command)
        if _admin_command(ack, jobs, origin, command.get("text", "")):
            return
        if text.lower() == QUOTA:  # the asker's day: used, left, when it resets
            ack(text=quota_answer(jobs.queue.policy.quotas, Requester(
                platform="slack", user=command["user_id"])), response_type="ephemeral")
            return
        outcome = _admitted_prompt(jobs, intake, limits, origin, text)  # in Redis before the ack
        if isinstance(outcome, Refusal):
            ack(text=outcome.text, response_type="ephemeral")
            return
        ack()
        _answer_message(jobs, intake, (origin, outcome))

    accept_message = _message_middleware(jobs, intake, limits)

    @app.event("app_mention", middleware=[accept_message])
    def mention(context: BoltContext) -> None:
        """`@imagine a fox --ar 16:9` in a channel (with an image shared, or alone to recall
        its parameters): answered in the mention's thread."""
        _answer_message(jobs, intake, context.get(ACCEPTED))

    @app.event("message", middleware=[accept_message])
    def direct_message(context: BoltContext) -> None:
        """A direct message to the app is a prompt too; other messages are not for us."""
        _answer_message(jobs, intake, context.get(ACCEPTED))

    @app.action(ACTION_PATTERN)
    def button(ack: Ack, body: dict[str, Any], action: dict[str, Any]) -> None:
        """A button under a status message: a follow-up, Vary (Region), Cancel or Run again."""
        try:
            value = say.ActionValue.decode(action["action_id"], action.get("value", ""))
        except ValueError:
            ack()
            log.warning("ignoring a button this app did not make: %s", action.get("action_id"))
            return
        origin = _button_origin(body)
        if value.action in NO_JOB_BUTTONS:  # answered after the ack, nothing queued
            ack()
            NO_JOB_BUTTONS[value.action](jobs, value, origin)
            return
        # In Redis before the ack, too.
        outcome = (intake.run_again(value.job_id, origin) if value.action == say.RUN_AGAIN
                   else jobs.accept_follow_up(value, origin))
        ack()
        _answer_message(jobs, intake, (origin, outcome))


# Buttons that make no job, each answered by its handler after the ack: Cancel, Vary (Region)
# (a link for the presser's eyes; the job comes later), Show original (the originals in the
# requester's DM).
NoJobButton = Callable[[SlackJobs, say.ActionValue, Origin], None]
NO_JOB_BUTTONS: dict[str, NoJobButton] = {
    say.CANCEL: lambda jobs, value, origin: jobs.cancel(value.job_id, origin),
    VARY_REGION: lambda jobs, value, origin: jobs.region_link(value, origin),
    REVEAL: lambda jobs, value, origin: SlackReveal(jobs).press(value, origin),
    REPORT: lambda jobs, value, origin: SlackManage(jobs).handle(value, origin),
    DELETE: lambda jobs, value, origin: SlackManage(jobs).handle(value, origin),
}


def _command_origin(command: dict[str, Any]) -> Origin:
    return Origin(user=command["user_id"], channel=command["channel_id"],
                  response_url=command.get("response_url", ""), team=command.get("team_id", ""))


def _admin_command(ack: Ack, jobs: SlackJobs, origin: Origin, raw: str) -> bool:
    """`/imagine admin …`, answered after the ack (bots.slack.admin); False for any other
    text. The raw text: its user arguments need Slack's markup (mentions) intact."""
    if not is_admin_text(raw):
        return False
    ack()
    SlackAdmin.of(jobs).handle(origin, raw)
    return True


def _message_middleware(jobs: SlackJobs, intake: SlackIntake,
                        limits: Limits) -> Callable[..., None]:
    def accept_message(event: dict[str, Any], body: dict[str, Any], context: BoltContext,
                       next: Callable[[], None]) -> None:  # noqa: A002 - Bolt's name
        """Before Bolt acks an event: a prompt in it is recorded and submitted (or held)."""
        # Not the app's own messages: its results in a DM are file shares too.
        wanted = event.get("type") == "app_mention" or (
            event.get("channel_type") == "im" and event.get("subtype") in (None, "file_share")
            and not event.get("bot_id") and event.get("user") != context.bot_user_id)
        if wanted and jobs.first_delivery(body.get("event_id", "")):
            context[ACCEPTED] = _accept_message(jobs, intake, limits, event, context)
        next()

    return accept_message


def _button_origin(body: dict[str, Any]) -> Origin:
    message = body.get("message") or {}
    return Origin(user=body["user"]["id"], channel=(body.get("channel") or {}).get("id", ""),
                  thread=message.get("thread_ts") or message.get("ts", ""),
                  response_url=body.get("response_url", ""),
                  team=(body.get("team") or {}).get("id", ""))


Accepted = Submitted | Refusal | Held


def _accept_message(jobs: SlackJobs, intake: SlackIntake, limits: Limits,
                    event: dict[str, Any], context: BoltContext) -> tuple[Origin, Accepted]:
    text = say.prompt_text(say.strip_mention(event.get("text", ""), context.bot_user_id))
    origin = Origin(user=event.get("user", ""), channel=event["channel"],
                    thread=event.get("thread_ts") or event["ts"], team=event.get("team", ""))
    admitted = jobs.admit(origin, prompt=text)  # before a file is held or downloaded
    if isinstance(admitted, Refusal):
        return origin, admitted
    file = shared_file(event)
    if file is not None:  # an image prompt, or a recall without text
        return origin, intake.hold(origin, text, file, second_file(event))
    if not text:
        return origin, Refusal(usage_text())
    return origin, _accept_prompt(jobs, intake, limits, origin, text)


def _admitted_prompt(jobs: SlackJobs, intake: SlackIntake, limits: Limits, origin: Origin,
                     text: str) -> Accepted:
    """Who may use it where first (channels, user groups, DMs), then the prompt."""
    admitted = jobs.admit(origin, prompt=text)
    if isinstance(admitted, Refusal):
        return admitted
    return _accept_prompt(jobs, intake, limits, origin, text)


def _accept_prompt(jobs: SlackJobs, intake: SlackIntake, limits: Limits, origin: Origin,
                   text: str) -> Accepted:
    """A prompt queued, or held when it starts with an image URL to download first."""
    if needs_download(text, None):
        return intake.hold(origin, text, None)
    try:
        image_request = parse(text, limits)
    except PromptError as exc:
        return Refusal(usage_text(exc.message))
    return jobs.accept(image_request, origin)


def _answer_message(jobs: SlackJobs, intake: SlackIntake,
                    accepted: tuple[Origin, Accepted] | None) -> None:
    """After the ack: the status message, the prepared image prompt, or why nothing was queued."""
    if accepted is None:
        return  # not a prompt for us, or an event Slack sent again
    origin, outcome = accepted
    if isinstance(outcome, Refusal):
        jobs.tell(origin, outcome.text)
    elif isinstance(outcome, Held):
        intake.finish(outcome)
    else:
        jobs.show(outcome)
