"""Images in, images out on Discord, end to end: a real `imagine discord` against the fake
Discord (attachments served by its CDN path), real generate and deliver workers, real Redis,
the tiny model at 64 px with one step, and the web app for the Vary (Region) editor.

One stack serves the module; one /imagine result (`drawn`) is the parent of every button
pressed and the PNG recalled.
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

from bots.discord.formatting import custom_id, parse_custom_id
from bots.discord.uploads import recall_text
from bots.web.app import create_app
from tasks.core.connection import redis_client
from tasks.core.jobs import JobStore
from tasks.core.storage import Storage
from tasks.local.embedded_redis import free_port
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import Call, FakeDiscord
from tests.fixtures_redis import wait_for
from tests.image_support import settings_from_env, solid_png

TIMEOUT = 180.0


@pytest.fixture(scope="module")
def stack(redis_server: Any, tiny_model_dir: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordStack]:
    port = free_port()
    with running_discord_stack(
            redis_server, tmp_path_factory.mktemp("discord-images"), tiny_model_dir,
            FakeDiscord().start(), IMAGINE_PUBLIC_URL=f"http://127.0.0.1:{port}",
            IMAGINE_DISCORD_READY_TIMEOUT="0.2", IMAGINE_MAX_JOBS_PER_USER="20",
            IMAGINE_DEFAULT_STEPS="1", IMAGINE_MAX_UPLOAD_BYTES=str(64 * 1024)) as stack:
        # The web app (the mask editor's submit) in this process, on the public URL's port.
        web = make_server("127.0.0.1", port, create_app(settings_from_env(stack.env)),
                          threaded=True)
        threading.Thread(target=web.serve_forever, name="discord-images-web",
                         daemon=True).start()
        try:
            yield stack
        finally:
            web.shutdown()
            web.server_close()




# --- reading what the bot and the deliverer posted ---------------------------------------


def _wait(stack: DiscordStack, check: Any, what: str) -> Any:
    try:
        return wait_for(check, TIMEOUT, interval=0.1, message=what)
    except AssertionError:
        raise AssertionError(f"{what} never came\n{stack.logs()}") from None


def _callback(stack: DiscordStack, interaction: dict[str, Any]) -> Call:
    return _wait(stack, lambda: stack.fake.find(
        "POST", rf"^/interactions/{interaction['id']}/"), "the interaction's callback")[0]


def _followup(stack: DiscordStack, interaction: dict[str, Any], files: bool = True) -> Call:
    """The (first) followup on an interaction's webhook, with images or without."""
    path = f"/webhooks/{interaction['application_id']}/{interaction['token']}"
    try:
        return wait_for(lambda: [c for c in stack.fake.find("POST", status=200)
                                 if c.path.startswith(path) and bool(c.files) == files],
                        TIMEOUT, interval=0.1)[0]
    except AssertionError:
        said = [c.json for c in stack.fake.find(path=f"^{path}|^/interactions/"
                                                f"{interaction['id']}/") if c.json]
        raise AssertionError(f"no followup {'with' if files else 'without'} images; the "
                             f"interaction got {said}\n{stack.logs()}") from None


def _reply(stack: DiscordStack, message_id: str, files: bool = True) -> Call:
    """The accepted channel post that replies to message `message_id`."""
    return _wait(stack, lambda: [
        c for c in stack.fake.find("POST", r"^/channels/\d+/messages$", status=200)
        if str((c.json.get("message_reference") or {}).get("message_id")) == message_id
        and bool(c.files) == files], f"a reply to {message_id}")[0]


def _message_of(stack: DiscordStack, call: Call) -> dict[str, Any]:
    """The message the fake made for a post (found by its first button or its content)."""
    ids = _custom_ids(call.json)
    return next(m for m in list(stack.fake.messages.values())
                if (ids and _custom_ids(m) == ids) or (not ids and m["content"]
                                                       == call.json["content"]))


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [b["custom_id"] for row in message.get("components", []) for b in row["components"]]


def _size(call: Call) -> tuple[int, int]:
    return Image.open(io.BytesIO(call.files[0]["data"])).size




@dataclass
class Drawn:
    """The one /imagine result every button and recall starts from."""

    interaction: dict[str, Any]
    call: Call
    message: dict[str, Any]

    @property
    def png(self) -> bytes:
        return bytes(self.call.files[0]["data"])

    def button(self, name: str) -> str:
        return next(i for i in _custom_ids(self.message) if i.startswith(f"imagine:{name}:"))


