"""The prompt grammar: every flag and error by example, then properties over any text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bots.errors import PromptError
from bots.grammar import USAGE, format_request, parse, request_from_fields
from bots.limits import Limits, fit_size
from generator.request import SAMPLERS, SEED_MAX, ImageRequest
from settings import Settings
from settings.errors import ConfigError

LIMITS = Limits(models=("default", "sdxl", "Turbo"))


def error_of(text: str, limits: Limits = LIMITS) -> str:
    with pytest.raises(PromptError) as caught:
        parse(text, limits)
    return caught.value.message


# --- Limits ---------------------------------------------------------------------------


def test_limits_defaults_match_settings() -> None:
    limits = Limits()
    assert limits.default_size == 512 and limits.size_multiple == 8
    assert limits.models == ("default",)
    assert limits.default_dims == (512, 512)


def test_limits_from_settings_lists_models_with_default_first() -> None:
    # No .env: a developer's own file must not change what the test sees.
    config = Settings(  # type: ignore[call-arg]  # pydantic-settings' init-only option
        _env_file=None, models={"sdxl": "x/sdxl"}, max_steps=30, default_steps=40
    )
    limits = Limits.from_settings(config)
    assert limits.models == ("default", "sdxl")
    assert limits.default_steps == 30  # never more than the cap
    assert limits.max_steps == 30


def test_limits_always_allow_default_model() -> None:
    assert Limits(models=("sdxl",)).models == ("default", "sdxl")


def test_limits_refuse_impossible_bounds() -> None:
    with pytest.raises(ConfigError, match="max_pixels"):
        Limits(size_multiple=128, max_pixels=64 * 64)
    with pytest.raises(ConfigError, match="default_sampler"):
        Limits(default_sampler="nope")


def test_settings_with_an_unknown_default_sampler_stop_the_front_ends() -> None:
    # Settings know nothing of the generator; the grammar checks the sampler when it is built.
    with pytest.raises(ConfigError, match=r"IMAGINE_DEFAULT_SAMPLER\) must be one of euler"):
        Limits.from_settings(Settings(default_sampler="fast"))


# --- Plain prompts ----------------------------------------------------------------------


def test_plain_prompt_gets_the_defaults() -> None:
    request = parse("  a red   fox\n in snow ", LIMITS)
    assert request == ImageRequest(
        prompt="a red fox in snow",
        width=512,
        height=512,
        num_inference_steps=LIMITS.default_steps,
        guidance_scale=LIMITS.default_cfg,
        sampler=LIMITS.default_sampler,
    )
    assert request.seed is None
    assert request.mode == "txt2img" and request.source_image is None


def test_text_before_and_after_flags_is_joined() -> None:
    request = parse("a fox --seed 3 in the snow --steps 10 at dusk", LIMITS)
    assert request.prompt == "a fox in the snow at dusk"
    assert (request.seed, request.num_inference_steps) == (3, 10)


def test_empty_prompt() -> None:
    for text in ("", "   ", "--seed 5", "--no text"):
        assert error_of(text).startswith("The prompt is empty: describe the image")


def test_prompt_too_long_says_limit_and_length() -> None:
    limits = Limits(max_prompt_length=20)
    assert parse("x" * 20, limits).prompt == "x" * 20
    message = error_of("x" * 21, limits)
    assert "21 characters" in message and "limit is 20" in message


def test_negative_prompt_too_long() -> None:
    assert "--no text is too long" in error_of("fox --no " + "y" * 30, Limits(max_prompt_length=20))


# --- Each flag --------------------------------------------------------------------------


def test_ar_keeps_the_default_area() -> None:
    request = parse("fox --ar 16:9", LIMITS)
    assert (request.width, request.height) == (680, 384)
    assert request.width % 8 == 0 and request.height % 8 == 0
    assert abs(request.width * request.height - 512 * 512) < 512 * 512 * 0.02
    assert (parse("fox --ar 1:1", LIMITS).width, parse("fox --ar 1:1", LIMITS).height) == (
        512,
        512,
    )
    portrait = parse("fox --ar 2:3", LIMITS)
    assert portrait.height > portrait.width


@pytest.mark.parametrize("value", ["1:4", "4:1", "1:1", "2:7"])
def test_ar_in_range(value: str) -> None:
    parse(f"fox --ar {value}", LIMITS)


@pytest.mark.parametrize("value", ["5:1", "1:5", "0:1", "1:0", "16x9", "wide", "-1:2", "1.5:1"])
def test_ar_out_of_range_says_the_range(value: str) -> None:
    assert error_of(f"fox --ar {value}") == (
        f"--ar must be a ratio W:H from 1:4 to 4:1, e.g. 16:9, not '{value}'."
    )


def test_size_explicit_and_square() -> None:
    request = parse("fox --size 768x512", LIMITS)
    assert (request.width, request.height) == (768, 512)
    assert (parse("fox --size 640", LIMITS).width, parse("fox --size 640", LIMITS).height) == (
        640,
        640,
    )
    assert parse("fox --size 640X480", LIMITS).height == 480
    assert parse("fox --size 640×480", LIMITS).height == 480


def test_size_snaps_to_the_multiple() -> None:
    request = parse("fox --size 773x3", LIMITS)
    assert (request.width, request.height) == (776, 8)  # nearest, and at least one multiple


def test_size_over_the_cap_shrinks_keeping_the_ratio() -> None:
    request = parse("fox --size 4000x2000", LIMITS)
    assert request.width * request.height <= LIMITS.max_pixels
    assert request.width % 8 == 0 and request.height % 8 == 0
    assert abs(request.width / request.height - 2) < 0.05


@pytest.mark.parametrize("value", ["0x512", "512x0", "0", "big", "512x", "20000x512", "-512"])
def test_size_bad_values(value: str) -> None:
    assert error_of(f"fox --size {value}").startswith("--size must be WxH or N for a square")


def test_ar_and_size_together() -> None:
    assert error_of("fox --ar 16:9 --size 512").startswith("Give either --ar or --size")


@pytest.mark.parametrize("value", [0, 42, SEED_MAX])
def test_seed(value: int) -> None:
    assert parse(f"fox --seed {value}", LIMITS).seed == value


@pytest.mark.parametrize("value", ["-1", str(SEED_MAX + 1), "4.5", "abc", "1e3", "٣"])
def test_seed_out_of_range(value: str) -> None:
    assert error_of(f"fox --seed {value}") == (
        f"--seed must be a whole number from 0 to 4294967295, not {value!r}."
    )


def test_steps() -> None:
    assert parse("fox --steps 1", LIMITS).num_inference_steps == 1
    assert parse("fox --steps 50", LIMITS).num_inference_steps == 50
    assert "from 1 to 50" in error_of("fox --steps 51")
    assert "from 1 to 50" in error_of("fox --steps 0")


@pytest.mark.parametrize(
    ("value", "expected"), [("0", 0.0), ("7.5", 7.5), ("30", 30.0), (".5", 0.5)]
)
def test_cfg(value: str, expected: float) -> None:
    assert parse(f"fox --cfg {value}", LIMITS).guidance_scale == expected


@pytest.mark.parametrize("value", ["30.1", "-1", "nan", "inf", "1_0", "seven"])
def test_cfg_out_of_range(value: str) -> None:
    assert error_of(f"fox --cfg {value}").startswith("--cfg must be a number from 0 to 30")


def test_no_takes_words_up_to_the_next_flag() -> None:
    request = parse("fox --no text, blurry hands --seed 1 in snow", LIMITS)
    assert request.negative_prompt == "text, blurry hands"
    assert request.prompt == "fox in snow"


def test_no_repeats_accumulate() -> None:
    request = parse("fox --no text, --no blur --seed 2 --no=people", LIMITS)
    assert request.negative_prompt == "text, blur, people"


def test_n() -> None:
    assert parse("fox --n 4", LIMITS).num_images == 4
    assert "from 1 to 4" in error_of("fox --n 5")
    assert "from 1 to 4" in error_of("fox --n 0")


def test_model() -> None:
    assert parse("fox --model sdxl", LIMITS).model == "sdxl"
    assert parse("fox --model turbo", LIMITS).model == "Turbo"  # case forgiven, name kept
    assert parse("fox --model default", LIMITS).model == "default"
    assert error_of("fox --model sd15") == (
        "--model must be one of: default, sdxl, Turbo, not 'sd15'."
    )


def test_sampler() -> None:
    assert parse("fox --sampler DPM++2M_Karras", LIMITS).sampler == "dpm++2m_karras"
    message = error_of("fox --sampler magic")
    assert all(name in message for name in SAMPLERS)


def test_equals_form_and_aliases() -> None:
    request = parse(
        "fox --aspect=3:2 --guidance=.5 --count 2 --negative blur --Seed=9 --SAMPLER=heun",
        LIMITS,
    )
    assert (request.width, request.height) == (624, 416)
    assert request.guidance_scale == 0.5 and request.num_images == 2
    assert request.negative_prompt == "blur" and request.seed == 9 and request.sampler == "heun"


def test_alias_and_name_together_are_a_duplicate() -> None:
    assert error_of("fox --ar 1:1 --aspect 2:1").startswith("--ar is given twice")


@pytest.mark.parametrize("dash", ["\u2014", "\u2013"])
def test_autocorrected_dashes_mark_known_flags(dash: str) -> None:
    request = parse(f"fox {dash}ar 16:9 {dash}seed=4 {dash}no text", LIMITS)
    assert (request.width, request.seed, request.negative_prompt) == (680, 4, "text")


def test_dash_before_other_words_is_prompt_text() -> None:
    assert (
        parse("fox \u2014wild \u2013 free \u2014arx", LIMITS).prompt
        == "fox \u2014wild \u2013 free \u2014arx"
    )


def test_double_dash_without_a_name_is_text() -> None:
    assert parse("fox -- 2 --5 ---", LIMITS).prompt == "fox -- 2 --5 ---"


# --- Errors -----------------------------------------------------------------------------


def test_unknown_flag_suggests_the_closest() -> None:
    assert error_of("fox --sed 5") == "Unknown flag --sed. Did you mean --seed?"
    assert error_of("fox --sampel euler") == "Unknown flag --sampel. Did you mean --sampler?"
    assert error_of("fox --ar:16:9") == "Unknown flag --ar:16:9. Did you mean --ar?"


def test_unknown_flag_without_a_close_one_lists_them() -> None:
    assert error_of("fox --help") == (
        "Unknown flag --help. Known: --ar, --size, --seed, --steps, --cfg, --no, --n, "
        "--model, --sampler, --strength, --iw, --lora, --cn, --raw, --enhance."
    )


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("fox --seed", "--seed"),
        ("fox --seed --steps 5", "--seed"),
        ("fox --seed=", "--seed"),
        ("fox \u2014seed", "--seed"),
        ("fox --no --seed 1", "--no"),
        ("fox --aspect", "--aspect"),
    ],
)
def test_missing_value(text: str, flag: str) -> None:
    assert error_of(text).startswith(f"{flag} needs a value: ")


def test_missing_value_message() -> None:
    assert error_of("fox --seed") == ("--seed needs a value: a whole number from 0 to 4294967295.")


def test_duplicate_flag() -> None:
    assert error_of("fox --seed 1 --seed 2") == (
        "--seed is given twice: give each flag once (only --no and --lora repeat)."
    )


def test_long_bad_values_are_cut_short() -> None:
    message = error_of("fox --seed " + "9" * 5000)
    assert len(message) < 150 and "…" in message


# --- format_request ---------------------------------------------------------------------


def test_format_leaves_defaults_out_and_keeps_the_seed() -> None:
    assert format_request(parse("a fox --steps 25 --cfg 7", LIMITS), LIMITS) == "a fox"
    assert format_request(parse("a fox --seed 0", LIMITS), LIMITS) == "a fox --seed 0"


def test_format_uses_canonical_names_and_puts_no_last() -> None:
    text = "--negative text --aspect 16:9 a fox --count 2 --guidance 4 --model SDXL --seed 1"
    formatted = format_request(parse(text, LIMITS), LIMITS)
    assert formatted == "a fox --size 680x384 --seed 1 --cfg 4 --n 2 --model sdxl --no text"
    assert parse(formatted, LIMITS) == parse(text, LIMITS)


def test_usage_is_short_and_names_every_flag() -> None:
    assert 3 <= len(USAGE.splitlines()) <= 5
    for flag in ("--ar", "--size", "--seed", "--steps", "--cfg", "--no", "--n", "--model"):
        assert flag in USAGE
    assert "--sampler" in USAGE


# --- request_from_fields ----------------------------------------------------------------


def test_fields_give_the_same_request_as_text() -> None:
    fields: dict[str, str | int | float | None] = {
        "prompt": "a fox",
        "seed": "7",
        "ar": "16:9",
        "steps": 10,
        "cfg": 7.5,
        "no": "text",
    }
    expected = parse("a fox --seed 7 --ar 16:9 --steps 10 --cfg 7.5 --no text", LIMITS)
    assert request_from_fields(fields, LIMITS) == expected


def test_fields_empty_values_are_unset() -> None:
    request = request_from_fields({"prompt": "fox", "seed": None, "ar": "", "sampler": " "}, LIMITS)
    assert request == parse("fox", LIMITS)


def test_fields_accept_integral_floats_and_aliases() -> None:
    request = request_from_fields({"prompt": "fox", "n": 2.0, "guidance": 3}, LIMITS)
    assert (request.num_images, request.guidance_scale) == (2, 3.0)


def test_fields_prompt_may_carry_flags_but_not_twice() -> None:
    assert request_from_fields({"prompt": "fox --seed 3"}, LIMITS).seed == 3
    with pytest.raises(PromptError, match="--seed is given twice"):
        request_from_fields({"prompt": "fox --seed 3", "seed": 4}, LIMITS)


def test_fields_errors_match_the_flag_errors() -> None:
    with pytest.raises(PromptError) as caught:
        request_from_fields({"prompt": "fox", "seed": -1}, LIMITS)
    assert caught.value.message == error_of("fox --seed -1")
    with pytest.raises(PromptError, match="The prompt is empty"):
        request_from_fields({"seed": 1}, LIMITS)
    with pytest.raises(PromptError, match="Give either --ar or --size"):
        request_from_fields({"prompt": "fox", "ar": "1:2", "size": 512}, LIMITS)


def test_fields_unknown_name() -> None:
    with pytest.raises(PromptError, match=r"Unknown field 'sede'\. Did you mean seed\?"):
        request_from_fields({"prompt": "fox", "sede": 1}, LIMITS)
    with pytest.raises(PromptError, match="Known: prompt, ar, size"):
        request_from_fields({"prompt": "fox", "sig": "abc"}, LIMITS)


def test_fields_no_cannot_hide_flags() -> None:
    with pytest.raises(PromptError, match="cannot contain flags"):
        request_from_fields({"prompt": "fox", "no": "text --seed 5"}, LIMITS)


# --- Sizes ------------------------------------------------------------------------------


@given(
    st.floats(1, 20000),
    st.floats(1, 20000),
    st.sampled_from([Limits(), Limits(size_multiple=64, max_pixels=300_000)]),
)
def test_fit_size_is_idempotent_and_capped(width: float, height: float, limits: Limits) -> None:
    w, h = fit_size(width, height, limits)
    assert w % limits.size_multiple == 0 and h % limits.size_multiple == 0
    assert w >= limits.size_multiple and h >= limits.size_multiple
    assert w * h <= limits.max_pixels
    assert fit_size(w, h, limits) == (w, h)


# --- Properties -------------------------------------------------------------------------

LIMIT_VARIANTS = [
    LIMITS,
    Limits(default_size=500, size_multiple=64, max_pixels=400_000, default_cfg=4.5),
    Limits(default_steps=4, max_steps=8, default_sampler="lcm", max_images=1),
]

WORDS = ["a", "red", "fox", "snow", ",", "16:9", "7", "x", "—", "–", "--", "-", "=", "é", "🦊"]
VALUES = [
    "16:9",
    "1:1",
    "2:3",
    "5:1",
    "0:0",
    "512",
    "768x512",
    "9x9",
    "0",
    "1",
    "42",
    "-1",
    str(SEED_MAX),
    str(SEED_MAX + 1),
    "7.5",
    ".5",
    "30",
    "31",
    "nan",
    "1e-05",
    "sdxl",
    "turbo",
    "euler_a",
    "lcm",
    "nope",
    "text,",
    "",
]
NAMES = [
    "ar",
    "size",
    "seed",
    "steps",
    "cfg",
    "no",
    "n",
    "model",
    "sampler",
    "aspect",
    "negative",
    "count",
    "guidance",
    "sed",
    "AR",
    "help",
    "s",
]


# Mostly values that fit the flag, so the round-trip property sees many flags that parse.
VALID = {
    "ar": ["16:9", "2:3", "1:1", "4:1"],
    "size": ["768x512", "640", "9x9", "4000x100"],
    "seed": ["0", "42", str(SEED_MAX)],
    "steps": ["1", "8", "25"],
    "cfg": ["0", "4.5", "7", ".5", "1e-05", "30"],
    "no": ["text", "text, blur", "a b c,"],
    "n": ["1"],
    "model": ["default", "sdxl", "turbo"],
    "sampler": ["heun", "LCM", "euler"],
}
CANONICAL = {"aspect": "ar", "negative": "no", "count": "n", "guidance": "cfg", "AR": "ar"}


@st.composite
def flag_tokens(draw: st.DrawFn) -> str:
    dash = draw(st.sampled_from(["--", "--", "\u2014", "\u2013"]))
    name = draw(st.sampled_from(NAMES))
    valid = VALID.get(CANONICAL.get(name, name))
    if valid and draw(st.integers(0, 9)) < 8:
        value = draw(st.sampled_from(valid))
    else:
        value = draw(st.sampled_from(VALUES))
    if draw(st.booleans()):
        return f"{dash}{name}={value}"
    return f"{dash}{name} {value}".rstrip()


prompt_texts = st.lists(
    st.one_of(st.sampled_from(WORDS), flag_tokens(), st.text(max_size=4)), max_size=12
).flatmap(
    lambda parts: st.lists(
        st.sampled_from([" ", "  ", "\n", "\t", "\u3000"]),
        min_size=len(parts),
        max_size=len(parts),
    ).map(lambda gaps: "".join(gap + part for gap, part in zip(gaps, parts, strict=True)))
)
any_text = st.one_of(st.text(), prompt_texts)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(any_text, st.sampled_from(LIMIT_VARIANTS))
def test_any_text_parses_or_raises_prompt_error(text: str, limits: Limits) -> None:
    try:
        parse(text, limits)
    except PromptError as error:
        assert error.message and "\n" not in error.message


@FAST
@given(any_text, st.sampled_from(LIMIT_VARIANTS))
def test_format_round_trips(text: str, limits: Limits) -> None:
    try:
        request = parse(text, limits)
    except PromptError:
        return
    assert parse(format_request(request, limits), limits) == request


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["prompt", "seed", "ar", "size", "steps", "cfg", "no", "n", "model"]),
        st.one_of(st.none(), st.sampled_from(VALUES), st.integers(), st.floats(), st.text()),
    ),
    st.sampled_from(LIMIT_VARIANTS),
)
def test_fields_parse_or_raise_and_round_trip(
    fields: dict[str, str | int | float | None], limits: Limits
) -> None:
    try:
        request = request_from_fields(fields, limits)
    except PromptError as error:
        assert "\n" not in error.message
        return
    assert parse(format_request(request, limits), limits) == request
