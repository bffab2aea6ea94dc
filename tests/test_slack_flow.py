"""Slack end to end: signed requests to `imagine web`, real workers, the tiny model, a fake Slack.

Slash command → ack in the same response → status message → PNGs uploaded with
files_upload_v2 into its thread → status message edited with the result and buttons; a
mention answered in its thread; `ratelimited` once, delivered once; and Reroll, Vary and
Upscale clicked after every process was restarted, answered in the same thread.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from PIL import Image

from tasks.core.connection import redis_client
from tasks.core.jobs import JobStore
from tests.fakes.slack_api import FakeSlack, SlackSender, buttons
from tests.fixtures_redis import Process, wait_for
from tests.slack_support import JOB_WAIT, SlackStack, finished, new_status, uploads_in

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def stack(start_process: Callable[..., Process], start_worker: Callable[..., Process],
          slack: FakeSlack) -> SlackStack:
    # 64 px images may be upscaled once (128 × 128); a second upscale is capped to that size.
    return SlackStack(start_process, start_worker, slack, IMAGINE_MAX_PIXELS=str(128 * 128),
                      IMAGINE_MAX_UPSCALE_PIXELS=str(128 * 128))


def test_slash_command_mention_and_buttons_across_restarts(stack: SlackStack, slack: FakeSlack,
                                                           settings: Any) -> None:
    slack.fail("files.completeUploadExternal", "ratelimited", retry_after="1")
    stack.start()
    sender = SlackSender(stack.app_url, slack)

    # 1. The slash command: the ack is the HTTP response itself, empty for a good prompt.
    answer = sender.command("a fox <!channel> --seed 7 --n 2")
    assert (answer.status_code, answer.text) == (200, "")
    status = new_status(slack, 0)
    channel, root = status["channel"], status["ts"]
    result = finished(slack, channel, root, stack)
    assert result["text"].startswith("<@U0000USER>: a fox @channel")
    assert set(buttons(result)) == {"🔄 Reroll", "V1", "V2", "U1", "U2", "🚩 Report",
                                    "🗑️ Delete"}

    # The images: uploaded in three steps into the status message's thread, exactly once
    # although the first completion was answered `ratelimited` (HTTP 429, Retry-After).
    completes = slack.of("files.completeUploadExternal", ok=None)
    assert [c.status for c in completes] == [429, 200]
    done = completes[-1].params
    assert (done["channel_id"], done["thread_ts"]) == (channel, root)
    assert "seed 7" in done["initial_comment"] and "64×64" in done["initial_comment"]
    assert "<!" not in done["initial_comment"]
    shared = uploads_in(slack, channel, root)
    assert len(shared) == 1 and len(shared[0]["files"]) == 2
    for file in shared[0]["files"]:
        assert file["bytes"].startswith(PNG)
        assert Image.open(io.BytesIO(file["bytes"])).size == (64, 64)
    assert slack.message(channel, root)["edits"] >= 2  # queued, …, the result

    # 2. A mention: answered in the mention's thread.
    before = len(slack.of("chat.postMessage"))
    sender.mention("a lighthouse --ar 16:9", ts="1700000001.000100")
    mention_status = new_status(slack, before)
    assert mention_status["thread_ts"] == "1700000001.000100"
    finished(slack, channel, mention_status["ts"], stack)
    assert len(uploads_in(slack, channel, "1700000001.000100")) == 1

    # 3. Every process restarts; the buttons still work (their state is in Redis).
    stack.stop()
    stack.start()
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    for label, size in (("🔄 Reroll", (64, 64)), ("V2", (64, 64)), ("U1", (128, 128))):
        before = len(slack.of("chat.postMessage"))
        uploads_before = len(uploads_in(slack, channel, root))
        assert sender.click(buttons(result)[label], result).status_code == 200
        follow = new_status(slack, before)
        assert follow["thread_ts"] == root  # the answer lands in the same thread
        follow_result = finished(slack, channel, follow["ts"], stack)
        shared = uploads_in(slack, channel, root)
        assert len(shared) == uploads_before + 1
        image = Image.open(io.BytesIO(shared[-1]["files"][0]["bytes"]))
        assert image.size == size, label
        job_id = buttons(follow_result)["🔄 Reroll"]["value"]
        job = jobs.get(job_id)
        assert job.parent is not None and job.requester.thread == root
        assert job.action == {"🔄 Reroll": "reroll", "V2": "vary_subtle",
                              "U1": "upscale"}[label]
        if label == "V2":
            assert job.request.mode == "img2img" and job.request.strength == pytest.approx(0.35)
    # A second upscale would pass IMAGINE_MAX_UPSCALE_PIXELS: drawn capped, and said so.
    before = len(slack.of("chat.postMessage"))
    sender.click(buttons(follow_result)["Upscale (Subtle)"], follow_result)
    capped = finished(slack, channel, new_status(slack, before)["ts"], stack)
    assert "capped to 128×128" in capped["text"], capped["text"]
    shared = uploads_in(slack, channel, root)
    assert Image.open(io.BytesIO(shared[-1]["files"][0]["bytes"])).size == (128, 128)
    assert "capped to 128×128" in shared[-1]["text"]

    # The bot removed from a channel while drawing: the requester learns how to invite it.
    slack.fail("files.completeUploadExternal", "not_in_channel", channel="C0000GONE")
    sender.command("a fox", channel="C0000GONE")
    invite = wait_for(lambda: [c for c in slack.of("response_url")
                               if "/invite" in c.params["text"]], JOB_WAIT,
                      message="the invite note")
    assert invite[0].params["response_type"] == "ephemeral"

    # Nothing was ever posted twice.
    assert len(slack.of("files.completeUploadExternal")) == len(
        [m for m in slack.messages.values() if m.get("subtype") == "file_share"]) == 6
