"""What the Slack bot says: escaping of echoed user text, buttons.

Follow-up requests are tested for every platform in tests/test_followups.py."""

from __future__ import annotations

import pytest

from bots.slack import text as say
from generator.request import ImageRequest
from tasks.core.jobs import Job, JobStatus, Requester

HOSTILE = "a fox <!channel> <!here> <@U123> <https://evil.example|click> & co"


def test_escape_leaves_no_slack_markup() -> None:
    escaped = say.escape(HOSTILE)
    assert "<" not in escaped and ">" not in escaped
    assert "&lt;!channel&gt;" in escaped and "&amp; co" in escaped
    assert say.unescape(escaped) == HOSTILE


def test_plain_text_reads_incoming_markup_as_a_person_would() -> None:
    assert say.plain_text("a fox <!channel> <@U123> <https://x.example|click> &amp; &lt;3") == (
        "a fox @channel @U123 click & <3")
    assert say.plain_text("<#C1|general> <@U2|ann> <https://x.example>") == (
        "#general @ann https://x.example")
    assert say.strip_mention("<@UBOT> a fox --ar 16:9", "UBOT") == "a fox --ar 16:9"
    # A link first is an image prompt: its URL stays, whatever label Slack gave it.
    assert say.prompt_text("<https://x.example/a.png?a=1&amp;b=2|x.example/a.png> a <@U2|ann>") == (
        "https://x.example/a.png?a=1&b=2 a @ann")
    assert say.prompt_text("a <https://x.example|click>") == "a click"


def test_headline_mentions_only_the_requester() -> None:
    request = ImageRequest(prompt=say.plain_text(HOSTILE))
    line = say.headline("U0000USER", request, "vary", 1)
    assert line.startswith("<@U0000USER>: ")
    assert line.count("<") == 1 and "<!" not in line and "<@U123" not in line
    assert "Vary (Subtle) of image 2" in line
    # A user id that is not one cannot inject markup either.
    assert "<" not in say.headline("<!here>", request)


def test_action_values_round_trip_and_reject_foreign_buttons() -> None:
    value = say.ActionValue("vary", "ab" * 12, 3)
    assert say.ActionValue.decode(value.action_id, value.encode()) == value
    cancel = say.ActionValue("cancel", "cd" * 12)
    assert say.ActionValue.decode(cancel.action_id, cancel.encode()) == cancel
    for action_id, raw in [("other:vary", "ab" * 12), ("imagine:explode", "ab" * 12),
                           ("imagine:vary:1", "not-a-job"), ("imagine:vary:1", "abababab:x")]:
        with pytest.raises(ValueError):
            say.ActionValue.decode(action_id, raw)


def _done(images: int) -> Job:
    return Job(requester=Requester(platform="slack", user="U1"), request=ImageRequest(
        prompt="a fox", num_images=images), status=JobStatus.done, images=["ab" * 16] * images)


def test_result_buttons_fit_slack_block_limits() -> None:
    for images, sizes in ((16, [5, 5, 3]), (1, [2, 3, 2, 4, 3])):
        blocks = say.result_blocks("done", _done(images))
        actions = [b for b in blocks if b["type"] == "actions"]
        assert [len(b["elements"]) for b in actions] == sizes
        ids = [e["action_id"] for b in actions for e in b["elements"]]
        assert len(ids) == len(set(ids))  # Slack requires unique action_ids per message
        assert all(say.ActionValue.decode(e["action_id"], e["value"])
                   for b in actions for e in b["elements"])
        assert blocks[0]["text"]["verbatim"] is True

