"""The settings of prompts in other languages, prompt enhancement and the bot's own language.
`Settings` inherits them (settings/__init__.py)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class LanguageSettings(BaseSettings):
    # A transformers translation model into English (hub id or folder): a MarianMT such as
    # Helsinki-NLP/opus-mt-zh-en, or a multilingual NLLB/M2M100 (then the source language
    # comes from detection, mapped to the model's codes). Unset: prompts are drawn as written.
    translate_model: str | None = None
    # A small instruct causal LM with a chat template (e.g. Qwen/Qwen2.5-0.5B-Instruct) that
    # expands `--enhance` ideas into detailed prompts. Unset: --enhance is refused with a message.
    enhance_model: str | None = None
    enhance_max_tokens: int = Field(default=120, ge=8, le=1024)
    enhance_timeout: float = Field(default=20.0, gt=0.0, le=600.0,
                                   description="s an enhancement may take at most")
    # Translation and enhancement run on the generate worker that draws the job, or, when
    # this is on, on workers of the `text` queue (CPU is enough) before the job is drawn.
    text_queue: bool = False
    # The language of messages when the user's is unknown or has no catalog.
    default_locale: str = "en"
