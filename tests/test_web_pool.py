"""Prompt-URL jobs share one pool (IMAGINE_MAX_WEB_JOBS) instead of the per-user limit: a
proxy that fetches for everyone (GitHub's camo) is not capped at IMAGINE_MAX_JOBS_PER_USER,
and anonymous misses can never take the queue from chat and API users.

The web app is served in this process over real HTTP, with a real Redis and no worker, so
every job stays queued.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from generator.request import ImageRequest
from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, Requester
from tasks.core.queue import JobQueue
from tasks.names import WEB_ACTIVE_KEY
from tasks.worker.celery_app import create_celery
from tests.web_support import with_settings

JSON = {"Accept": "application/json"}


def test_prompt_urls_share_the_web_pool_not_the_per_user_limit(
        serve_app: Callable[..., str], settings: Settings) -> None:
    limits = {"max_web_jobs": 4, "max_jobs_per_user": 1, "max_queue": 10, "embed_wait": 0.0}
    base = serve_app(**limits)

    def miss(n: int) -> requests.Response:
        return requests.get(f"{base}/", params={"prompt": f"a lighthouse {n}"}, headers=JSON,
                            timeout=10)

    # One address (a proxy) draws four at once, far over its per-user limit of one...
    assert [miss(n).status_code for n in range(4)] == [202] * 4
    # ...and the fifth waits for the pool: 503 with Retry-After, not the per-user 429.
    refused = miss(4)
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert "prompt-URL images" in refused.json()["error"]
    # The rest of the queue is still open to the same address on the API, and to chat users.
    api = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox"}, timeout=10)
    assert api.status_code == 202, api.text
    queue = JobQueue(with_settings(settings, **limits), redis_client(settings),
                     create_celery(settings))
    request = ImageRequest(prompt="a cat", width=64, height=64)
    chat = queue.submit(Job(requester=Requester(platform="slack", user="U1"), request=request))
    # Chat comes first (IMAGINE_PRIORITY): ahead of the API job and the prompt URLs.
    assert chat.position == 1
    # A finished prompt-URL job gives its place in the pool back.
    web_jobs = [raw.decode() for raw in queue.redis.smembers(WEB_ACTIVE_KEY)]
    assert len(web_jobs) == 4
    queue.cancel(web_jobs[0])
    assert miss(5).status_code == 202
