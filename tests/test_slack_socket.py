"""Slack in Socket Mode end to end: `imagine slack` connected to the fake's WebSocket.

The app asks apps.connections.open (with the app-level token) for a URL, connects, and
acknowledges every envelope over the socket; images come back through the same Web API fake
as in HTTP mode. Also: live progress edits and a Cancel while drawing, Slack's `disconnect`
(a rotated connection), a restart of `imagine slack`, and a rejected app token.
"""

from __future__ import annotations

import io
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from tasks.local.embedded_redis import free_port
from tests.fakes.slack_api import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SlackSender,
    SocketSender,
    buttons,
    mention_event,
)
from tests.fixtures_redis import Process, wait_for
from tests.slack_support import (
    JOB_WAIT,
    SlackStack,
    edits_of,
    finished,
    healthz_ok,
    new_status,
    uploads_in,
)

pytestmark = pytest.mark.socket_mode


@pytest.fixture
def stack(start_process: Callable[..., Process], start_worker: Callable[..., Process],
          slack: FakeSlack) -> SlackStack:
    return SlackStack(start_process, start_worker, slack, mode="socket")


def test_socket_mode_command_progress_cancel_mention_and_reconnects(
        stack: SlackStack, slack: FakeSlack) -> None:
    stack.start()
    assert slack.of("apps.connections.open")[0].token.startswith("xapp-")
    sender = SocketSender(slack)

    # A bad prompt: the ack itself carries the ephemeral answer; nothing is posted.
    ack = sender.command("a fox --ar 17:1")
    assert ack.payload is not None and ack.payload["response_type"] == "ephemeral"
    assert "--ar" in ack.payload["text"] and "Usage:" in ack.payload["text"]

    # A good one: an empty ack, then the status message, live progress, the images.
    ack = sender.command("a red fox in snow <!here> --size 256x256 --steps 40 --seed 3")
    assert ack.payload is None
    status = new_status(slack, 0)
    channel, root = status["channel"], status["ts"]
    result = finished(slack, channel, root, stack)
    edits = edits_of(slack, channel, root)
    drawing = [i for i, text in enumerate(edits) if "step " in text and "/40" in text]
    assert drawing, edits  # the status message showed the steps while drawing
    assert " — done" in edits[-1] and drawing[-1] < len(edits) - 1
    assert "<!here>" not in "".join(edits) and result["text"].startswith(
        "<@U0000USER>: a red fox in snow @here")
    shared = uploads_in(slack, channel, root)
    assert len(shared) == 1
    image = Image.open(io.BytesIO(shared[0]["files"][0]["bytes"]))
    assert image.size == (256, 256)

    # Cancel while drawing: the job stops and the status message says so, with no images.
    before = len(slack.of("chat.postMessage"))
    sender.command("a slow lighthouse --size 256x256 --steps 50")
    long_job = new_status(slack, before)
    wait_for(lambda: any("step " in text for text in edits_of(slack, channel, long_job["ts"])),
             JOB_WAIT, message="the long job's progress")
    running = slack.message(channel, long_job["ts"])
    sender.click(buttons(running)["Cancel"], running)
    cancelled = wait_for(lambda: "cancelled" in slack.message(channel, long_job["ts"])["text"]
                         and slack.message(channel, long_job["ts"]), JOB_WAIT,
                         message="the cancelled status")
    assert "Cancelled while drawing" in cancelled["text"] and not buttons(cancelled)
    assert not uploads_in(slack, channel, long_job["ts"])

    # A mention, and Slack retrying the same event: one job, answered in the mention's thread.
    before = len(slack.of("chat.postMessage"))
    event = mention_event("a lighthouse --ar 16:9", ts="1700000002.000100")
    sender.event(event, event_id="Ev0000SOCKET")
    sender.event(event, event_id="Ev0000SOCKET", retry_attempt=1)
    mention_status = new_status(slack, before)
    assert mention_status["thread_ts"] == "1700000002.000100"
    finished(slack, channel, mention_status["ts"], stack)
    assert len(slack.of("chat.postMessage")) == before + 1

    # Slack rotates the connection: the app opens a new one and keeps serving buttons.
    slack.socket.disconnect()  # type: ignore[union-attr]
    slack.socket.wait_connected(2)  # type: ignore[union-attr]
    assert len(slack.of("apps.connections.open")) == 2
    before = len(slack.of("chat.postMessage"))
    sender.click(buttons(result)["🔄 Reroll"], result)
    reroll = new_status(slack, before)
    assert reroll["thread_ts"] == root
    finished(slack, channel, reroll["ts"], stack)

    # `imagine slack` restarts: the buttons of earlier results still work.
    assert stack.front is not None
    stack.front.signal(signal.SIGTERM)
    assert stack.front.popen is not None and stack.front.popen.wait(30) == 0
    stack.restart_front("slack-again")
    assert slack.socket.hellos == 3  # type: ignore[union-attr]
    before = len(slack.of("chat.postMessage"))
    sender.click(buttons(result)["Vary (Subtle)"], result)
    vary = new_status(slack, before)
    assert vary["thread_ts"] == root
    finished(slack, channel, vary["ts"], stack)
    assert len(uploads_in(slack, channel, root)) == 3  # the first, the reroll, the variation


