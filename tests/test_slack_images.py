"""Images in, images out on Slack, end to end: signed requests to a real `imagine web`, the
fake Slack serving shared files at `url_private_download` (bot token only), real generate and
deliver workers, real Redis, the tiny model at 64 px with one step.

One stack serves the module; one /imagine result (`drawn`) is the parent of every button
pressed and the PNG recalled.
"""

from __future__ import annotations

import base64
import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from bots.errors import PromptError
from bots.limits import Limits
from bots.slack.client import web_client
from bots.slack.files import SharedFile, download
from bots.slack.intake import STALE_SECONDS, Held, SlackIntake
from bots.slack.jobs import SlackJobs
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStore
from tasks.core.queue import JobQueue
from tasks.names import SLACK_INTAKE_KEY
from tasks.worker.celery_app import create_celery
from tests.fakes.slack_api import (
    BOT_TOKEN,
    BOT_USER,
    FakeSlack,
    SlackSender,
    buttons,
    direct_message_event,
    fake_slack,
    mention_event,
)
from tests.fixtures_redis import process_env, process_starter, wait_for, worker_starter
from tests.image_support import settings_from_env, solid_png
from tests.slack_support import JOB_WAIT, SlackStack, finished, new_status, uploads_in

MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="module")
def env(redis_server: Any, tiny_model_dir: Path,
        tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the module's processes (without the stack's Slack variables)."""
    tmp = tmp_path_factory.mktemp("slack-images")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("IMAGINE_", "SLACK_", "DISCORD_"))}
    env.update(process_env(redis_server.url, tmp, tiny_model_dir, IMAGINE_DEFAULT_STEPS="1",
                           IMAGINE_MAX_JOBS_PER_USER="20", IMAGINE_OUTBOUND_ALLOW="127.0.0.1",
                           IMAGINE_MAX_UPLOAD_BYTES=str(MAX_UPLOAD)))
    return env


@pytest.fixture(scope="module")
def stack(redis_server: Any, env: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlackStack]:
    start_process, stop_all = process_starter(tmp_path_factory.mktemp("slack-logs"), env)
    with fake_slack() as slack:
        stack = SlackStack(start_process, worker_starter(start_process, redis_server.client()),
                           slack)
        stack.env["IMAGINE_PUBLIC_URL"] = stack.app_url  # the mask editor of Vary (Region)
        try:
            stack.start()
            yield stack
        finally:
            stop_all()


@pytest.fixture(scope="module")
def jobs(redis_server: Any) -> JobStore:
    return JobStore(redis_server.client(), 3600)




def job_of(result: dict[str, Any], jobs: JobStore) -> Job:
    """The job a result message shows (its Reroll button carries the id)."""
    return jobs.get(buttons(result)["🔄 Reroll"]["value"])


def ephemeral_after(slack: FakeSlack, before: int) -> str:
    """The text of the next note shown to one user only (events have no response_url)."""
    calls = wait_for(lambda: slack.of("chat.postEphemeral")[before:], JOB_WAIT,
                     message="an ephemeral note")
    return str(calls[0].params["text"])


@dataclass
class Drawn:
    channel: str
    root: str
    result: dict[str, Any]
    png: bytes


@pytest.fixture(scope="module")
def drawn(stack: SlackStack) -> Drawn:
    slack = stack.slack
    before = len(slack.of("chat.postMessage"))
    assert SlackSender(stack.app_url, slack).command("a lighthouse at dusk --seed 3").ok
    status = new_status(slack, before)
    channel, root = status["channel"], status["ts"]
    result = finished(slack, channel, root, stack)
    (upload,) = uploads_in(slack, channel, root)
    return Drawn(channel, root, result, upload["files"][0]["bytes"])


# --- images shared with a prompt ---------------------------------------------------------


def test_an_image_shared_with_a_prompt_is_drawn_from(stack: SlackStack, drawn: Drawn,
                                                     jobs: JobStore) -> None:
    slack = stack.slack
    sender = SlackSender(stack.app_url, slack)

    # An image URL first in /imagine (here the web app's own copy of an earlier image).
    before = len(slack.of("chat.postMessage"))
    url = f"{stack.app_url}/images/{job_of(drawn.result, jobs).images[0]}.png"
    assert sender.command(f"{url} a cat in a hat").text == ""
    status = new_status(slack, before)
    job = job_of(finished(slack, status["channel"], status["ts"], stack), jobs)
    assert (job.request.mode, job.request.prompt) == ("img2img", "a cat in a hat")

    # A mention with an image: an image prompt, answered in the mention's thread.
    before = len(slack.of("chat.postMessage"))
    shared = slack.share_file(solid_png("teal"), "teal.png")
    sender.event(mention_event("a cat in a hat", ts="1700000100.000100", files=[shared]))
    status = new_status(slack, before)
    assert status["thread_ts"] == "1700000100.000100"
    job = job_of(finished(slack, status["channel"], status["ts"], stack), jobs)
    assert job.request.mode == "img2img" and job.request.source_image
    assert job.request.prompt == "a cat in a hat"
    assert len(uploads_in(slack, status["channel"], "1700000100.000100")) == 1
    (download,) = slack.of("file_download")
    assert download.params["file"] == shared["id"]

    # A direct message with an image (message.im, subtype file_share): the same; the app's
    # own results in that DM (file shares by its user, without bot_id) are not prompts.
    downloads = len(slack.of("file_download", None))
    sender.event(direct_message_event("<@U0000USER>: a dog", user=BOT_USER,
                                      files=[slack.share_file(solid_png("plum"))]))
    before = len(slack.of("chat.postMessage"))
    # Slack may send only the file's id (file_access: check_file_info): files.info tells more.
    only_id = {"id": slack.share_file(solid_png("plum"))["id"], "file_access": "check_file_info"}
    sender.event(direct_message_event("a dog on a bike", files=[only_id]))
    status = new_status(slack, before)
    assert status["channel"] == "D0000USER"
    assert job_of(finished(slack, "D0000USER", status["ts"], stack), jobs).request.mode == (
        "img2img")
    assert len(slack.of("file_download", None)) == downloads + 1  # the user's image only
    assert [c.params["file"] for c in slack.of("files.info")] == [only_id["id"]]

    # Not an image, or larger than IMAGINE_MAX_UPLOAD_BYTES: one line each, nothing read.
    notes, downloads = len(slack.of("chat.postEphemeral")), len(slack.of("file_download", None))
    sender.mention("a cat", files=[slack.share_file(b"hello", "notes.txt", "text/plain")])
    assert ephemeral_after(slack, notes) == (
        "notes.txt is text/plain, not an image: share a PNG, JPEG, WebP or GIF with the prompt.")
    big = slack.share_file(solid_png(), "big.png", size=MAX_UPLOAD + 1)
    sender.mention("a cat", files=[big])
    assert ephemeral_after(slack, notes + 1) == (
        "big.png is larger than 64 KB, the most an image may have "
        "(IMAGINE_MAX_UPLOAD_BYTES): share a smaller one.")
    assert len(slack.of("file_download", None)) == downloads


# --- the buttons under one image ---------------------------------------------------------


PRESSES = {  # label → (title in the new job's messages, size of its image)
    "Upscale (Subtle)": ("Upscale (Subtle)", (128, 128)),
    "Upscale (Creative)": ("Upscale (Creative)", (128, 128)),
    "Vary (Strong)": ("Vary (Strong)", (64, 64)),
    "🔍 Zoom Out 2x": ("Zoom Out 2x", (128, 128)),
    "🔍 Zoom Out 1.5x": ("Zoom Out 1.5x", (96, 96)),
    "⬅️": ("Pan Left", (96, 64)),
}


def test_every_button_under_one_image_makes_its_image(stack: SlackStack, drawn: Drawn,
                                                      jobs: JobStore) -> None:
    slack = stack.slack
    sender = SlackSender(stack.app_url, slack)
    rows = [[e["text"]["text"] for e in block["elements"]]
            for block in drawn.result["blocks"] if block["type"] == "actions"]
    assert rows == [["Upscale (Subtle)", "Upscale (Creative)"],
                    ["Vary (Subtle)", "Vary (Strong)", "🖌️ Vary (Region)"],
                    ["🔍 Zoom Out 2x", "🔍 Zoom Out 1.5x"], ["⬅️", "➡️", "⬆️", "⬇️"],
                    ["🔄 Reroll", "🚩 Report", "🗑️ Delete"]]
    before = len(slack.of("chat.postMessage"))
    for label in PRESSES:
        assert sender.click(buttons(drawn.result)[label], drawn.result).status_code == 200
    statuses = wait_for(lambda: len(slack.of("chat.postMessage")) >= before + len(PRESSES) and
                        slack.of("chat.postMessage")[before:], JOB_WAIT, message="6 statuses")
    for call in statuses:
        message = call.answer["message"]
        assert message["thread_ts"] == drawn.root  # every answer in the image's thread
        finished(slack, drawn.channel, message["ts"], stack)
    sizes = {}
    for upload in uploads_in(slack, drawn.channel, drawn.root)[1:]:
        title = re.search(r"_\((.+) of image 1\)_", upload["text"])
        assert title, upload["text"]
        sizes[title.group(1)] = Image.open(io.BytesIO(upload["files"][0]["bytes"])).size
    assert sizes == dict(PRESSES.values())

    # Vary (Region): a link for the presser alone; the painted mask's job lands in the thread.
    notes = len(slack.of("response_url"))
    sender.click(buttons(drawn.result)["🖌️ Vary (Region)"], drawn.result)
    note = wait_for(lambda: slack.of("response_url")[notes:], message="the link")[0].params
    assert note["response_type"] == "ephemeral"
    link = re.search(r"<(http[^|>]+)\|", note["text"])
    assert link and link.group(1).startswith(f"{stack.app_url}/region/"), note["text"]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = io.BytesIO()
    mask.save(out, format="PNG")
    uploads = len(uploads_in(slack, drawn.channel, drawn.root))
    answer = requests.post(link.group(1), json={
        "mask": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode(),
        "prompt": "a lighthouse with a red door"}, timeout=30)
    assert answer.status_code == 202, answer.text
    job = wait_for(lambda: (j := jobs.get(answer.json()["job"])).status.finished and j,
                   JOB_WAIT, message="the inpaint job")
    assert (job.request.mode, job.requester.thread, job.requester.user) == (
        "inpaint", drawn.root, "U0000USER")
    shared = wait_for(lambda: uploads_in(slack, drawn.channel, drawn.root)[uploads:], JOB_WAIT,
                      message="the inpainted image")
    assert "Vary (Region) of image 1" in shared[0]["text"]
    assert requests.post(link.group(1), json={"mask": "x", "prompt": "y"}, timeout=30
                         ).status_code in (400, 410)  # used once


# --- recall --------------------------------------------------------------------------------


def test_a_shared_png_is_recalled_and_run_again(stack: SlackStack, drawn: Drawn,
                                                jobs: JobStore) -> None:
    slack = stack.slack
    sender = SlackSender(stack.app_url, slack)
    sender.event(mention_event("", ts="1700000200.000100",
                               files=[slack.share_file(drawn.png, "lighthouse.png")]))
    recall = wait_for(lambda: next((m for m in slack.thread(drawn.channel, "1700000200.000100")
                                    if "Run again" in str(m.get("blocks"))), None),
                      JOB_WAIT, message="the recall")
    assert "a lighthouse at dusk" in recall["text"] and "--seed 3" in recall["text"]
    before = len(slack.of("chat.postMessage"))
    sender.click(buttons(recall)["🔁 Run again"], recall)
    status = new_status(slack, before)
    assert status["thread_ts"] == "1700000200.000100"
    again = job_of(finished(slack, drawn.channel, status["ts"], stack), jobs)
    assert (again.request.prompt, again.request.seed) == ("a lighthouse at dusk", 3)
    (upload,) = uploads_in(slack, drawn.channel, "1700000200.000100")
    assert upload["files"][0]["bytes"] == drawn.png  # the same parameters, the same image

    # A PNG that records no parameters: the one line saying so.
    notes = len(slack.of("chat.postEphemeral"))
    sender.mention("", files=[slack.share_file(solid_png("navy"), "photo.png")])
    assert "parameters" in ephemeral_after(slack, notes)


# --- the ack path: held prompts are never lost, the token stays with Slack -----------------




def test_a_prompt_held_by_a_stopped_front_end_is_finished_once(
        stack: SlackStack, env: dict[str, str], jobs: JobStore) -> None:
    """A front end that acked an image prompt and died before queueing it left the hold in
    Redis: the sweep of another front end queues it, once however often it runs."""
    settings = settings_from_env({**env, **stack.env})
    client = redis_client(settings)
    slack_jobs = SlackJobs(settings, JobQueue(settings, client, create_celery(settings)),
                           web_client(settings))
    intake = SlackIntake(settings, slack_jobs, Limits.from_settings(settings))
    held = Held(user="U0000USER", channel="C0000CHAN", thread="1700000300.000100",
                text="a moth on a lamp", file=SharedFile.from_event(
                    stack.slack.share_file(solid_png("olive"))), at=time.time() - STALE_SECONDS - 1)
    fresh = held.model_copy(update={"id": "f" * 16, "job_id": "e" * 24, "at": time.time()})
    for hold in (held, fresh):
        client.hset(SLACK_INTAKE_KEY, hold.id, hold.model_dump_json())
    assert intake.sweep() == 1  # the stale one; the fresh one is still someone's
    job = jobs.get(held.job_id)
    assert (job.request.mode, job.requester.thread) == ("img2img", "1700000300.000100")
    assert intake.sweep() == 0
    client.hset(SLACK_INTAKE_KEY, held.id, held.model_dump_json())  # died before letting go
    assert intake.sweep() == 1 and jobs.get(held.job_id).id == job.id
    assert client.hkeys(SLACK_INTAKE_KEY) == [fresh.id.encode()]
    client.hdel(SLACK_INTAKE_KEY, fresh.id)
    finished(stack.slack, "C0000CHAN", wait_for(lambda: jobs.get(job.id).requester.message,
                                                JOB_WAIT, message="its status"), stack)


def test_the_bot_token_goes_to_slack_only(slack: FakeSlack) -> None:
    shared = SharedFile.from_event(slack.share_file(solid_png(), "a.png"))
    assert download(shared, BOT_TOKEN, MAX_UPLOAD, slack.api_url) == solid_png()
    with pytest.raises(PromptError, match=r"Slack would not hand over a.png \(HTTP 403\)"):
        download(shared, "xoxb-other", MAX_UPLOAD, slack.api_url)
    elsewhere = shared.model_copy(update={"url": "http://files.example.com/a.png"})
    with pytest.raises(PromptError, match="no download address"):
        download(elsewhere, BOT_TOKEN, MAX_UPLOAD, slack.api_url)
    assert len(slack.of("file_download", None)) == 2
