"""The Discord front end end to end: a real `imagine discord` process connected to a fake
Discord (REST + gateway), real generate and deliver workers, real Redis, the tiny model.

One bot and one pair of workers serve the whole module (processes are the slow part);
each test tells its jobs apart by the ids of the messages and interactions it sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import Call, FakeDiscord
from tests.fixtures_redis import (
    ROOT,
    imagine_command,
    wait_for,
)

TIMEOUT = 180.0


@pytest.fixture(scope="module")
def stack(redis_server: Any, tiny_model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordStack]:
    redis_server.client().flushall()
    with running_discord_stack(
            redis_server, tmp_path_factory.mktemp("discord"), tiny_model_dir,
            FakeDiscord().start(), IMAGINE_PUBLIC_URL="http://images.example.test",
            IMAGINE_DISCORD_READY_TIMEOUT="0.2", IMAGINE_MAX_JOBS_PER_USER="10") as stack:
        yield stack


def _files_posted(fake: FakeDiscord, path: str) -> list[Call]:
    return [c for c in fake.posts_with_files() if c.path.startswith(path)]


def _wait_posted(stack: DiscordStack, check: Any, what: str) -> Any:
    try:
        return wait_for(check, TIMEOUT, interval=0.1, message=what)
    except AssertionError:
        raise AssertionError(f"{what} never came\n{stack.logs()}") from None


def _is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [b["custom_id"] for row in message.get("components", [])
            for b in row["components"]]


def _reply_to(stack: DiscordStack, message_id: str) -> Call:
    """The accepted post with images that replies to message `message_id`."""
    def posted() -> list[Call]:
        return [c for c in _files_posted(stack.fake, "/channels/")
                if str((c.json.get("message_reference") or {}).get("message_id")) == message_id]

    calls = _wait_posted(stack, posted, f"a reply with images to message {message_id}")
    assert len(calls) == 1, f"posted {len(calls)} times"
    return calls[0]


def _followup_of(stack: DiscordStack, interaction: dict[str, Any]) -> Call:
    path = f"/webhooks/{interaction['application_id']}/{interaction['token']}"
    calls = _wait_posted(stack, lambda: _files_posted(stack.fake, path),
                         "a followup with images")
    return calls[0]


def test_mention_gets_a_reply_with_the_png(stack: DiscordStack) -> None:
    fake = stack.fake
    author = fake.user("alice")
    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        "a red fox in snow --seed 7", author))

    call = _reply_to(stack, message["id"])
    body = call.json
    assert call.multipart and len(call.files) == 1
    assert call.files[0]["name"] == "files[0]" and call.files[0]["type"] == "image/png"
    assert _is_png(call.files[0]["data"])
    assert body["attachments"][0]["filename"] == call.files[0]["filename"]
    assert "seed 7" in body["content"] and "a red fox in snow" in body["content"]
    assert body["allowed_mentions"] == {"parse": [], "users": [author["id"]],
                                        "replied_user": False}
    assert body["nonce"] and body["enforce_nonce"] is True
    ids = _custom_ids(body)
    assert any(i.startswith("imagine:upscale:") for i in ids)
    assert any(i.startswith("imagine:vary_subtle:") for i in ids)
    assert any(i.startswith("imagine:reroll:") for i in ids)

    # The status reply (queue position + Cancel) came first, and is removed once done.
    status = [c for c in fake.find("POST", r"^/channels/\d+/messages$", status=200)
              if not c.files and str((c.json.get("message_reference") or {}).get("message_id"))
              == message["id"]]
    assert len(status) == 1 and "Queued" in status[0].json["content"]
    assert any(i.startswith("imagine:cancel:") for i in _custom_ids(status[0].json))
    status_id = next(m["id"] for m in fake.messages.values()
                     if str(m.get("message_reference", {}).get("message_id")) == message["id"]
                     and not m["attachments"])
    wait_for(lambda: status_id in fake.deleted, TIMEOUT, message="status message removed")


def test_direct_message_needs_no_mention(stack: DiscordStack) -> None:
    fake = stack.fake
    author = fake.user("bob")
    dm = fake.dm_channel(author)
    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        "a lighthouse at dusk", author, mention_bot=False, channel_id=dm["id"], dm=True))
    call = _reply_to(stack, message["id"])
    assert call.path == f"/channels/{dm['id']}/messages"
    assert _is_png(call.files[0]["data"])


def test_slash_command_defers_then_follows_up(stack: DiscordStack) -> None:
    fake = stack.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a castle on a hill", aspect_ratio="16:9", seed=11, steps=2, count=2))

    callback = wait_for(lambda: fake.find(
        "POST", rf"^/interactions/{interaction['id']}/"), TIMEOUT, message="the callback")[0]
    assert callback.json == {"type": 5} and callback.query.get("with_response")

    call = _followup_of(stack, interaction)
    assert call.multipart and len(call.files) == 2
    assert all(_is_png(f["data"]) for f in call.files)
    body = call.json
    assert "seeds 11, 12" in body["content"] or "seeds 11" in body["content"]
    assert "a castle on a hill" in body["content"]
    assert body["allowed_mentions"]["parse"] == []
    ids = _custom_ids(body)
    assert {i.split(":")[1] for i in ids} == {"upscale", "vary_subtle", "reroll", "report",
                                              "delete"}
    assert len([i for i in ids if i.startswith("imagine:vary_subtle:")]) == 2
    # The status message (the original response) showed the place in line, then went away.
    edits = fake.find("PATCH", rf"/webhooks/\d+/{interaction['token']}/messages/@original")
    assert edits and "Queued" in edits[0].json["content"]
    wait_for(lambda: fake.find(
        "DELETE", rf"/webhooks/\d+/{interaction['token']}/messages/@original", status=204),
        TIMEOUT, message="status message removed")


def test_bad_prompt_gets_an_ephemeral_usage_message(stack: DiscordStack) -> None:
    fake = stack.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a fox --colour red"))
    callback = wait_for(lambda: fake.find(
        "POST", rf"^/interactions/{interaction['id']}/"), TIMEOUT, message="the callback")[0]
    assert callback.json["type"] == 4
    data = callback.json["data"]
    assert data["flags"] & 64  # ephemeral
    assert "Unknown flag --colour" in data["content"] and "Usage:" in data["content"]

    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload("--seed 5"))
    reply = wait_for(lambda: [c for c in fake.find("POST", r"^/channels/\d+/messages$")
                              if str((c.json.get("message_reference") or {}).get("message_id"))
                              == message["id"]], TIMEOUT, message="the usage reply")[0]
    assert "prompt is empty" in reply.json["content"] and "Usage:" in reply.json["content"]


def test_everyone_and_roles_in_a_prompt_ping_nobody(stack: DiscordStack) -> None:
    fake = stack.fake
    author = fake.user("mallory")
    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        f"@everyone @here <@&{fake.guild_id}> <@{fake.owner['id']}> a loud party", author))
    _reply_to(stack, message["id"])
    ours = [c for c in fake.calls if c.method in ("POST", "PATCH") and c.json
            and "content" in c.json and "@everyone" in json.dumps(c.json)]
    assert ours, "the prompt is echoed in what the bot posts"
    for call in ours:
        allowed = call.json["allowed_mentions"]
        assert allowed["parse"] == [], call.path
        assert set(allowed.get("users", [])) <= {author["id"]}, call.path
        assert not allowed.get("roles"), call.path


def test_rate_limited_upload_is_retried_once_after_retry_after(stack: DiscordStack) -> None:
    fake = stack.fake
    fake.rate_limit_next("POST", r"^/webhooks/\d+/tok-", retry_after=1.5)
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a patient snail"))
    _followup_of(stack, interaction)
    path = f"/webhooks/{interaction['application_id']}/{interaction['token']}"
    attempts = [c for c in fake.find("POST") if c.path == path and c.files]
    assert [c.status for c in attempts] == [429, 200]
    # Causality, not speed: the retry did not come before Discord said it may.
    assert attempts[1].at - attempts[0].at >= 1.5 * 0.9


def test_expired_interaction_token_gets_a_channel_reply(stack: DiscordStack) -> None:
    fake = stack.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a slow boat", age=16 * 60))
    status_id = wait_for(lambda: next((m["id"] for m in fake.messages.values()
                                       if m.get("interaction_token") == interaction["token"]),
                                      None), TIMEOUT, message="the deferred response")
    call = _reply_to(stack, status_id)
    assert call.path == f"/channels/{fake.channel_id}/messages"
    assert _is_png(call.files[0]["data"])
    path = f"/webhooks/{interaction['application_id']}/{interaction['token']}"
    assert not [c for c in fake.calls if c.path == path]


def test_image_over_the_upload_limit_goes_as_jpeg_preview_and_link(stack: DiscordStack) -> None:
    fake = stack.fake
    payload = fake.command_payload(prompt="a detailed map", seed=3)
    payload["attachment_size_limit"] = 1500
    interaction = fake.dispatch("INTERACTION_CREATE", payload)
    call = _followup_of(stack, interaction)
    assert call.files[0]["type"] == "image/jpeg" and len(call.files[0]["data"]) <= 1500
    assert call.files[0]["data"].startswith(b"\xff\xd8")
    assert "http://images.example.test/images/" in call.json["content"]


def test_buttons_work_after_the_bot_and_workers_restart(stack: DiscordStack) -> None:
    fake = stack.fake
    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload("a small robot --seed 21"))
    result = _reply_to(stack, message["id"])
    posted = next(m for m in fake.messages.values()
                  if str(m.get("message_reference", {}).get("message_id")) == message["id"]
                  and m["attachments"])

    stack.restart_all()

    for wanted in ("imagine:vary_subtle:", "imagine:reroll:"):
        button = next(i for i in _custom_ids(result.json) if i.startswith(wanted))
        interaction = fake.dispatch("INTERACTION_CREATE", fake.button_payload(button, posted))
        callback = wait_for(lambda i=interaction: fake.find(
            "POST", rf"^/interactions/{i['id']}/"), TIMEOUT, message="the callback")[0]
        assert callback.json["type"] == 5, stack.logs()
        call = _followup_of(stack, interaction)
        assert _is_png(call.files[0]["data"])
        title = "Vary (Subtle)" if "vary" in wanted else "Reroll"
        assert call.json["content"].startswith(f"<@{interaction['member']['user']['id']}> "
                                               f"{title}: **a small robot**")


def test_cancel_button_is_only_for_the_requester(stack: DiscordStack) -> None:
    fake = stack.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(prompt="a quiet pond"))
    call = _followup_of(stack, interaction)
    job_id = _custom_ids(call.json)[0].split(":")[2]
    stranger = fake.user("eve")
    stranger_member = fake.interaction_payload({}, stranger)["member"]
    stranger_member["permissions"] = "0"
    press = fake.button_payload(f"imagine:cancel:{job_id}:0", fake.messages[next(
        m for m in fake.messages if fake.messages[m].get("interaction_token")
        == interaction["token"])], stranger)
    press["member"] = stranger_member
    fake.dispatch("INTERACTION_CREATE", press)
    callback = wait_for(lambda: fake.find("POST", rf"^/interactions/{press['id']}/"), TIMEOUT,
                        message="the callback")[0]
    assert callback.json["data"]["flags"] & 64
    assert "Only the person who asked" in callback.json["data"]["content"]


def test_sync_registers_the_command_in_a_guild(stack: DiscordStack) -> None:
    env = {**stack.env, "DISCORD_GUILD_ID": stack.fake.guild_id}
    done = subprocess.run(imagine_command("discord", "--sync"), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert ("registered /imagine, /recall, /models, /help, /quota, /imagine-admin, /Recall "
            "in guild") in done.stdout
    commands = {c["name"]: c for c in stack.fake.commands[stack.fake.guild_id]}
    assert commands["recall"]["options"][0] == {**commands["recall"]["options"][0],
                                                "name": "image", "type": 11, "required": True}
    assert commands["Recall"]["type"] == 3  # the message context menu
    command = commands["imagine"]
    assert {"name": "image", "type": 11}.items() <= next(
        o for o in command["options"] if o["name"] == "image").items()
    options = {o["name"]: o for o in command["options"]}
    assert options["prompt"]["required"] is True
    assert {c["value"] for c in options["aspect_ratio"]["choices"]} >= {"16:9", "1:1"}
    assert options["model"]["autocomplete"] is True
    assert options["steps"]["max_value"] == 50
    assert "global" not in stack.fake.commands


def test_bot_process_never_imports_torch() -> None:
    code = ("import sys, bots.discord.main, bots.discord.delivery; "
            "print(sorted(m for m in ('torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=TIMEOUT)
    assert out.stdout.strip() == "[]", out.stderr


def test_requester_cancels_a_queued_job(stack: DiscordStack) -> None:
    fake = stack.fake
    stack.processes["worker-generate"].stop()  # nothing draws: the job stays in line
    author = fake.user("carol")
    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload("a waiting cat", author))
    status = _wait_posted(stack, lambda: next(
        (m for m in list(fake.messages.values())
         if str(m.get("message_reference", {}).get("message_id")) == message["id"]), None),
        "the status reply")
    (cancel,) = [i for i in _custom_ids(status) if i.startswith("imagine:cancel:")]
    press = fake.dispatch("INTERACTION_CREATE", fake.button_payload(cancel, status, author))
    callback = wait_for(lambda: fake.find("POST", rf"^/interactions/{press['id']}/"), TIMEOUT,
                        message="the callback")[0]
    assert callback.json["type"] == 7  # the status message itself is updated
    assert "Cancelled" in callback.json["data"]["content"]
    assert callback.json["data"]["components"] == []

    stack.start_worker("generate")  # the cancelled job is skipped, never drawn
    _wait_posted(stack, lambda: [c for c in fake.find("PATCH", rf"/messages/{status['id']}$")
                                 if "Cancelled" in c.json["content"]], "the final status edit")
    assert not [c for c in _files_posted(fake, "/channels/")
                if str(c.json.get("message_reference", {}).get("message_id")) == message["id"]]