@pytest.mark.parametrize(("app_token", "error"), [("xapp-1-revoked", "invalid_auth"),
                                                  (BOT_TOKEN, "not_allowed_token_type")])
def test_a_rejected_app_token_is_logged_and_imagine_slack_waits(
        start_process: Callable[..., Process], slack: FakeSlack, app_token: str,
        error: str) -> None:
    process = start_process("slack", env={"SLACK_BOT_TOKEN": BOT_TOKEN,
                                          "SLACK_APP_TOKEN": app_token,
                                          "SLACK_API_URL": slack.api_url}, name="slack")
    wait_for(lambda: f"Slack rejected SLACK_APP_TOKEN ({error})" in process.log(), timeout=60,
             message="the log line")
    assert "connections:write" in process.log()
    time.sleep(1)
    assert process.alive()  # waiting for the operator, not exiting into a restart loop
    assert len(slack.of("apps.connections.open", ok=None)) == 1


def test_imagine_up_serves_slack_over_http_and_socket_mode(
        tmp_path: Path, start_process: Callable[..., Process], slack: FakeSlack) -> None:
    """The README's first command with Slack configured both ways: both answer in threads."""
    port = free_port()
    up = start_process("up", name="up", env={
        "IMAGINE_REDIS_URL": "", "IMAGINE_DATA_DIR": str(tmp_path / "up-data"),
        "IMAGINE_WEB_PORT": str(port), "SLACK_API_URL": slack.api_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_APP_TOKEN": APP_TOKEN})
    assert slack.socket is not None
    try:
        slack.socket.wait_connected(1, timeout=90)
        wait_for(lambda: healthz_ok(port), 90, message="imagine up to be healthy")
    except (TimeoutError, AssertionError):
        raise AssertionError(up.log()[-3000:]) from None

    assert SlackSender(f"http://127.0.0.1:{port}", slack).command("a fox").status_code == 200
    assert SocketSender(slack).command("a cat").payload is None
    statuses = [new_status(slack, 0), new_status(slack, 1)]
    for status in statuses:
        wait_for(lambda s=status: uploads_in(slack, s["channel"], s["ts"]), JOB_WAIT,
                 message=f"images in the thread of {status['text']}")
    assert {status["text"].split(" — ")[0] for status in statuses} == {
        "<@U0000USER>: a fox", "<@U0000USER>: a cat"}

    up.signal(signal.SIGINT)  # Ctrl-C stops every part cleanly
    assert up.popen is not None and up.popen.wait(60) == 0, up.log()[-3000:]
