"""Shared fixtures, registered once: real Redis servers, settings, worker processes, the tiny
model, a live web app, and the fake chat services."""

pytest_plugins = [
    "tests.fixtures_model",
    "tests.fixtures_controlnet",
    "tests.fixtures_lora",
    "tests.fixtures_upscaler",
    "tests.fixtures_redis",
    "tests.fixtures_chat",
    "tests.web_support",
]
