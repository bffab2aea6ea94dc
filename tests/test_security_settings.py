"""Hardening (issue #11): an empty secret stops start-up instead of protecting nothing."""

from __future__ import annotations

import pytest

from settings import load_settings
from settings.errors import ConfigError

SECRETS = ("IMAGINE_API_TOKEN", "IMAGINE_URL_SECRET", "SLACK_SIGNING_SECRET",
           "IMAGINE_METRICS_TOKEN")


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.mark.parametrize("name", SECRETS)
@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_secret_stops_start_up_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"{name}=") and "is empty" in message


def test_set_and_unset_secrets_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().api_token is None
    monkeypatch.setenv("IMAGINE_API_TOKEN", "t0ken")
    monkeypatch.setenv("IMAGINE_MAX_UPLOAD_BYTES", "2048")
    settings = load_settings()
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "t0ken"
    assert settings.max_upload_bytes == 2048
