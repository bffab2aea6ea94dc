"""The fake chat services as fixtures: one `slack` for every Slack test.

A test (or module, with `pytestmark`) marked `socket_mode` gets a fake that also runs
Slack's Socket Mode WebSocket server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.slack_api import FakeSlack, fake_slack


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "socket_mode: the fake Slack also serves Socket Mode")


@pytest.fixture
def slack(request: pytest.FixtureRequest) -> Iterator[FakeSlack]:
    """A running fake Slack Web API on a free loopback port (`slack.api_url`)."""
    socket_mode = request.node.get_closest_marker("socket_mode") is not None
    with fake_slack(socket_mode=socket_mode) as fake:
        yield fake
