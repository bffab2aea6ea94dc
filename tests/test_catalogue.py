"""The model catalogue: IMAGINE_MODELS entries checked at start-up, each model's defaults in
the grammar (and left out again by format_request), and the listing every front end shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bots.catalogue import listing, listing_text
from bots.grammar import format_request, parse
from bots.limits import Limits
from settings import Settings, load_settings
from settings.errors import ConfigError

TURBO = {"source": "stabilityai/sd-turbo", "family": "sd21", "description": "fast drafts",
         "defaults": {"steps": 2, "cfg": 0}, "triggers": []}


pytestmark = pytest.mark.usefixtures("clean_env")


def limits_for(models: dict[str, object], **settings: object) -> Limits:
    return Limits.from_settings(Settings(_env_file=None, models=models, **settings))


@pytest.mark.parametrize(("value", "expected"), [
    ('{"turbo": {"source": "x/y", "family": "sd14"}}',
     'IMAGINE_MODELS["turbo"].family=\'sd14\' is invalid: Value error, family must be one of '
     "sd15, sd21, sdxl, sd3, flux"),
    ('{"turbo": {"defaults": {"steps": 2}}}',
     'models["turbo"] needs a source (a hub id, a folder or a checkpoint file); only '
     '"default" may leave it out'),
    ('{"turbo": {"source": "x/y", "defaults": {"steps": 0}}}',
     'IMAGINE_MODELS["turbo"].defaults.steps=0 is invalid: Input should be greater than or '
     "equal to 1"),
    ('{"turbo": {"source": "x/y", "defaults": {"size": 10000}}}',
     'IMAGINE_MODELS["turbo"].defaults.size=10000 is invalid: Input should be less than or '
     "equal to 4096"),
    ('{"turbo": {"source": "x/y", "defaults": {"stepz": 2}}}',
     'IMAGINE_MODELS["turbo"].defaults.stepz=2 is invalid: Extra inputs are not permitted'),
    ('{"my turbo": "x/y"}', "model name 'my turbo' must be 1-64 letters, digits"),
    ('{"turbo": "x/y",}', "IMAGINE_MODELS is not valid JSON: give a JSON object"),
])
def test_bad_entries_stop_start_up_naming_the_variable_and_the_rule(
        monkeypatch: pytest.MonkeyPatch, value: str, expected: str) -> None:
    monkeypatch.setenv("IMAGINE_MODELS", value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_the_default_entry_needs_no_source_and_describes_imagine_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_MODEL", "runwayml/sd15")
    monkeypatch.setenv("IMAGINE_MODELS", json.dumps(
        {"default": {"family": "SD15", "description": "the house model",
                     "defaults": {"sampler": "Euler_A"}}, "turbo": TURBO}))
    settings = load_settings()
    assert settings.model_sources == {"default": "runwayml/sd15",
                                      "turbo": "stabilityai/sd-turbo"}
    assert settings.catalogue["default"].family == "sd15"
    assert settings.catalogue["default"].defaults.sampler == "euler_a"


@pytest.mark.parametrize(("defaults", "expected"), [
    ({"sampler": "warp-drive"}, 'IMAGINE_MODELS["turbo"].defaults.sampler must be one of euler'),
    ({"steps": 80}, 'IMAGINE_MODELS["turbo"].defaults.steps must be at most IMAGINE_MAX_STEPS '
                    "(50)"),
])
def test_defaults_the_grammar_cannot_honour_are_refused_where_limits_are_built(
        defaults: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        limits_for({"turbo": {"source": "x/y", "defaults": defaults}})
    assert expected in str(error.value)


def test_a_model_s_defaults_fill_what_the_prompt_leaves_out() -> None:
    limits = limits_for({"turbo": TURBO, "xl": {
        "source": "x/xl", "defaults": {"size": 1024, "negative": "blurry", "sampler": "dpm++2m"}}},
        max_pixels=1024 * 1024)
    turbo = parse("a fox --model turbo", limits)
    assert (turbo.num_inference_steps, turbo.guidance_scale) == (2, 0.0)
    assert (turbo.width, turbo.height, turbo.sampler) == (512, 512, "euler")
    given = parse("a fox --model turbo --steps 4 --cfg 1.5", limits)
    assert (given.num_inference_steps, given.guidance_scale) == (4, 1.5)
    xl = parse("a fox --model xl", limits)
    assert (xl.width, xl.height, xl.negative_prompt, xl.sampler) == (1024, 1024, "blurry", "dpm++2m")
    assert (xl.num_inference_steps, xl.guidance_scale) == (25, 7.0)  # the server's
    wide = parse("a fox --model xl --ar 2:1 --no text", limits)
    assert abs(wide.width * wide.height - 1024 * 1024) < 0.02 * 1024 * 1024  # the model's area
    assert wide.width == 2 * wide.height and wide.negative_prompt == "text"
    plain = parse("a fox", limits)
    assert (plain.num_inference_steps, plain.width, plain.negative_prompt) == (25, 512, "")


def test_format_request_leaves_out_the_model_s_defaults_and_round_trips() -> None:
    limits = limits_for({"turbo": TURBO, "xl": {
        "source": "x/xl", "defaults": {"size": 768, "negative": "blurry"}}})
    texts = {"a fox --model turbo": "a fox --model turbo",
             "a fox --model turbo --steps 25 --cfg 7": "a fox --steps 25 --cfg 7 --model turbo",
             "a fox --model xl --ar 16:9": "a fox --size 1024x576 --model xl",
             "a fox --model xl --no blurry": "a fox --model xl",
             "a fox --model xl --no text": "a fox --model xl --no text",
             "a fox --steps 2": "a fox --steps 2"}
    for text, written in texts.items():
        request = parse(text, limits)
        assert format_request(request, limits) == written
        assert parse(written, limits) == request


def test_the_default_model_s_defaults_apply_only_when_configured() -> None:
    plain = Limits.from_settings(Settings(_env_file=None))
    catalogued = limits_for({"turbo": TURBO})  # entries, but none for `default`
    for text in ("a fox", "a fox --ar 16:9 --seed 3", "a fox --no text --steps 9"):
        assert parse(text, catalogued) == parse(text, plain)
        assert format_request(parse(text, catalogued), catalogued) == \
            format_request(parse(text, plain), plain)
    configured = limits_for({"default": {"defaults": {"steps": 6}}})
    request = parse("a fox", configured)
    assert request.num_inference_steps == 6 and request.model == "default"
    assert format_request(request, configured) == "a fox"
    assert configured.defaults_for("default").steps == 6
    assert configured.defaults_for("turbo").given() == {}


def _files(folder: Path, names: list[str], suffix: str = ".safetensors") -> Path:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}{suffix}").write_bytes(b"")
    return folder


def test_the_listing_names_models_loras_embeddings_and_controlnets(tmp_path: Path) -> None:
    loras = _files(tmp_path / "loras", ["paper-cut", "watercolor"])
    (loras / "watercolor.txt").write_text("wtrclr, soft edges\n")
    embeddings = _files(tmp_path / "embeddings", ["bad-hands"], ".pt")
    settings = Settings(_env_file=None, model="x/base", models={
        "default": {"description": "the house model"}, "turbo": TURBO},
        lora_dir=loras, embeddings_dir=embeddings,
        controlnets={"canny": "x/canny", "depth": {"sd15": "x/d15", "sdxl": "x/dxl"},
                     "scribble": "x/scribble"},
        annotators={"depth": "x/dpt"})
    assert listing(settings).as_json() == {
        "models": [
            {"name": "default", "family": None, "defaults": {},
             "description": "the house model", "triggers": []},
            {"name": "turbo", "family": "sd21", "defaults": {"steps": 2, "cfg": 0.0},
             "description": "fast drafts", "triggers": []}],
        "loras": [{"name": "paper-cut"},
                  {"name": "watercolor", "triggers": ["wtrclr", "soft edges"]}],
        "embeddings": [{"name": "bad-hands"}],
        "controlnets": [{"name": "canny", "families": [], "input": "photo"},
                        {"name": "depth", "families": ["sd15", "sdxl"], "input": "photo"},
                        {"name": "scribble", "families": [], "input": "map"}],
    }
    text = listing_text(listing(settings), limit=2000, bold="**")
    assert "• `turbo` (sd21): fast drafts · 2 steps, cfg 0" in text
    assert "• `watercolor`: triggers `wtrclr`, `soft edges`" in text
    assert "• `scribble`: your image is taken as the ready map" in text
    assert "**Embeddings**" in text and "`bad-hands`" in text


def test_an_empty_deployment_lists_the_default_model_and_nothing_else() -> None:
    text = listing_text(listing(Settings(_env_file=None)), limit=2000)
    assert text.splitlines() == [
        "*Models*: `--model NAME`", "• `default`",
        "*LoRAs*: `<lora:NAME:0.8>` in the prompt, or `--lora NAME:0.8`", "• none",
        "*Embeddings*: the name as a word of the prompt or of `--no`", "• none",
        "*ControlNets*: `--cn KIND:0.8` with an image", "• none"]


def test_a_long_listing_fits_the_chat_s_limit_and_says_how_many_are_left_out(
        tmp_path: Path) -> None:
    loras = _files(tmp_path / "loras", [f"style-number-{i:03d}" for i in range(300)])
    embeddings = _files(tmp_path / "embeddings", [f"token-{i:03d}" for i in range(100)])
    settings = Settings(_env_file=None, lora_dir=loras, embeddings_dir=embeddings,
                        controlnets={"canny": "x/canny"},
                        models={f"m{i}": {"source": f"x/{i}", "description": "d" * 150}
                                for i in range(30)})
    text = listing_text(listing(settings), limit=2000, bold="**")
    assert len(text) <= 2000
    lines = text.splitlines()
    assert "**ControlNets**: `--cn KIND:0.8` with an image" in lines
    assert lines[-1] == "• `canny`: a map is computed from your image"
    shown = [line for line in lines if line.startswith("• `style-number-")]
    assert f"… and {300 - len(shown)} more" in lines
    assert any(line.startswith("… and ") for line in lines[:lines.index("**LoRAs**: "
               "`<lora:NAME:0.8>` in the prompt, or `--lora NAME:0.8`")])
    slack = listing_text(listing(settings), limit=40_000)
    assert "… and" not in slack and slack.count("• `style-number-") == 300


def test_configured_text_is_escaped_for_slack() -> None:
    settings = Settings(_env_file=None, models={"turbo": {
        "source": "x/y", "description": "<!channel> fast & cheap",
        "defaults": {"negative": "<@U1>"}}})
    text = listing_text(listing(settings), limit=2000,
                        escape=lambda s: s.replace("&", "&amp;").replace("<", "&lt;")
                        .replace(">", "&gt;"))
    assert "<!channel>" not in text and "&lt;!channel&gt; fast &amp; cheap" in text
    assert "--no &lt;@U1&gt;" in text
