"""A job's prompt made ready for the image model: translated into English, enhanced (#16).

Before a job is drawn, its prompt and negative prompt are translated when they are not in
English (IMAGINE_TRANSLATE_MODEL) and, for --enhance, expanded by IMAGINE_ENHANCE_MODEL
(after translation, seeded by the job's seed); --raw skips both. The job record then keeps
what the user wrote (prompt_original, negative_original), the detected language and
`enhanced`, and its request carries the English text the pipeline gets (its `enhance` flag
cleared: a reroll redraws that text, it does not expand it again). The new texts pass the
blocklist again: a hit fails the job with the refusal and is audited.

Translations and expansions are cached in Redis by a hash of the model and the text (and
seed), so a text is translated once across every worker; with IMAGINE_TEXT_QUEUE a `text`
worker fills the cache while the job waits (PREPARE_TEXT_TASK), and the generate worker
finds it there. Batching is unaffected: batch_key (generator/batching.py) does not look at
prompts. A model that fails leaves the text as written, with a note: drawing it untranslated
beats not drawing at all.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import redis

from generator import png
from settings import Settings
from settings.errors import ImagineError
from settings.i18n import _, use_locale
from tasks.core.jobs import EXTRA_LOCALE, Job, JobStatus
from tasks.core.text_jobs import needs_text
from tasks.errors import PolicyRefusal
from tasks.names import ENHANCEMENT_KEY, TRANSLATION_KEY

if TYPE_CHECKING:
    from generator.request import ImageRequest
    from tasks.worker.runner import JobRunner

log = logging.getLogger(__name__)

# A translation or expansion is kept this long after its last use.
CACHE_SECONDS = 30 * 24 * 3600


class TextPrep:
    """Translation and enhancement of requests, cached in Redis; models load on first use
    on `device()` (the engine's device on a generate worker, the CPU on a text worker)."""

    def __init__(self, settings: Settings, client: redis.Redis,
                 device: Callable[[], str]) -> None:
        self.settings = settings
        self.redis = client
        self.device = device

    def needed(self, request: ImageRequest) -> bool:
        """Whether the request's text goes through a model before drawing."""
        return needs_text(self.settings, request)

    def translation(self, text: str) -> tuple[str, str | None]:
        """(`text` in English, the language it was detected in; None: left as it was)."""
        source = self.settings.translate_model
        if not source or not text.strip():
            return text, None
        key = translation_key(source, text)
        cached = self._cached(key)
        if cached is not None:
            found = json.loads(cached)
            return found["text"], found["language"]
        from generator.translate import translate  # noqa: PLC0415 - torch only when used

        result = translate(source, self.device(), text)
        english, language = (text, None) if result is None else (result.text, result.language)
        self._store(key, json.dumps({"text": english, "language": language}))
        return english, language

    def enhancement(self, idea: str, seed: int) -> str:
        """`idea` expanded into a detailed prompt, the same for the same seed."""
        source = self.settings.enhance_model
        if not source:
            return idea
        settings = self.settings
        key = enhancement_key(source, idea, seed, settings.enhance_max_tokens)
        cached = self._cached(key)
        if cached is not None:
            return cached
        from generator.enhance import expand  # noqa: PLC0415

        prompt = expand(source, self.device(), idea, seed=seed,
                        max_tokens=settings.enhance_max_tokens,
                        timeout=settings.enhance_timeout,
                        max_length=settings.max_prompt_length)
        self._store(key, prompt)
        return prompt

    def prepared(self, job: Job) -> Job:
        """`job` with its request's text made ready (not saved); unchanged when there is
        nothing to do or it was done already (a job drawn again after a crash)."""
        request = job.request
        if not self.needed(request) or job.prompt_original is not None or job.enhanced:
            return job
        prompt, language = self.translation(request.prompt)
        negative, negative_language = self.translation(request.negative_prompt)
        enhanced = bool(request.enhance and self.settings.enhance_model)
        if enhanced:
            prompt = self.enhancement(prompt, request.seed or 0)
        changed = prompt != request.prompt or negative != request.negative_prompt
        if not changed and not request.enhance:
            return job
        return job.model_copy(update={
            "request": request.model_copy(update={
                "prompt": prompt, "negative_prompt": negative, "enhance": False}),
            "prompt_original": request.prompt if prompt != request.prompt else None,
            "negative_original": (request.negative_prompt
                                  if negative != request.negative_prompt else None),
            "prompt_language": language or negative_language,
            "enhanced": enhanced,
        })

    def warm(self, job: Job) -> None:
        """Fill the caches for `job` (the text queue's task): the generate worker then
        finds its translation and expansion there."""
        self.prepared(job)

    def _cached(self, key: str) -> str | None:
        try:
            value = self.redis.getex(key, ex=CACHE_SECONDS)
        except redis.RedisError as exc:  # the cache is a shortcut: compute without it
            log.warning("text cache not read (%s)", exc)
            return None
        return value.decode() if isinstance(value, bytes) else value

    def _store(self, key: str, value: str) -> None:
        try:
            self.redis.set(key, value, ex=CACHE_SECONDS)
        except redis.RedisError as exc:
            log.warning("text cache not written (%s)", exc)


def translation_key(model: str, text: str) -> str:
    """Where the translation of `text` by `model` is cached."""
    return TRANSLATION_KEY.format(_digest(model, text))


def enhancement_key(model: str, idea: str, seed: int, max_tokens: int) -> str:
    """Where the expansion of `idea` by `model` with `seed` (and that token bound) is cached."""
    return ENHANCEMENT_KEY.format(_digest(model, idea, str(seed), str(max_tokens)))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def prepare_job(runner: JobRunner, prep: TextPrep, job: Job) -> Job | None:
    """`job`, its text made ready and recorded; None when it was failed instead (its new
    text hit the blocklist)."""
    try:
        ready = prep.prepared(job)
    except Exception as exc:  # a model that does not load or breaks: draw as written
        log.exception("job %s: translating or enhancing its prompt failed", job.id)
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            note = _("The prompt could not be translated or enhanced ({error}); it was "
                     "drawn as written.").format(error=_reason(exc))
        return runner.queue.jobs.update(job.id, lambda current: current.model_copy(
            update={"notes": [*current.notes, note]}))
    if ready is job:
        return job
    try:
        with use_locale(job.requester.extra.get(EXTRA_LOCALE)):
            runner.queue.policy.check_prompt(ready, ready.request.prompt,
                                             ready.request.negative_prompt)
    except PolicyRefusal as refusal:
        runner.queue.policy.refused(ready, refusal)
        runner.finish(ready, JobStatus.failed, error=refusal.message)
        return None
    fields = {name: getattr(ready, name) for name in (
        "request", "prompt_original", "negative_original", "prompt_language", "enhanced")}
    return runner.queue.jobs.update(job.id, lambda current: current.model_copy(update=fields))


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, ImagineError) else type(exc).__name__


def label_images(job: Job, images: Sequence[Any]) -> None:
    """Write what the user wrote beside the prompt drawn into each image's PNG parameters
    (before they are encoded), so the file tells both (generator/png.py)."""
    entries = []
    if job.prompt_original is not None:
        entries.append(f"{png.ORIGINAL_PROMPT}: {png.quoted(job.prompt_original)}")
    if job.negative_original is not None:
        entries.append(f"{png.ORIGINAL_NEGATIVE}: {png.quoted(job.negative_original)}")
    if job.prompt_language:
        entries.append(f"{png.PROMPT_LANGUAGE}: {job.prompt_language}")
    if job.enhanced:
        entries.append(f"{png.ENHANCED}: true")
    for image in images:
        if entries and isinstance(getattr(image, "parameters", None), str):
            image.parameters = png.with_entries(image.parameters, entries)