@pytest.fixture(scope="module")
def drawn(stack: DiscordStack) -> Drawn:
    interaction = stack.fake.dispatch("INTERACTION_CREATE", stack.fake.command_payload(
        prompt="a lighthouse at dusk", seed=3))
    call = _followup(stack, interaction)
    return Drawn(interaction, call, _message_of(stack, call))


# --- the buttons under one image -----------------------------------------------------------

PRESSES = {  # button name → (title, size of the result from a 64×64 image)
    "upscale": ("Upscale (Subtle)", (128, 128)),
    "upscale_creative": ("Upscale (Creative)", (128, 128)),
    "vary_strong": ("Vary (Strong)", (64, 64)),
    "zoom_out_2x": ("Zoom Out 2x", (128, 128)),
    "zoom_out_1_5x": ("Zoom Out 1.5x", (96, 96)),
    "pan_left": ("Pan Left", (96, 64)),
    "reroll": ("Reroll", (64, 64)),
}


def test_every_button_under_one_image_makes_its_image(stack: DiscordStack, drawn: Drawn
                                                      ) -> None:
    fake = stack.fake
    labels = [[b.get("label") or b["emoji"]["name"] for b in row["components"]]
              for row in drawn.message["components"]]
    assert labels == [["Upscale (Subtle)", "Upscale (Creative)"],
                      ["Vary (Subtle)", "Vary (Strong)", "Vary (Region)"],
                      ["Zoom Out 2x", "Zoom Out 1.5x"], ["⬅️", "➡️", "⬆️", "⬇️"],
                      ["Reroll", "Report", "Delete"]]
    presser = fake.user("dora")
    pressed = {name: fake.dispatch("INTERACTION_CREATE", fake.button_payload(
        drawn.button(name), drawn.message, presser)) for name in PRESSES}
    # A button posted by an earlier release (`imagine:vary:…`) is Vary (Subtle) now.
    # (discord.py looks the pressed id up among the message's components: an old message.)
    legacy = drawn.button("vary_subtle").replace(":vary_subtle:", ":vary:")
    old_message = json.loads(json.dumps(drawn.message).replace(drawn.button("vary_subtle"),
                                                               legacy))
    pressed["vary"] = fake.dispatch("INTERACTION_CREATE", fake.button_payload(
        legacy, old_message, presser))
    for name, (title, size) in {**PRESSES, "vary": ("Vary (Subtle)", (64, 64))}.items():
        call = _followup(stack, pressed[name])
        assert call.json["content"].startswith(
            f"<@{presser['id']}> {title}: **a lighthouse at dusk**"), call.json["content"]
        assert _size(call) == size, name
        assert f"{size[0]}×{size[1]}" in call.json["content"]
    upscaled = _followup(stack, pressed["upscale"]).json["content"]
    assert "Lanczos" in upscaled  # the worker's note: no upscaler configured here


def test_vary_region_links_the_presser_and_the_redraw_lands_in_the_channel(
        stack: DiscordStack, drawn: Drawn) -> None:
    fake = stack.fake
    presser = fake.user("erin")
    press = fake.dispatch("INTERACTION_CREATE", fake.button_payload(
        drawn.button("vary_region"), drawn.message, presser))
    callback = _callback(stack, press)
    assert callback.json["type"] == 4 and callback.json["data"]["flags"] & 64  # ephemeral
    text = callback.json["data"]["content"]
    assert "works once" in text and "15 minutes" in text
    link = re.search(r"<(http://127\.0\.0\.1:\d+/region/[\w-]+)>", text)
    assert link, text

    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    out = io.BytesIO()
    mask.save(out, "PNG")
    answer = requests.post(link[1], timeout=30, json={
        "mask": "data:image/png;base64," + base64.b64encode(out.getvalue()).decode(),
        "prompt": "a lighthouse at dusk, a red door"})
    assert answer.status_code == 202, answer.text

    call = _reply(stack, drawn.message["id"])  # a reply to the image, in its channel
    assert call.path == f"/channels/{fake.channel_id}/messages"
    assert call.json["content"].startswith(f"<@{presser['id']}> Vary (Region): "), call.json
    assert _size(call) == (64, 64)


# --- image prompts -------------------------------------------------------------------------


