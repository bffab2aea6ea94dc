"""The prompt blocklist (tasks/policy/blocklist.py): entries in disguise are found, ordinary
words are not, regular expressions, reloading when the file changes, and the gate's check
of text the worker makes (translations, enhancements)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from generator.request import ImageRequest
from settings import Settings
from settings.errors import ConfigError
from settings.i18n import _
from tasks.core.jobs import Job, Requester
from tasks.errors import PromptRefused
from tasks.policy.blocklist import REFUSAL, Blocklist
from tasks.policy.gate import PolicyGate

ENTRIES = """\
# plain words and phrases match whole words
foo
bad phrase
re:\\bkil+ing\\b
坏词
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def blocklist_at(path: Path, text: str = ENTRIES, clock: Clock | None = None) -> Blocklist:
    path.write_text(text, encoding="utf-8")
    return Blocklist(Settings(_env_file=None, prompt_blocklist=path),  # type: ignore[call-arg]
                     **({"clock": clock} if clock else {}))


@pytest.mark.usefixtures("clean_env")
def test_entries_in_disguise_are_found_and_ordinary_words_are_not(tmp_path: Path) -> None:
    blocklist = blocklist_at(tmp_path / "blocklist.txt")
    hits = {
        "a foo in the snow": "foo",
        "Ｆｏｏ": "foo",  # fullwidth
        "f.o.o": "foo", "f o o at dusk": "foo", "f-o-o": "foo", "f_o_o": "foo",
        "a f o o": "foo", "a f . o . o": "foo",
        "fоо": "foo",  # Cyrillic о
        "FΟΟ's tail": "foo",  # Greek capital omicron, and a possessive
        "f\u200bo\u00ado": "foo",  # zero-width space and soft hyphen
        "fóõ": "foo",  # accents
        "a bad, Phrase": "bad phrase",
        "killling time": "re:\\bkil+ing\\b",
        "k.i.l.l.i.n.g": "re:\\bkil+ing\\b",
        "这是坏词吗": "坏词",  # no spaces between Chinese words: found anywhere
    }
    for text, entry in hits.items():
        assert blocklist.match(text) == entry, text
    for text in ("food", "a foot", "buffoon", "bad phrases", "a bad idea, a phrase",
                 "a kiln", "an al capone portrait", "f oo d", "坏的词"):
        assert blocklist.match(text) is None, text
    assert blocklist.match("a fox", "", "no foo here") == "foo"  # any of the texts


@pytest.mark.usefixtures("clean_env")
def test_the_file_is_reloaded_when_it_changes_and_a_bad_edit_keeps_the_last(
        tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "blocklist.txt"
    blocklist = blocklist_at(path, "foo\n", clock)
    assert blocklist.match("a bar") is None
    path.write_text("foo\nbar\n", encoding="utf-8")
    os.utime(path, ns=(1, 1))  # a different modification time whatever the clock's resolution
    assert blocklist.match("a bar") is None  # looked at no more than once a second
    clock.now += 1.5
    assert blocklist.match("a bar") == "bar"
    path.write_text("re:(unclosed\n", encoding="utf-8")
    clock.now += 1.5
    assert blocklist.match("a bar") == "bar"  # logged; the last good entries stay
    path.unlink()
    clock.now += 1.5
    assert blocklist.match("a foo") == "foo"
    path.write_text("baz\n", encoding="utf-8")
    clock.now += 1.5
    assert blocklist.match("a baz") == "baz" and blocklist.match("a foo") is None


@pytest.mark.usefixtures("clean_env")
def test_a_missing_file_or_a_bad_expression_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.txt"
    with pytest.raises(ConfigError, match="IMAGINE_PROMPT_BLOCKLIST"):
        Blocklist(Settings(_env_file=None, prompt_blocklist=missing))  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"line 3: '\(unclosed' is not a valid regular"):
        blocklist_at(tmp_path / "bad.txt", "# one\nfoo\nre:(unclosed\n")
    assert Blocklist(Settings(_env_file=None)).match("foo") is None  # type: ignore[call-arg]


@pytest.mark.usefixtures("clean_env")
def test_the_gate_checks_translated_and_enhanced_text(redis_url: str, tmp_path: Path) -> None:
    path = tmp_path / "blocklist.txt"
    path.write_text(ENTRIES, encoding="utf-8")
    settings = Settings(_env_file=None, redis_url=redis_url,  # type: ignore[call-arg]
                        prompt_blocklist=path)
    gate = PolicyGate(settings, redis.Redis.from_url(redis_url))
    job = Job(requester=Requester(platform="slack", user="U1", channel="C1"),
              request=ImageRequest(prompt="ein Fuchs"))
    gate.check_prompt(job, "ein Fuchs", "a fox")  # the prompt and its translation: fine
    with pytest.raises(PromptRefused) as refused:
        gate.check_prompt(job, "ein Fuchs", "a fox and a f.o.o", "an enhanced prompt")
    assert refused.value.message == _(REFUSAL) and refused.value.status == 403
    assert refused.value.rule == "blocklist: foo"
    with pytest.raises(PromptRefused):  # the negative prompt too, on submit
        gate.admit(job.model_copy(update={"request": ImageRequest(
            prompt="a fox", negative_prompt="bad phrase")}))
    entry = gate.audit.last(1)[0]
    assert (entry.event, entry.rule, entry.user) == ("policy.refused", "blocklist: bad phrase",
                                                     "slack:U1")
