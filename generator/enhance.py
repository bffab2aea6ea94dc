"""--enhance: a small instruct language model turns a short idea into a detailed prompt.

IMAGINE_ENHANCE_MODEL is a transformers causal LM with a chat template (Qwen2.5-0.5B-
Instruct runs on a CPU in about a second). It gets SYSTEM_PROMPT and the user's idea (in
English: the worker translates first) and answers one line. Sampling is seeded by the job's
seed on a forked RNG, so the same request expands the same way and a reroll (a new seed)
differently. Generation stops after IMAGINE_ENHANCE_MAX_TOKENS new tokens or
IMAGINE_ENHANCE_TIMEOUT seconds (transformers' max_time), whichever comes first; the answer
is cleaned (one line, no quotes or "Here is a prompt:" preamble) and capped to the prompt
length limit. This module knows nothing of Redis or jobs (tasks/worker/text_prep.py caches).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from generator.translate import clean_line
from settings.errors import ConfigError

# What the model is asked to do; the README quotes it ("Prompt enhancement").
SYSTEM_PROMPT = (
    "You write prompts for a text-to-image model. The user gives a short idea; answer with "
    "one detailed English prompt for it and nothing else: a single line of comma-separated "
    "phrases, at most 60 words, naming the subject first, then its setting, composition, "
    "lighting, colours, style or medium, and mood. Keep everything the idea asks for and "
    "add nothing that contradicts it. No quotes, no preamble, no explanations, no text, "
    "signatures or watermarks in the image."
)
# Sampling: varied enough that a reroll reads differently, tame enough to stay on topic.
TEMPERATURE = 0.7
TOP_P = 0.9
# Openings small models put before the prompt itself.
_PREAMBLE = re.compile(
    r"^\s*(?:sure[,!.]+\s*)?(?:here(?:'s| is)[^:]*:|(?:enhanced |image |detailed )?prompt:)?\s*",
    re.IGNORECASE)
_QUOTES = "\"'`“”‘’«»*"


class Enhancer:
    """A loaded instruct model, on one device."""

    def __init__(self, source: str, device: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

        self.source = source
        self.device = device
        self.tokenizer: Any = AutoTokenizer.from_pretrained(source)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(f"IMAGINE_ENHANCE_MODEL={source} has no chat template: use an "
                             "instruct (chat) model such as Qwen/Qwen2.5-0.5B-Instruct")
        auto: Any = AutoModelForCausalLM  # its stubs want a model class, not a hub id
        self.model: Any = auto.from_pretrained(source).to(device).eval()
        # Seeding forks the process's RNG: one expansion at a time.
        self._lock = threading.Lock()

    def expand(self, idea: str, *, seed: int, max_tokens: int, timeout: float,
               max_length: int) -> str:
        """A detailed prompt for `idea`, at most `max_length` characters; `idea` itself
        when the model gives nothing usable back."""
        import torch  # noqa: PLC0415

        messages = [{"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": idea}]
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        pad = self.tokenizer.pad_token_id
        devices = [torch.device(self.device).index or 0] if self.device.startswith("cuda") else []
        with self._lock, torch.inference_mode(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            output = self.model.generate(
                **inputs, do_sample=True, temperature=TEMPERATURE, top_p=TOP_P,
                max_new_tokens=max_tokens, max_time=timeout,
                pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id)
        answer = self.tokenizer.decode(output[0][prompt_tokens:], skip_special_tokens=True)
        return clean_prompt(answer, max_length) or idea


def clean_prompt(answer: str, max_length: int) -> str:
    """The model's answer as one prompt line: its first non-empty line, without a
    preamble or surrounding quotes, cut at a word boundary to `max_length` characters."""
    lines = (_PREAMBLE.sub("", clean_line(part)).strip().strip(_QUOTES).strip()
             for part in answer.splitlines())
    line = next((text for text in lines if text), "")  # a preamble alone is not the prompt
    if len(line) <= max_length:
        return line
    cut = line[:max_length + 1].rsplit(" ", 1)[0]
    return (cut if 0 < len(cut) <= max_length else line[:max_length]).rstrip(" ,;")


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _load(source: str, device: str) -> Enhancer:
    return Enhancer(source, device)


def enhancer(source: str, device: str) -> Enhancer:
    """The process's enhancer for `source` on `device`, loaded on first use."""
    with _LOAD_LOCK:
        return _load(source, device)


def expand(source: str, device: str, idea: str, **limits: Any) -> str:
    """`idea` expanded by the model `source` (limits: seed, max_tokens, timeout,
    max_length)."""
    return enhancer(source, device).expand(idea, **limits)
