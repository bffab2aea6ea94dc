"""`imagine generate`'s language step (#16): the prompt translated into English
(IMAGINE_TRANSLATE_MODEL) and, for --enhance, expanded (IMAGINE_ENHANCE_MODEL), as a worker
does (tasks/worker/text_prep.py) but without Redis: one process, one prompt, no cache to
share. The prompt drawn is printed, so the user sees what the model got."""

from __future__ import annotations

import click

from generator.request import ImageRequest
from settings import Settings


def prepared_request(request: ImageRequest, settings: Settings, device: str) -> ImageRequest:
    """`request` with its prompt and negative prompt in English and, for --enhance,
    expanded; unchanged for --raw or when no language model is configured."""
    if request.raw or not (settings.translate_model or
                           (request.enhance and settings.enhance_model)):
        return request
    prompt = _english(request.prompt, settings, device, "prompt")
    negative = _english(request.negative_prompt, settings, device, "negative prompt")
    if request.enhance and settings.enhance_model:
        from generator.enhance import expand  # noqa: PLC0415 - torch only when used

        prompt = expand(settings.enhance_model, device, prompt, seed=request.seed or 0,
                        max_tokens=settings.enhance_max_tokens,
                        timeout=settings.enhance_timeout,
                        max_length=settings.max_prompt_length)
        click.echo(f"enhanced prompt: {prompt}")
    return request.model_copy(update={"prompt": prompt, "negative_prompt": negative,
                                      "enhance": False})


def _english(text: str, settings: Settings, device: str, what: str) -> str:
    """`text` in English (printed when translated), or as written."""
    if not settings.translate_model or not text.strip():
        return text
    from generator.translate import translate  # noqa: PLC0415

    result = translate(settings.translate_model, device, text)
    if result is None:
        return text
    click.echo(f"{what} translated from {result.language}: {result.text}")
    return result.text
