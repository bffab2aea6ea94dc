"""Follow-ups (Reroll, Vary, Upscale) and who may cancel: one meaning on every front end.

The table test pins what each action asks for, from a Slack job and from a Discord job
alike; the web tests drive `POST /api/v1/jobs/<id>/actions` and Slack's Cancel button over
real HTTP without a worker; the end-to-end test presses Upscale on Discord (a real discord.py
bot against the fake Discord) and on Slack (a signed interactivity payload) and reads the
delivered PNGs back.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from bots.discord.formatting import parse_custom_id, result_components
from bots.errors import PromptError
from bots.followups import (
    ACTIONS,
    VARY_STRENGTHS,
    FollowUpLimits,
    JobNotReady,
    NoImages,
    canonical_action,
    follow_up,
)
from bots.permissions import Role, cancel_refusal, discord_role, may_cancel, slack_role
from bots.slack import text as say
from generator.png import read_parameters
from generator.request import DETAIL_STRENGTH, UPSCALE_STRENGTH, ImageRequest
from settings import Settings, load_settings
from settings.errors import ConfigError
from tasks.core.connection import redis_client
from tasks.core.jobs import Job, JobStatus, JobStore, Requester
from tests.discord_support import DiscordStack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    SlackSender,
    buttons,
)
from tests.fixtures_redis import Process, wait_for

PARENT_REQUEST = ImageRequest(prompt="a red fox", width=64, height=48, seed=5, num_images=2,
                              num_inference_steps=2)
IMAGES = ["a" * 64, "b" * 64]
LIMITS = FollowUpLimits(max_pixels=256 * 256, upscale_factor=2)
E2E_WAIT = 120.0


def parent_job(platform: str, status: JobStatus = JobStatus.done, **changes: Any) -> Job:
    requester = {"slack": Requester(platform="slack", user="U0000USER", channel="C1",
                                    thread="1.2", extra={"team": "T1"}),
                 "discord": Requester(platform="discord", user="1234", channel="99",
                                      extra={"guild_id": "7"})}[platform]
    done = status is JobStatus.done
    fields: dict[str, Any] = {"request": PARENT_REQUEST, "images": IMAGES if done else [],
                              "seeds": [5, 6] if done else [], **changes}
    return Job(requester=requester, status=status, **fields)


# --- the module: every action × both platforms ------------------------------------------

EXPECTED: dict[tuple[str, int | None], dict[str, Any]] = {
    ("reroll", None): {"mode": "txt2img", "seed": None, "num_images": 2, "width": 64,
                       "height": 48, "source_image": None},
    ("vary_subtle", 1): {"mode": "img2img", "source_image": IMAGES[1], "seed": None,
                         "strength": 0.35, "num_images": 2, "width": 64, "height": 48},
    ("vary_strong", 0): {"mode": "img2img", "source_image": IMAGES[0], "seed": None,
                         "strength": 0.75, "num_images": 2, "width": 64, "height": 48},
    # Twice the size, image 2's own seed (6, not the request's 5), one image.
    ("upscale", 1): {"mode": "upscale", "source_image": IMAGES[1], "seed": 6,
                     "strength": DETAIL_STRENGTH, "num_images": 1, "width": 128,
                     "height": 96, "factor": 2.0},
    ("upscale_creative", 0): {"mode": "upscale_creative", "source_image": IMAGES[0],
                              "seed": 5, "strength": UPSCALE_STRENGTH, "num_images": 1,
                              "width": 128, "height": 96},
    # Zoom Out 2x by default: floor8 of each side doubled; the outpainting seed is kept.
    ("zoom_out", 0): {"mode": "zoom_out", "factor": 2.0, "width": 128, "height": 96,
                      "seed": 5, "num_images": 1, "source_image": IMAGES[0]},
    # Buttons posted by earlier releases.
    ("vary", 0): {"mode": "img2img", "source_image": IMAGES[0], "strength": 0.35},
}


@pytest.mark.parametrize(("action", "index"), list(EXPECTED))
def test_each_action_asks_for_the_same_request_on_every_platform(action: str,
                                                                 index: int | None) -> None:
    made = {platform: follow_up(parent_job(platform), index, action, LIMITS)
            for platform in ("slack", "discord")}
    assert made["slack"] == made["discord"]
    request = made["slack"]
    for field, value in EXPECTED[(action, index)].items():
        assert getattr(request, field) == value, field
    assert (request.prompt, request.num_inference_steps) == ("a red fox", 2)


def test_zoom_factors_and_pan_directions() -> None:
    parent = parent_job("slack")
    zoom = follow_up(parent, 1, "zoom_out", LIMITS, factor=1.5)
    assert (zoom.width, zoom.height, zoom.factor, zoom.seed) == (96, 72, 1.5, 6)
    grown = {d: follow_up(parent, 0, "pan", LIMITS, direction=d) for d in
             ("left", "right", "up", "down")}
    assert {d: (r.width, r.height) for d, r in grown.items()} == {
        "left": (96, 48), "right": (96, 48), "up": (64, 72), "down": (64, 72)}
    assert all(r.direction == d and r.mode == "pan" for d, r in grown.items())
    with pytest.raises(PromptError, match="1.5 or 2"):
        follow_up(parent, 0, "zoom_out", LIMITS, factor=3)
    with pytest.raises(PromptError, match="left, right, up or down"):
        follow_up(parent, 0, "pan", LIMITS)


def test_legacy_button_names_map_onto_the_actions() -> None:
    assert {name: canonical_action(name) for name in ("vary", "upscale")} == {
        "vary": "vary_subtle", "upscale": "upscale"}
    assert all(canonical_action(name) == name for name in ACTIONS)
    with pytest.raises(PromptError, match="reroll, vary_subtle, vary_strong, upscale"):
        canonical_action("zoom")
    assert canonical_action("zoom_out_1_5x") == "zoom_out"
    # Ids of buttons already posted still parse on both platforms.
    job_id = "ab" * 12
    assert parse_custom_id(f"imagine:vary:{job_id}:1") == ("vary", job_id, 1)
    assert say.ActionValue.decode("imagine:vary:1", f"{job_id}:1") == say.ActionValue(
        "vary", job_id, 1)
    assert say.ActionValue.decode("imagine:upscale:0", f"{job_id}:0").action == "upscale"


def test_new_buttons_carry_the_new_names_and_keep_their_labels() -> None:
    job = parent_job("discord")
    ids = [b["custom_id"] for row in result_components(job) for b in row["components"]]
    assert [parse_custom_id(i)[0] for i in ids] == [  # type: ignore[index]
        "upscale", "upscale", "vary_subtle", "vary_subtle", "reroll", "report", "delete"]
    one = parent_job("discord", images=IMAGES[:1], seeds=[5])
    assert [[b.get("label") or b["emoji"]["name"] for b in row["components"]]
            for row in result_components(one)] == [
        ["Upscale (Subtle)", "Upscale (Creative)"],
        ["Vary (Subtle)", "Vary (Strong)", "Vary (Region)"], ["Zoom Out 2x", "Zoom Out 1.5x"],
        ["⬅️", "➡️", "⬆️", "⬇️"], ["Reroll", "Report", "Delete"]]
    assert parse_custom_id(result_components(one)[3]["components"][0]["custom_id"]) == (
        "pan_left", one.id, 0)
    slack = buttons({"blocks": say.result_blocks("done", job)})
    assert slack["V2"]["action_id"] == "imagine:vary_subtle:1"
    assert slack["🔄 Reroll"]["action_id"] == "imagine:reroll"
    assert set(slack) == {"🔄 Reroll", "V1", "V2", "U1", "U2", "🚩 Report", "🗑️ Delete"}


def test_what_cannot_be_followed_up_says_why() -> None:
    parent = parent_job("slack")
    # Over the upscale limit: smaller, same aspect ratio, never refused (the worker notes it).
    capped = follow_up(parent, 0, "upscale", FollowUpLimits(max_upscale_pixels=64 * 64))
    assert (capped.width, capped.height) == (72, 48)
    zoom = follow_up(parent, 0, "zoom_out", FollowUpLimits(max_pixels=64 * 64))
    assert zoom.width * zoom.height <= 64 * 64 and zoom.factor == 2.0
    for index in (None, -1, 2):
        with pytest.raises(PromptError, match="pick 0 to 1"):
            follow_up(parent, index, "vary_subtle", LIMITS)
    for status in (JobStatus.queued, JobStatus.running):
        with pytest.raises(JobNotReady, match=f"still {status.value}"):
            follow_up(parent_job("discord", status), 0, "reroll", LIMITS)
    failed = parent_job("discord", JobStatus.failed)
    with pytest.raises(NoImages, match="try reroll"):
        follow_up(failed, 0, "upscale", LIMITS)
    assert follow_up(failed, None, "reroll", LIMITS).seed is None  # "Try again"
    assert set(VARY_STRENGTHS) == {"vary_subtle", "vary_strong"}


def test_settings_upscale_factor_and_slack_admins(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMAGINE_SLACK_ADMINS", " U012AB3CD,W045EF6GH ,")
    monkeypatch.setenv("IMAGINE_UPSCALE_FACTOR", "3")
    settings = load_settings()
    assert settings.slack_admins == frozenset({"U012AB3CD", "W045EF6GH"})
    assert FollowUpLimits.from_settings(settings).upscale_factor == 3
    monkeypatch.setenv("IMAGINE_UPSCALE_FACTOR", "1")
    with pytest.raises(ConfigError, match="IMAGINE_UPSCALE_FACTOR='1'"):
        load_settings()


# --- who may cancel -------------------------------------------------------------------


def test_cancel_rule_requester_or_moderator() -> None:
    job = parent_job("discord", JobStatus.queued)
    asked: list[str] = []

    def role(found: Role) -> Callable[[], Role]:
        return lambda: asked.append("role") or found  # type: ignore[func-returns-value]

    assert may_cancel(job, "1234", role(Role.member)) and not asked  # no lookup needed
    assert not may_cancel(job, "999", role(Role.member))
    assert may_cancel(job, "999", role(Role.moderator)) and may_cancel(job, "9", role(Role.admin))
    assert discord_role(manage_messages=True, manage_guild=False) is Role.moderator
    assert discord_role(manage_messages=False, manage_guild=True) is Role.admin
    assert discord_role(manage_messages=False, manage_guild=False) is Role.member

    def no_lookup(user: str) -> dict[str, Any]:
        raise AssertionError("users.info asked for a listed admin")

    assert slack_role("UMOD", {"UMOD"}, no_lookup) is Role.admin
    assert slack_role("U1", set(), lambda u: {"is_admin": True}) is Role.admin
    assert slack_role("U1", set(), lambda u: {"is_owner": True}) is Role.admin
    assert slack_role("U1", set(), lambda u: {"is_admin": False}) is Role.member
    assert slack_role("U1", set(), lambda u: {}) is Role.member  # lookup failed: no rights


# --- the REST endpoint ------------------------------------------------------------------


def _save(settings: Settings, job: Job) -> Job:
    return JobStore(redis_client(settings), settings.job_ttl).save(job)


def test_rest_actions_endpoint(serve_app: Callable[..., str], settings: Settings) -> None:
    base = serve_app(max_pixels=13_000, max_jobs_per_user=100)
    jobs = JobStore(redis_client(settings), settings.job_ttl)
    parent = _save(settings, parent_job("slack"))
    url = f"{base}/api/v1/jobs/{parent.id}/actions"

    answer = requests.post(url, json={"action": "upscale", "index": 1}, timeout=30)
    assert answer.status_code == 202, answer.text
    view = answer.json()
    assert view["status"] == "queued" and answer.headers["Location"] == view["links"]["self"]
    child = jobs.get(view["id"])
    assert (child.parent, child.action, child.requester.platform) == (parent.id, "upscale", "api")
    assert child.request == follow_up(parent, 1, "upscale", FollowUpLimits(13_000))
    assert (child.request.width, child.request.height, child.request.seed) == (128, 96, 6)
    for body, strength in (({"action": "vary_subtle"}, 0.35), ({"action": "vary_strong",
                                                                "index": 1}, 0.75)):
        answer = requests.post(url, json=body, timeout=30)
        assert answer.status_code == 202, answer.text
        assert jobs.get(answer.json()["id"]).request.strength == strength
    assert requests.post(url, json={"action": "reroll"}, timeout=30).status_code == 202

    allowed = "reroll, vary_subtle, vary_strong, upscale"
    for body, words in [({"action": "zoom"}, allowed), ({"action": "vary"}, allowed),
                        ({}, "action"), ({"action": "upscale", "index": -1}, "index"),
                        ({"action": "upscale", "index": "1"}, "index"),
                        ({"action": "upscale", "index": 2},
                         "pick 0 to 1 (the buttons show 1 to 2)"),
                        ({"action": "reroll", "colour": "red"}, "colour")]:
        answer = requests.post(url, json=body, timeout=30)
        assert answer.status_code == 400 and words in answer.json()["error"], body
    assert requests.post(url, data="action=reroll", timeout=30).status_code == 400
    big = _save(settings, parent_job("discord", request=PARENT_REQUEST.model_copy(
        update={"width": 96, "height": 96})))
    answer = requests.post(f"{base}/api/v1/jobs/{big.id}/actions",
                           json={"action": "zoom_out"}, timeout=30)
    assert answer.status_code == 202, answer.text  # 192×192 scaled down to IMAGINE_MAX_PIXELS
    zoomed = jobs.get(answer.json()["id"]).request
    assert (zoomed.factor, zoomed.width, zoomed.height) == (2.0, 112, 112)

    missing = requests.post(f"{base}/api/v1/jobs/{'cd' * 12}/actions",
                            json={"action": "reroll"}, timeout=30)
    assert missing.status_code == 404
    for job in (parent_job("slack", JobStatus.queued), parent_job("slack", JobStatus.failed)):
        _save(settings, job)
        answer = requests.post(f"{base}/api/v1/jobs/{job.id}/actions",
                               json={"action": "vary_subtle"}, timeout=30)
        assert answer.status_code == 409, answer.text
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=30).json()
    operation = document["paths"]["/api/v1/jobs/{job_id}/actions"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["action"]["enum"] == list(ACTIONS)
    assert {"202", "400", "404", "409"} <= set(operation["responses"])


# --- Slack's Cancel button: the requester or a moderator --------------------------------


def _slack_settings(slack: FakeSlack, **more: Any) -> dict[str, Any]:
    return {"slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url, **more}


def test_slack_moderators_cancel_other_peoples_jobs(serve_app: Callable[..., str],
                                                    settings: Settings,
                                                    slack: FakeSlack) -> None:
    # No worker: every job stays queued until someone cancels it.
    base = serve_app(**_slack_settings(slack, slack_admins="UMOD0001"))
    sender = SlackSender(base, slack)
    slack.users["UADMIN01"] = {"is_admin": True}
    jobs = JobStore(redis_client(settings), settings.job_ttl)

    def queued_job() -> tuple[dict[str, Any], str]:
        before = len(slack.of("chat.postMessage"))
        assert sender.command("a waiting fox").status_code == 200
        status = wait_for(lambda: len(slack.of("chat.postMessage")) > before and
                          slack.of("chat.postMessage")[before].answer["message"])
        job_id = buttons(status)["Cancel"]["value"]
        # The status message (and its button) comes first, then the job's record.
        wait_for(lambda: jobs.find(job_id) is not None, message="the job's record")
        return status, job_id

    def click_cancel(status: dict[str, Any], user: str) -> None:
        assert sender.click(buttons(status)["Cancel"], status, user=user).status_code == 200

    status, job_id = queued_job()
    notes = len(slack.of("response_url"))
    click_cancel(status, "U0000EVE")
    note = wait_for(lambda: slack.of("response_url")[notes:], message="the refusal")[0]
    assert note.params["text"] == cancel_refusal("<@U0000USER>")
    # Role lookups only: the language lookups (include_locale, bots/slack/locale.py) aside.
    def role_lookups() -> list[Any]:
        return [c for c in slack.of("users.info") if "include_locale" not in c.params]

    assert [c.params["user"] for c in role_lookups()] == ["U0000EVE"]
    assert jobs.get(job_id).status is JobStatus.queued

    click_cancel(status, "UMOD0001")  # listed in IMAGINE_SLACK_ADMINS: no users.info
    wait_for(lambda: jobs.get(job_id).status is JobStatus.cancelled, message="the cancel")
    assert len(role_lookups()) == 1
    wait_for(lambda: "cancelled before it started" in slack.message(
        status["channel"], status["ts"])["text"], message="the status edit")

    status, job_id = queued_job()
    click_cancel(status, "UADMIN01")  # a workspace admin, per users.info
    wait_for(lambda: jobs.get(job_id).status is JobStatus.cancelled, message="the cancel")
    assert role_lookups()[-1].params["user"] == "UADMIN01"


# --- end to end: Upscale pressed on Discord and on Slack ----------------------------------


def _seed(png: bytes) -> int:
    match = re.search(r"Seed: (\d+)", read_parameters(png) or "")
    assert match, "no parameters chunk"
    return int(match.group(1))


def _size(png: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(png)).size


def _discord_files(fake: FakeDiscord, interaction: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"/webhooks/{interaction['application_id']}/{interaction['token']}"
    calls = wait_for(lambda: [c for c in fake.posts_with_files() if c.path == path], E2E_WAIT,
                     interval=0.1, message="a followup with images")
    return list(calls[0].files)


def _discord_upscale(fake: FakeDiscord) -> tuple[bytes, bytes]:
    """/imagine with two images, then U1 on the result: (image 1, its upscale)."""
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a red fox in snow", count=2, steps=2))
    parent_files = _discord_files(fake, interaction)
    posted = wait_for(lambda: next(
        (m for m in list(fake.messages.values()) if m["attachments"] and any(
            b["custom_id"].startswith("imagine:upscale:") for row in m["components"]
            for b in row["components"])), None), E2E_WAIT, message="the result message")
    (u1,) = [b["custom_id"] for row in posted["components"] for b in row["components"]
             if b["label"] == "U1"]
    press = fake.dispatch("INTERACTION_CREATE", fake.button_payload(u1, posted))
    (upscaled,) = _discord_files(fake, press)
    return parent_files[0]["data"], upscaled["data"]


def _slack_upscale(slack: FakeSlack, base: str) -> tuple[bytes, bytes]:
    """/imagine with two images, then U2 on the result: (image 2, its upscale)."""
    sender = SlackSender(base, slack)
    assert sender.command("a red fox in snow --n 2").status_code == 200
    status = wait_for(lambda: slack.of("chat.postMessage") and
                      slack.of("chat.postMessage")[0].answer["message"])
    channel, root = status["channel"], status["ts"]

    def uploads() -> list[dict[str, Any]]:
        return [m for m in slack.thread(channel, root) if m.get("subtype") == "file_share"]

    wait_for(lambda: uploads() and "U2" in buttons(slack.message(channel, root)),
             E2E_WAIT, interval=0.2, message="the Slack result")
    result = slack.message(channel, root)
    assert sender.click(buttons(result)["U2"], result).status_code == 200
    wait_for(lambda: len(uploads()) == 2, E2E_WAIT, interval=0.2, message="the upscale")
    first, second = uploads()
    return first["files"][1]["bytes"], second["files"][0]["bytes"]


def test_upscale_pressed_on_discord_and_slack_doubles_the_image_with_its_seed(
        serve_app: Callable[..., str], start_process: Callable[..., Process],
        start_worker: Callable[..., Process], slack: FakeSlack) -> None:
    with FakeDiscord() as discord:
        env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url,
               "IMAGINE_DISCORD_READY_TIMEOUT": "0.2"}
        stack = DiscordStack(discord, start_process, start_worker, env)
        stack.start()
        base = serve_app(**_slack_settings(slack))
        try:
            results = {"discord": _discord_upscale(discord), "slack": _slack_upscale(slack, base)}
        except AssertionError:
            raise AssertionError(stack.logs()) from None
        finally:
            stack.bot.stop()  # before the fake: its shutdown waits for the gateway to close
    for platform, (source, upscaled) in results.items():
        assert _size(source) == (64, 64), platform
        assert _size(upscaled) == (128, 128), platform
        assert _seed(upscaled) == _seed(source), platform