def _job(stack: DiscordStack, call: Call) -> Any:
    job_id = _custom_ids(call.json)[0].split(":")[2]
    return JobStore(redis_client(settings_from_env(stack.env)), 3600).get(job_id)


def test_an_attached_image_becomes_an_image_prompt(stack: DiscordStack) -> None:
    fake = stack.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a watercolour harbour", image=fake.attachment(solid_png(), "harbour.png")))
    call = _followup(stack, interaction)
    job = _job(stack, call)
    assert job.request.mode == "img2img" and job.request.source_image
    assert Storage(Path(stack.env["IMAGINE_STORAGE_DIR"])).exists(job.request.source_image)

    message = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        "the same in winter", attachments=[fake.attachment(solid_png("navy"), "winter.png")]))
    reply = _reply(stack, message["id"])
    assert _job(stack, reply).request.mode == "img2img"


def test_a_bad_attachment_gets_one_line(stack: DiscordStack) -> None:
    fake = stack.fake
    big = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a fox", image=fake.attachment(b"x", "huge.png", size=65 * 1024)))
    data = _callback(stack, big).json["data"]
    assert data["flags"] & 64
    assert data["content"] == ("⚠️ huge.png is 65 KB: this bot takes images up to 64 KB; "
                               "send a smaller one.")

    text = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a fox", image=fake.attachment(b"hello", "notes.txt", "text/plain")))
    assert _callback(stack, text).json == {"type": 5}
    told = _followup(stack, text, files=False).json
    assert told["flags"] & 64 and told["content"].startswith("⚠️ ")
    assert "\n" not in told["content"] and "Usage" not in told["content"]


# --- recall --------------------------------------------------------------------------------


def test_recall_shows_the_parameters_and_runs_them_again(stack: DiscordStack,
                                                         drawn: Drawn) -> None:
    fake = stack.fake
    recall = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        command="recall", image=fake.attachment(drawn.png, "lighthouse.png")))
    shown = _wait(stack, lambda: [c for c in fake.find(
        "PATCH", rf"/webhooks/\d+/{recall['token']}/messages/@original") if c.json.get(
        "components")], "the recalled parameters")[0].json
    assert "`a lighthouse at dusk" in shown["content"] and "--seed 3" in shown["content"]
    (again,) = _custom_ids(shown)
    assert again.startswith("imagine:run_again:")

    runner = fake.user("frank")
    press = fake.dispatch("INTERACTION_CREATE", fake.button_payload(
        again, _message_of(stack, Call("PATCH", "", {}, {}, shown)), runner))
    call = _followup(stack, press)
    assert call.json["content"].startswith(f"<@{runner['id']}> **a lighthouse at dusk**")
    assert "seed 3" in call.json["content"]

    # The message menu on the posted image, and a mention with the PNG alone, say the same.
    menu = fake.dispatch("INTERACTION_CREATE", fake.message_command_payload(
        "Recall", drawn.message))
    assert _wait(stack, lambda: [c for c in fake.find(
        "PATCH", rf"/webhooks/\d+/{menu['token']}/messages/@original")
        if "--seed 3" in c.json.get("content", "")], "the menu's recall")
    mention = fake.dispatch("MESSAGE_CREATE", fake.message_payload(
        "", attachments=[fake.attachment(drawn.png, "again.png")]))
    assert "--seed 3" in _reply(stack, mention["id"], files=False).json["content"]


def test_recall_of_a_png_without_parameters_says_so(stack: DiscordStack) -> None:
    fake = stack.fake
    recall = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        command="recall", image=fake.attachment(solid_png(), "plain.png")))
    told = _followup(stack, recall, files=False).json
    assert told["flags"] & 64 and told["content"].startswith("⚠️ ")
    assert "\n" not in told["content"]


def test_recall_text_is_one_code_span_within_discords_limit() -> None:
    text = recall_text("a*b_[x].png", "a `fox` " + "x " * 1500, ("Seed missing: a new one.",))
    assert len(text) <= 2000 and text.count("`") == 2
    assert text.startswith("🔎 **a\\*b\\_\\[x\\].png** was drawn with:\n`a ˋfoxˋ x")
    assert text.endswith("…`\nSeed missing: a new one.")
    recall_id = "ab" * 12
    assert parse_custom_id(custom_id("run_again", recall_id)) == ("run_again", recall_id, 0)
