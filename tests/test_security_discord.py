"""Hardening (issue #11): a prompt echoed on Discord renders as plain text, never as a link."""

from __future__ import annotations

import re

import pytest

from bots.discord.formatting import finished_text, progress_text, queued_text, result_content
from bots.limits import Limits
from generator.request import ImageRequest
from tasks.core.jobs import Job, JobStatus, Requester

HOSTILE = ("free nitro [click here](https://evil.example/steal) <https://evil.example/x> "
           "https://bare.example ||spoiler|| **loud** <@&123> <:emoji:456> > quote")

# What Discord would render as a link or markup if it were not escaped: a `[` `]` `(` `)` `<`
# `*` `|` or `://` without a backslash in front.
UNESCAPED = re.compile(r"(?<!\\)(?:[\[\]()<*|]|://)")


def _job(status: JobStatus = JobStatus.done) -> Job:
    return Job(requester=Requester(platform="discord", user="1234", channel="9"),
               request=ImageRequest(prompt=HOSTILE, width=64, height=64, seed=5),
               status=status, images=["a" * 32] if status is JobStatus.done else [],
               seeds=[5] if status is JobStatus.done else [], error="boom")


def _bold_prompt(text: str) -> str:
    """The part of a message between the first `**` and the `**` that ends the line."""
    first_line = text.split("\n", 1)[0]
    start = first_line.index("**") + 2
    assert first_line.endswith("**")
    return first_line[start:-2]


@pytest.mark.parametrize("render", [
    lambda: queued_text(HOSTILE, 2, "~1 min"),
    lambda: progress_text(_job(JobStatus.queued), 1),
    lambda: finished_text(_job(JobStatus.cancelled)),
    lambda: finished_text(_job(JobStatus.failed)),
    lambda: result_content(_job(), Limits(default_size=64, default_steps=2), []),
])
def test_an_echoed_prompt_carries_no_masked_link_mention_or_markup(render) -> None:  # type: ignore[no-untyped-def]
    shown = _bold_prompt(render())
    assert UNESCAPED.search(shown) is None, shown
    # Every word is still there for the reader (Discord hides the backslashes).
    assert shown.replace("\\", "") == HOSTILE.replace("`", "ˋ")


def test_the_again_line_keeps_the_prompt_verbatim_in_its_code_span() -> None:
    text = result_content(_job(), Limits(default_size=64, default_steps=2), [])
    again = next(line for line in text.splitlines() if line.startswith("Again: `"))
    assert "[click here](https://evil.example/steal)" in again  # code spans render no link
