"""Settings: the documented variable names, and start-up errors that name the variable and the rule."""

from __future__ import annotations

import pytest

from settings import load_settings
from settings.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")


def test_reads_prefixed_and_platform_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGINE_MAX_STEPS", "30")
    monkeypatch.setenv("IMAGINE_MODELS", '{"turbo": "stabilityai/sd-turbo"}')
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("DISCORD_API_URL", "http://127.0.0.1:9/api/v10")
    settings = load_settings()
    assert settings.max_steps == 30
    assert settings.model_sources["turbo"] == "stabilityai/sd-turbo"
    assert settings.slack_bot_token and settings.slack_bot_token.get_secret_value() == "xoxb-1"
    assert settings.discord_api_url == "http://127.0.0.1:9/api/v10"


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / ".env").write_text("IMAGINE_WEB_PORT=9999\n")
    assert load_settings().web_port == 9999


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("IMAGINE_DEVICE", "gpu",
         "IMAGINE_DEVICE='gpu' is invalid: Value error, must be auto, cpu, mps, cuda or cuda:N"),
        ("IMAGINE_MAX_STEPS", "many", "IMAGINE_MAX_STEPS='many' is invalid"),
        ("IMAGINE_WEB_PORT", "70000", "less than or equal to 65535"),
        ("IMAGINE_REDIS_URL", "localhost:6379", "must start with redis://"),
        ("SLACK_API_URL", "slack.com/api", "SLACK_API_URL='slack.com/api' is invalid"),
    ],
)
def test_invalid_values_name_variable_value_and_rule(monkeypatch: pytest.MonkeyPatch, name: str,
                                                     value: str, expected: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert expected in str(error.value)
