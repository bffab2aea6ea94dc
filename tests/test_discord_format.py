"""Fast checks of what the Discord bot and deliverer write, and of the REST client's errors
against the fake Discord (real HTTP, no processes)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image

from bots.discord.delivery import DiscordDelivery, jpeg_preview
from bots.discord.formatting import (
    custom_id,
    no_pings,
    nonce,
    parse_custom_id,
    result_components,
    result_content,
    token_valid,
)
from bots.discord.rest import DiscordApiError, DiscordRest, SharedWaits, UploadFile
from bots.limits import Limits
from generator.request import ImageRequest
from tasks.core.delivery import RateLimited
from tasks.core.jobs import Job, JobStatus, Requester
from tests.fakes.discord_server import BOT_TOKEN, FakeDiscord


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDiscord]:
    with FakeDiscord() as server:
        yield server


def _job(**extra: str) -> Job:
    requester = Requester(platform="discord", user="1234", channel="99", extra=extra)
    return Job(requester=requester, request=ImageRequest(prompt="a `quoted` fox @everyone",
                                                         width=64, height=64, seed=5),
               status=JobStatus.done, images=["a" * 32, "b" * 32], seeds=[5, 6])


def test_custom_ids_round_trip_and_stay_short() -> None:
    job_id = "0123456789abcdef01234567"
    for action in ("reroll", "vary", "upscale", "cancel"):
        value = custom_id(action, job_id, 3)
        assert len(value) <= 100  # Discord's limit
        assert parse_custom_id(value) == (action, job_id, 3)
    # "delete" is a button now (#15): an action no button has stays unknown.
    assert parse_custom_id("imagine:destroy:0123456789abcdef:0") is None
    with pytest.raises(ValueError):
        custom_id("destroy", job_id)


def test_only_the_requester_can_be_pinged() -> None:
    assert no_pings(Requester(platform="discord", user="42")) == {
        "parse": [], "users": ["42"], "replied_user": False}
    assert no_pings(Requester(platform="discord", user="not-an-id"))["users"] == []


def test_nonce_fits_discord_and_is_stable() -> None:
    assert len(nonce("f" * 24, "post")) <= 25
    assert nonce("a", "post") == nonce("a", "post") != nonce("a", "status")


def test_token_is_valid_for_less_than_15_minutes() -> None:
    now = time.time()
    fresh = Requester(platform="discord", extra={"interaction_token": "t",
                                                  "interaction_created": str(now - 60)})
    old = Requester(platform="discord", extra={"interaction_token": "t",
                                                "interaction_created": str(now - 15 * 60)})
    assert token_valid(fresh, now) and not token_valid(old, now)
    assert not token_valid(Requester(platform="discord"), now)


def test_result_message_names_seeds_and_reproduces_the_prompt() -> None:
    job = _job()
    text = result_content(job, Limits(default_size=64), ["note"])
    assert text.startswith("<@1234> **a ˋquotedˋ fox @everyone**")
    assert "seeds 5, 6" in text and "--seed 5" in text and text.endswith("note")
    rows = result_components(job)
    labels = [[b["label"] for b in row["components"]] for row in rows]
    assert labels == [["U1", "U2"], ["V1", "V2"], ["Reroll", "Report", "Delete"]]


def test_jpeg_preview_fits_the_budget_or_gives_up() -> None:
    noise = Image.effect_noise((256, 256), 80).convert("RGB")
    out = io.BytesIO()
    noise.save(out, "PNG")
    png = out.getvalue()
    preview = jpeg_preview(png, len(png) // 4)
    assert preview is not None and preview.startswith(b"\xff\xd8")
    assert len(preview) <= len(png) // 4
    assert jpeg_preview(png, 10) is None


def test_rest_client_maps_discord_answers(fake: FakeDiscord) -> None:
    rest = DiscordRest(fake.api_url, BOT_TOKEN)
    me = rest.request("GET", "/users/@me")
    assert me["id"] == fake.application_id

    fake.rate_limit_next("POST", rf"^/channels/{fake.channel_id}/messages$", retry_after=0.25)
    body = {"content": "hi", "nonce": "n1", "enforce_nonce": True}
    files = [UploadFile("a.png", b"\x89PNG...", "image/png")]
    with pytest.raises(RateLimited) as limited:
        rest.request("POST", f"/channels/{fake.channel_id}/messages", body, files)
    assert limited.value.retry_after == 0.25
    first = rest.request("POST", f"/channels/{fake.channel_id}/messages", body, files)
    again = rest.request("POST", f"/channels/{fake.channel_id}/messages", body, files)
    assert first["id"] == again["id"]  # enforce_nonce: the same message, not a second one
    assert first["attachments"][0]["filename"] == "a.png"

    with pytest.raises(DiscordApiError) as gone:
        rest.request("PATCH", f"/channels/{fake.channel_id}/messages/1", {"content": "x"})
    assert gone.value.gone and gone.value.code == 10008
    with pytest.raises(DiscordApiError) as refused:
        DiscordRest(fake.api_url, "wrong").request("GET", "/users/@me")
    assert refused.value.status == 401 and not refused.value.gone


def test_a_429_makes_every_deliverer_wait(fake: FakeDiscord, redis_url: str) -> None:
    import redis

    waits = SharedWaits(redis.Redis.from_url(redis_url))
    first = DiscordRest(fake.api_url, BOT_TOKEN, waits=waits)
    other = DiscordRest(fake.api_url, BOT_TOKEN, waits=waits)  # another thread or process
    path = f"/channels/{fake.channel_id}/messages"
    fake.rate_limit_next("POST", rf"^{path}$", retry_after=30)
    with pytest.raises(RateLimited):
        first.request("POST", path, {"content": "a"})
    calls = len(fake.find("POST", rf"^{path}$"))
    with pytest.raises(RateLimited) as told:
        other.request("POST", path, {"content": "b"})
    assert 0 < told.value.retry_after <= 30
    assert len(fake.find("POST", rf"^{path}$")) == calls  # it never reached Discord
    other.request("GET", "/users/@me")  # other routes are not held up


def _context(fake: FakeDiscord, redis_url: str, tmp_path: Any, job: Job) -> Any:
    import redis

    from settings import Settings
    from tasks.core.delivery import DeliveryContext
    from tasks.core.storage import Storage

    settings = Settings(_env_file=None, redis_url=redis_url, discord_token=BOT_TOKEN,
                        discord_api_url=fake.api_url, storage_dir=tmp_path)
    client = redis.Redis.from_url(redis_url)
    return DiscordDelivery(settings), DeliveryContext(settings, Storage(tmp_path), client, job,
                                                      "result")


def _interaction_job(fake: FakeDiscord, status: JobStatus, **fields: Any) -> Job:
    payload = fake.command_payload(prompt="x")
    requester = Requester(platform="discord", user="1234", channel=fake.channel_id, extra={
        "application_id": fake.application_id, "interaction_token": payload["token"],
        "interaction_created": str(time.time())})
    # The deferred response the bot would have made.
    DiscordRest(fake.api_url, None).request(
        "POST", f"/interactions/{payload['id']}/{payload['token']}/callback", {"type": 5},
        auth=False)
    return Job(requester=requester, request=ImageRequest(prompt="a slow fox"), status=status,
               **fields)


def test_progress_and_failure_edit_the_status_message(fake: FakeDiscord, redis_url: str,
                                                      tmp_path: Any) -> None:
    job = _interaction_job(fake, JobStatus.running, step=3, total_steps=10)
    adapter, ctx = _context(fake, redis_url, tmp_path, job)
    adapter.deliver_progress(ctx, None)
    token = job.requester.extra["interaction_token"]
    (edit,) = fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/@original")
    assert "Drawing" in edit.json["content"] and "step 3/10" in edit.json["content"]
    assert edit.json["components"][0]["components"][0]["custom_id"].startswith(
        "imagine:cancel:")

    failed = job.model_copy(update={"status": JobStatus.failed,
                                    "error": "Out of memory; try a smaller size."})
    adapter, ctx = _context(fake, redis_url, tmp_path, failed)
    adapter.deliver_result(ctx)
    adapter.deliver_result(ctx)  # a redelivered task: the step is not repeated
    edits = fake.find("PATCH", rf"/webhooks/\d+/{token}/messages/@original")
    assert len(edits) == 2
    assert "Out of memory" in edits[1].json["content"] and edits[1].json["components"] == []
