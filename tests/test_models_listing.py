"""The model listing and the catalogue's defaults through every front end: GET
/api/v1/models (bearer token enforced), a REST job and a prompt URL for a model with
defaults, Slack's `/imagine models` over signed HTTP, Discord's `/models` and its
autocomplete against the fake Discord (a real `imagine discord` process)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from settings import Settings
from tasks.core.connection import redis_client
from tasks.core.queue import JobQueue
from tasks.worker.celery_app import create_celery
from tests.discord_support import DiscordStack, running_discord_stack
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_api import BOT_TOKEN, SIGNING_SECRET, FakeSlack, SlackSender
from tests.fixtures_redis import wait_for

TOKEN = "listing-token"
TURBO = {"source": "x/turbo", "family": "sd21", "description": "fast drafts",
         "defaults": {"steps": 2, "cfg": 0}, "triggers": ["trb"]}
DISCORD_LIMIT = 2000


def _folder(path: Path, names: list[str], suffix: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (path / f"{name}{suffix}").write_bytes(b"")
    return path


@pytest.fixture
def catalogue(tmp_path: Path) -> dict[str, Any]:
    """Settings overrides: a catalogue with a turbo model and a folder of each kind."""
    return {"models": {"default": {"description": "the house model"}, "turbo": TURBO},
            "lora_dir": _folder(tmp_path / "loras", ["paper-cut", "watercolor"],
                                ".safetensors"),
            "embeddings_dir": _folder(tmp_path / "embeddings", ["bad-hands"], ".pt"),
            "controlnets": {"canny": "x/canny", "depth": {"sd15": "x/depth"}}}


def _job(settings: Settings, job_id: str) -> Any:
    queue = JobQueue(settings, redis_client(settings), create_celery(settings))
    return queue.jobs.get(job_id)


def test_the_api_lists_models_loras_embeddings_and_controlnets_behind_the_token(
        serve_app: Callable[..., str], catalogue: dict[str, Any]) -> None:
    base = serve_app(api_token=TOKEN, **catalogue)
    refused = requests.get(f"{base}/api/v1/models", timeout=30)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="imagine"'
    assert "IMAGINE_API_TOKEN" in refused.json()["error"]
    wrong = requests.get(f"{base}/api/v1/models", headers={"Authorization": "Bearer nope"},
                         timeout=30)
    assert wrong.status_code == 401
    answer = requests.get(f"{base}/api/v1/models",
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    assert answer.json() == {
        "models": [{"name": "default", "family": None, "defaults": {},
                    "description": "the house model", "triggers": []},
                   {"name": "turbo", "family": "sd21", "defaults": {"steps": 2, "cfg": 0.0},
                    "description": "fast drafts", "triggers": ["trb"]}],
        "loras": [{"name": "paper-cut"}, {"name": "watercolor"}],
        "embeddings": [{"name": "bad-hands"}],
        "controlnets": [{"name": "canny", "families": [], "input": "photo"},
                        {"name": "depth", "families": ["sd15"], "input": "map"}]}
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=30).json()
    assert document["paths"]["/api/v1/models"]["get"]["operationId"] == "listModels"


def test_a_file_dropped_into_the_lora_folder_is_listed_at_once(
        serve_app: Callable[..., str], catalogue: dict[str, Any]) -> None:
    base = serve_app(**catalogue)  # no token: open, like the rest of the API
    (catalogue["lora_dir"] / "neon.safetensors").write_bytes(b"")
    (catalogue["lora_dir"] / "neon.txt").write_text("neon glow, night\n")
    loras = requests.get(f"{base}/api/v1/models", timeout=30).json()["loras"]
    assert {"name": "neon", "triggers": ["neon glow", "night"]} in loras


def test_rest_jobs_and_prompt_urls_get_the_model_s_defaults(
        serve_app: Callable[..., str], catalogue: dict[str, Any], settings: Settings) -> None:
    base = serve_app(max_jobs_per_user=10, **catalogue)
    created = requests.post(f"{base}/api/v1/jobs", json={"prompt": "a fox", "model": "turbo"},
                            timeout=30)
    assert created.status_code == 202, created.text
    # Shown without its defaults: the seed the queue chose and the model, nothing else.
    assert re.fullmatch(r"a fox --seed [0-9]+ --model turbo", created.json()["prompt"])
    request = _job(settings, created.json()["id"]).request
    assert (request.num_inference_steps, request.guidance_scale) == (2, 0.0)
    given = requests.post(f"{base}/api/v1/jobs", timeout=30,
                          json={"prompt": "a fox --model turbo --steps 4", "cfg": 1.5}).json()
    request = _job(settings, given["id"]).request
    assert (request.num_inference_steps, request.guidance_scale) == (4, 1.5)

    image = requests.get(base, params={"prompt": "a hare --model turbo", "wait": "0"},
                         timeout=30)
    assert image.status_code == 200 and "X-Imagine-Job" in image.headers
    request = _job(settings, image.headers["X-Imagine-Job"]).request
    assert (request.model, request.num_inference_steps, request.guidance_scale) == \
        ("turbo", 2, 0.0)
    plain = requests.get(base, params={"prompt": "a hare", "wait": "0"}, timeout=30)
    request = _job(settings, plain.headers["X-Imagine-Job"]).request
    assert (request.num_inference_steps, request.guidance_scale) == \
        (settings.default_steps, settings.default_cfg)


def test_slack_imagine_models_answers_the_asker_alone_and_queues_nothing(
        serve_app: Callable[..., str], slack: FakeSlack, catalogue: dict[str, Any]) -> None:
    catalogue["models"]["turbo"] = {**TURBO, "description": "fast <!channel> drafts"}
    base = serve_app(slack_signing_secret=SIGNING_SECRET, slack_bot_token=BOT_TOKEN,
                     slack_api_url=slack.api_url, **catalogue)
    sender = SlackSender(base, slack)
    answer = sender.command("models")
    assert answer.status_code == 200
    body = answer.json()
    assert body["response_type"] == "ephemeral"
    text = body["text"]
    assert text.startswith("*Models*: `--model NAME`\n• `default`: the house model\n")
    assert "• `turbo` (sd21): fast &lt;!channel&gt; drafts · 2 steps, cfg 0 · triggers: `trb`" \
        in text
    assert "• `watercolor`" in text and "• `bad-hands`" in text
    assert "• `depth` (sd15): your image is taken as the ready map" in text
    assert sender.command("  Models ").json()["text"] == text
    # `/imagine help` and a bare `/imagine`: the help, for the asker alone, nothing drawn.
    helped = sender.command("help").json()
    assert helped["response_type"] == "ephemeral"
    assert "*Buttons under a result*" in helped["text"] and "--ar W:H" in helped["text"]
    assert "`/imagine models` lists the models" in helped["text"]
    assert sender.command(" ").json()["text"] == helped["text"]
    assert sender.command("  HELP ").json()["text"] == helped["text"]
    assert sender.command("models", secret="wrong-secret").status_code == 401
    assert not slack.of("chat.postMessage", ok=None)  # a listing, not a prompt


@pytest.fixture(scope="module")
def discord_bot(redis_server: Any, tiny_model_dir: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiscordStack]:
    """`imagine discord` alone (no worker: nothing here draws), with 300 LoRAs."""
    folder = tmp_path_factory.mktemp("models-listing")
    loras = _folder(folder / "loras", [f"style-{i:03d}" for i in range(300)], ".safetensors")
    with running_discord_stack(
            redis_server, folder, tiny_model_dir, FakeDiscord().start(), workers=False,
            IMAGINE_DISCORD_READY_TIMEOUT="0.2", IMAGINE_LORA_DIR=str(loras),
            IMAGINE_MODELS=json.dumps({"turbo": TURBO, "xl": "x/xl"})) as stack:
        yield stack


def _callback(stack: DiscordStack, interaction: dict[str, Any]) -> dict[str, Any]:
    call = wait_for(lambda: stack.fake.find("POST", rf"^/interactions/{interaction['id']}/"),
                    60, message=f"the callback\n{stack.logs()}")[0]
    return dict(call.json)


def _autocomplete(stack: DiscordStack, option: str, typed: str) -> list[dict[str, Any]]:
    fake = stack.fake
    payload = fake.command_payload(prompt="a fox", **{option: typed})
    for given in payload["data"]["options"]:
        given["focused"] = given["name"] == option
    interaction = fake.dispatch("INTERACTION_CREATE", fake.interaction_payload(
        payload["data"], kind=4))
    answer = _callback(stack, interaction)
    assert answer["type"] == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    return list(answer["data"]["choices"])


def test_discord_models_is_ephemeral_and_fits_one_message(discord_bot: DiscordStack) -> None:
    fake = discord_bot.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(command="models"))
    answer = _callback(discord_bot, interaction)
    assert answer["type"] == 4 and answer["data"]["flags"] & 64
    text = answer["data"]["content"]
    assert len(text) <= DISCORD_LIMIT
    assert text.startswith("**Models**: `--model NAME`\n• `default`\n"
                           "• `turbo` (sd21): fast drafts · 2 steps, cfg 0 · triggers: `trb`\n"
                           "• `xl`\n**LoRAs**")
    shown = text.count("• `style-")
    assert 10 < shown < 300 and f"… and {300 - shown} more" in text
    assert text.endswith("**ControlNets**: `--cn KIND:0.8` with an image\n• none")


def test_discord_help_is_ephemeral_and_explains_flags_and_buttons(
        discord_bot: DiscordStack) -> None:
    fake = discord_bot.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(command="help"))
    answer = _callback(discord_bot, interaction)
    assert answer["type"] == 4 and answer["data"]["flags"] & 64
    text = answer["data"]["content"]
    assert len(text) <= DISCORD_LIMIT
    assert text.startswith("**/imagine PROMPT [flags]** draws PROMPT")
    assert "**Buttons under a result**" in text and "• Vary (Region):" in text
    assert "`/models` lists the models" in text and "`/recall`" in text


def test_discord_autocompletes_models_with_descriptions_and_lora_names(
        discord_bot: DiscordStack) -> None:
    assert _autocomplete(discord_bot, "model", "") == [
        {"name": "default", "value": "default"},
        {"name": "turbo — fast drafts · sd21", "value": "turbo"},
        {"name": "xl", "value": "xl"}]
    assert _autocomplete(discord_bot, "model", "draft") == [
        {"name": "turbo — fast drafts · sd21", "value": "turbo"}]
    assert [c["value"] for c in _autocomplete(discord_bot, "lora", "style-29")] == [
        f"style-29{i}" for i in range(10)]
    after = _autocomplete(discord_bot, "lora", "style-001:0.8,style-12")
    assert len(after) == 10 and after[0] == {"name": "style-001:0.8,style-120",
                                             "value": "style-001:0.8,style-120"}
    assert len(_autocomplete(discord_bot, "lora", "")) == 25  # Discord's most


def test_discord_imagine_s_lora_option_is_read_by_the_grammar(
        discord_bot: DiscordStack) -> None:
    fake = discord_bot.fake
    interaction = fake.dispatch("INTERACTION_CREATE", fake.command_payload(
        prompt="a fox", lora="styel-001:0.8"))
    answer = _callback(discord_bot, interaction)
    assert answer["type"] == 4 and answer["data"]["flags"] & 64
    assert "styel-001" in answer["data"]["content"] and "style-001" in answer["data"]["content"]
