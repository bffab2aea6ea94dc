"""Slack's HTTP mode without workers: signatures, acks, status messages, refusals, cancel.

Real signed requests go over real HTTP to the Flask app (served in this process), which
talks to a local fake of Slack's Web API and a real Redis. Without a generate worker a job
stays queued, which is what these tests look at. tests/test_slack_flow.py draws images.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.fakes.slack_api import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SlackSender,
    buttons,
)
from tests.fixtures_redis import wait_for

HOSTILE = "a fox <!channel> <!here> <@U0000BAD> <https://evil.example|click me>"


@pytest.fixture
def sender(serve_app: Callable[..., str], slack: FakeSlack) -> SlackSender:
    base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token=BOT_TOKEN,
                     slack_api_url=slack.api_url)
    return SlackSender(base, slack)


def posted_text(slack: FakeSlack) -> list[str]:
    """Everything the bot wrote anywhere: texts and block texts of posts and edits."""
    out = []
    for call in slack.calls:
        if call.method in ("chat.postMessage", "chat.update", "chat.postEphemeral",
                           "response_url", "files.completeUploadExternal"):
            params: dict[str, Any] = call.params
            out.append(str(params.get("text", "")) + str(params.get("initial_comment", "")))
            blocks = params.get("blocks")
            out.append(blocks if isinstance(blocks, str) else json.dumps(blocks or []))
    return out


def status_of(slack: FakeSlack) -> dict[str, Any]:
    post = wait_for(lambda: slack.of("chat.postMessage"), message="the status message")[0]
    return slack.message(post.answer["channel"], post.answer["ts"])


def test_bad_signatures_and_stale_timestamps_get_401(sender: SlackSender,
                                                     slack: FakeSlack) -> None:
    assert sender.command("a fox", secret="wrong-secret").status_code == 401
    assert sender.command("a fox", timestamp=int(time.time()) - 6 * 60).status_code == 401
    assert sender.mention("a fox", ).status_code == 200
    wait_for(lambda: slack.of("chat.postMessage"), message="the mention's status message")
    assert len(slack.of("chat.postMessage")) == 1  # only the signed request did anything


def test_bad_prompt_is_answered_in_the_ack_and_queues_nothing(sender: SlackSender,
                                                             slack: FakeSlack) -> None:
    answer = sender.command("a fox --ar 17:1")
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_type"] == "ephemeral"
    assert "--ar" in body["text"] and "Usage:" in body["text"]
    usage = sender.command("   ").json()  # a bare /imagine: the help
    assert usage["response_type"] == "ephemeral" and "Usage:" in usage["text"]
    # An error that repeats the user's text repeats it escaped.
    hostile = sender.command("<!channel> --steps <!here>").json()["text"]
    assert "<!" not in hostile
    time.sleep(0.5)
    assert not slack.of("chat.postMessage", ok=None)


def test_good_prompt_acks_at_once_then_shows_an_escaped_status_and_can_be_cancelled(
        sender: SlackSender, slack: FakeSlack) -> None:
    answer = sender.command(HOSTILE)
    assert (answer.status_code, answer.text) == (200, "")  # the ack, in the same response
    status = status_of(slack)
    post = slack.of("chat.postMessage")[0].params
    assert post["unfurl_links"] is False and post["unfurl_media"] is False
    assert status["thread_ts"] is None  # a slash command's status message starts the thread
    wait_for(lambda: "queued, #1" in slack.message(status["channel"], status["ts"])["text"],
             message="the queue position")
    status = slack.message(status["channel"], status["ts"])
    assert status["text"].startswith("<@U0000USER>: a fox @channel @here @U0000BAD click me")
    for text in posted_text(slack):
        assert "<!" not in text and "<@U0000BAD" not in text and "<http" not in text

    sender.command("a second fox")
    second = wait_for(lambda: len(slack.of("chat.postMessage")) == 2 and slack.of(
        "chat.postMessage")[1].answer, message="the second status message")
    wait_for(lambda: "queued, #2" in slack.message(second["channel"], second["ts"])["text"],
             message="the second job's position")

    # Someone else's click is refused; the requester's cancels before it starts.
    cancel = buttons(status)["Cancel"]
    assert sender.click(cancel, status, user="U0000ELSE").status_code == 200
    wait_for(lambda: slack.of("response_url"), message="the refusal")
    assert "Only <@U0000USER> or a moderator can cancel" in slack.of("response_url")[0].params["text"]
    assert sender.click(cancel, status).status_code == 200
    wait_for(lambda: "cancelled" in slack.message(status["channel"], status["ts"])["text"],
             message="the cancelled status")
    assert not buttons(slack.message(status["channel"], status["ts"]))


def test_mention_and_direct_message_answer_in_their_thread(sender: SlackSender,
                                                           slack: FakeSlack) -> None:
    sender.mention("a fox --ar 16:9", ts="1700000000.000100")
    status = status_of(slack)
    assert status["thread_ts"] == "1700000000.000100"
    sender.event({"type": "message", "channel_type": "im", "channel": "D0000DM",
                  "user": "U0000USER", "text": "a cat", "ts": "1700000000.000200"})
    wait_for(lambda: len(slack.of("chat.postMessage")) == 2, message="the DM's status message")
    dm = slack.of("chat.postMessage")[1].params
    assert (dm["channel"], dm["thread_ts"]) == ("D0000DM", "1700000000.000200")
    # Slack retrying an event it already delivered (same event_id) queues nothing new.
    retry = {"type": "message", "channel_type": "im", "channel": "D0000DM",
             "user": "U0000USER", "text": "a dog", "ts": "1700000000.000250"}
    sender.event(retry, event_id="Ev0000RETRY")
    wait_for(lambda: len(slack.of("chat.postMessage")) == 3, message="the first delivery")
    sender.event(retry, event_id="Ev0000RETRY")
    # The bot's own messages and other channels' chatter are not prompts.
    sender.event({"type": "message", "channel_type": "channel", "channel": "C0000CHAN",
                  "user": "U0000USER", "text": "hello", "ts": "1700000000.000300"})
    sender.mention("--steps 9999", ts="1700000000.000400")
    wait_for(lambda: slack.of("chat.postEphemeral"), message="the mention's grammar error")
    assert "--steps" in slack.of("chat.postEphemeral")[0].params["text"]
    assert len(slack.of("chat.postMessage")) == 3


def test_not_in_channel_tells_the_requester_how_to_invite_the_bot(sender: SlackSender,
                                                                   slack: FakeSlack) -> None:
    slack.outside.add("C0000PRIV")
    assert sender.command("a fox", channel="C0000PRIV").status_code == 200
    note = wait_for(lambda: slack.of("response_url"), message="the note via response_url")[0]
    assert note.params["response_type"] == "ephemeral"
    assert "/invite @imagine" in note.params["text"]
    assert not slack.of("chat.postMessage")


def test_a_rejected_token_is_logged_once_and_the_web_app_keeps_serving(
        serve_app: Callable[..., str], slack: FakeSlack,
        caplog: pytest.LogCaptureFixture) -> None:
    import requests

    with caplog.at_level(logging.ERROR):
        base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token="xoxb-revoked",
                         slack_api_url=slack.api_url)
    assert "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in caplog.text
    assert requests.get(f"{base}/healthz", timeout=10).status_code in (200, 503)
    answer = SlackSender(base, slack).command("a fox")
    assert answer.status_code in (200, 401)  # Bolt's own "not authorized" answer, no crash
    assert not slack.of("chat.postMessage", ok=True)


def test_imagine_slack_with_a_rejected_token_says_so_and_waits(
        start_process: Callable[..., Any], slack: FakeSlack) -> None:
    process = start_process("slack", env={"SLACK_BOT_TOKEN": "xoxb-revoked",
                                          "SLACK_APP_TOKEN": "xapp-test",
                                          "SLACK_API_URL": slack.api_url}, name="slack")
    wait_for(lambda: "fix SLACK_BOT_TOKEN and restart" in process.log(), timeout=60,
             message="the log line")
    assert "Slack rejected SLACK_BOT_TOKEN (invalid_auth)" in process.log()
    time.sleep(1)
    assert process.alive()  # waiting for the operator, not exiting into a restart loop
