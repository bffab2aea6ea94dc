"""Shared fixtures: real Redis servers, settings, worker processes, the tiny model."""

from tests.fixtures_model import *  # noqa: F401,F403
from tests.fixtures_redis import *  # noqa: F401,F403
