"""After Slack has its ack, the command is in Redis: a front end killed right after acking
(SIGKILL, before any status message reached Slack) loses nothing. The job is drawn, its
status message posted once (by the deliverer, which finds none), the images uploaded once
into that message's thread; the restarted front end serves on.

`imagine web` (HTTP mode), a generate and a deliver worker on the tiny model, a fake Slack.
"""

from __future__ import annotations

from collections.abc import Callable

from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStore
from tasks.names import ACTIVE_KEY
from tests.fakes.slack_api import FakeSlack, SlackSender, buttons
from tests.fixtures_redis import Process, wait_for
from tests.slack_support import SlackStack, finished, uploads_in


def test_a_front_end_killed_right_after_the_ack_loses_nothing(
        start_process: Callable[..., Process], start_worker: Callable[..., Process],
        slack: FakeSlack, settings: Settings) -> None:
    stack = SlackStack(start_process, start_worker, slack)
    stack.start()
    sender = SlackSender(stack.app_url, slack)
    client = redis_client(settings)
    assert stack.front is not None

    # Slack fails the front end's status message (a transient error): the job, recorded
    # before the ack, has no status message when the front end is killed.
    slack.fail("chat.postMessage", "internal_error")
    answer = sender.command("a fox in the snow --seed 11")
    assert (answer.status_code, answer.text) == (200, "")
    (job_id,) = [raw.decode() for raw in client.smembers(ACTIVE_KEY.format("slack:U0000USER"))]
    wait_for(lambda: slack.of("chat.postMessage", ok=False), message="the failed status post")
    stack.front.kill_group()

    stack.restart_front("web-restarted")

    jobs = JobStore(client, settings.job_ttl)
    job = wait_for(lambda: (j := jobs.get(job_id)).requester.message and j, 60,
                   message="a status message for the job")
    channel, ts = job.requester.channel, job.requester.message
    result = finished(slack, channel, ts, stack)
    assert result["text"].startswith("<@U0000USER>: a fox in the snow")
    assert "🔄 Reroll" in buttons(result)
    assert jobs.get(job_id).requester.thread == ts  # the status message starts the thread
    shared = uploads_in(slack, channel, ts)
    assert len(shared) == 1 and len(shared[0]["files"]) == 1
    # Once each: one status message, one upload.
    assert len(slack.of("chat.postMessage")) == 1
    assert len(slack.of("files.completeUploadExternal")) == 1
