"""The Slack deliverer on its own: real Redis, the fake Web API, jobs written by hand.

What the end-to-end tests cannot pin down without timing: progress edits share one budget
per workspace (chat.update is Tier 3), a `ratelimited` edit rests every progress edit of
that workspace for the given delay, and nothing edits a status message after its result.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bots.slack.delivery import SlackDelivery
from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.delivery import DeliveryContext, RateLimited
from tasks.core.jobs import Job, JobStatus, Requester
from tasks.core.storage import Storage
from tasks.names import SLACK_PROGRESS_PACE_KEY
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.web_support import with_settings


@pytest.fixture
def slack_settings(settings: Settings, slack: FakeSlack) -> Settings:
    return with_settings(settings, slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url)


def running_job(slack: FakeSlack, team: str, step: int = 3) -> Job:
    """A job drawing step `step` of 20, with a status message already posted."""
    posted = slack.handle("chat.postMessage", {"channel": "C1", "text": "queued"},
                          BOT_TOKEN, b"")[1]
    return Job(requester=Requester(platform="slack", user="U1", channel="C1",
                                   message=posted["ts"], thread=posted["ts"],
                                   extra={"team": team}),
               request=ImageRequest(prompt="a fox"), status=JobStatus.running, step=step,
               total_steps=20)


def context(settings: Settings, job: Job, kind: str = "progress") -> DeliveryContext:
    return DeliveryContext(settings, Storage(settings.images_dir), redis_client(settings), job,
                           kind)


def progress_edits(slack: FakeSlack) -> list[str]:
    return [str(c.params["ts"]) for c in slack.of("chat.update", ok=None)]


def test_progress_edits_share_one_budget_per_workspace(slack: FakeSlack,
                                                        slack_settings: Settings) -> None:
    deliverer = SlackDelivery(slack_settings)
    first, second = running_job(slack, "T1"), running_job(slack, "T1")
    elsewhere = running_job(slack, "T2")
    for job in (first, second, elsewhere):
        deliverer.deliver_progress(context(slack_settings, job), None)
    # One edit per workspace in each window: the second job of T1 waits its turn.
    assert progress_edits(slack) == [first.requester.message, elsewhere.requester.message]
    assert "step 3/20" in slack.of("chat.update")[0].params["text"]


def test_a_ratelimited_progress_edit_rests_the_workspace(slack: FakeSlack,
                                                         slack_settings: Settings) -> None:
    deliverer = SlackDelivery(slack_settings)
    slack.fail("chat.update", "ratelimited", retry_after="30")
    first = running_job(slack, "T1")
    with pytest.raises(RateLimited):
        deliverer.deliver_progress(context(slack_settings, first), None)
    client = redis_client(slack_settings)
    for key in client.scan_iter(SLACK_PROGRESS_PACE_KEY.format("*")):
        client.delete(key)  # the pace window is over; the pause (30 s) is not
    deliverer.deliver_progress(context(slack_settings, running_job(slack, "T1")), None)
    assert len(slack.of("chat.update", ok=None)) == 1  # no second call into the limit
    other = running_job(slack, "T2")
    deliverer.deliver_progress(context(slack_settings, other), None)
    assert progress_edits(slack)[-1] == other.requester.message  # other workspaces go on


def test_no_progress_edit_after_the_result(slack: FakeSlack, slack_settings: Settings) -> None:
    deliverer = SlackDelivery(slack_settings)
    storage = Storage(slack_settings.images_dir)
    png = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(png, format="PNG")
    job = running_job(slack, "T1").model_copy(update={
        "status": JobStatus.done, "images": [storage.put(png.getvalue())], "seeds": [5]})
    deliverer.deliver_result(context(slack_settings, job, "result"))
    final = slack.message("C1", job.requester.message)
    assert " — done" in final["text"]
    # A progress task that was queued before the result arrives late: it changes nothing.
    late = job.model_copy(update={"status": JobStatus.running})
    deliverer.deliver_progress(context(slack_settings, late), None)
    assert slack.message("C1", job.requester.message) == final
    assert len(slack.of("files.completeUploadExternal")) == 1
