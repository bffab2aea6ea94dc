"""Prompts in other languages drawn as English: language detection and a translation model.

Image models understand English prompts (their text encoders were trained on English
captions), so a prompt in another language is translated first with IMAGINE_TRANSLATE_MODEL,
a transformers sequence-to-sequence model: a MarianMT pair such as Helsinki-NLP/opus-mt-zh-en
or a multilingual NLLB / M2M100, whose tokenizer is told the source language.

The language is detected from the text itself: the script first (Han, kana, Hangul,
Cyrillic, Arabic, Greek, Thai, Devanagari, Hebrew), and for Latin script py3langid (BSD),
which is trusted only when it is sure, since most prompts are English keyword lists it
cannot score well. English, or a language not detected, is left alone.

One model is loaded per process and device (like the image models: loading takes seconds,
a translation milliseconds). This module knows nothing of Redis or jobs: the worker caches
translations (tasks/worker/text_prep.py).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

ENGLISH = "en"
# Input beyond this many tokens is cut (a prompt is far shorter); the output gets at most
# twice the input's tokens and a little more (translations are not much longer), up to
# MAX_OUTPUT_TOKENS.
MAX_INPUT_TOKENS = 512
MAX_OUTPUT_TOKENS = 256
# py3langid must be this sure (normalised probability) before a Latin-script prompt counts
# as something other than English, and the prompt must have this many words.
LATIN_CONFIDENCE = 0.9
LATIN_MIN_WORDS = 3
# The Latin-script languages py3langid chooses among (fewer choices, fewer wrong guesses).
LATIN_LANGUAGES = ("en", "fr", "de", "es", "it", "pt", "nl", "pl", "sv", "da", "no", "fi",
                   "cs", "sk", "ro", "hu", "tr", "vi", "id", "ca", "hr", "lt", "lv", "et")

# Unicode script of a character, by code point range: (first, last, language).
_SCRIPT_RANGES = (
    (0x3040, 0x30FF, "ja"),  # hiragana, katakana
    (0x31F0, 0x31FF, "ja"),
    (0xAC00, 0xD7AF, "ko"),  # Hangul syllables
    (0x1100, 0x11FF, "ko"),
    (0x3130, 0x318F, "ko"),
    (0x4E00, 0x9FFF, "zh"),  # CJK ideographs (Japanese use them too: kana decides)
    (0x3400, 0x4DBF, "zh"),
    (0xF900, 0xFAFF, "zh"),
    (0x0400, 0x04FF, "ru"),  # Cyrillic: Russian is by far the most common
    (0x0600, 0x06FF, "ar"),
    (0x0370, 0x03FF, "el"),
    (0x0E00, 0x0E7F, "th"),
    (0x0900, 0x097F, "hi"),
    (0x0590, 0x05FF, "he"),
)
# Scripts whose every character carries about a word.
_DENSE = {"ja", "ko", "zh"}

# NLLB's codes (FLORES-200) for the languages detected here; M2M100 takes the plain ones.
NLLB_CODES = {
    "en": "eng_Latn", "zh": "zho_Hans", "ja": "jpn_Jpan", "ko": "kor_Hang", "ru": "rus_Cyrl",
    "ar": "arb_Arab", "el": "ell_Grek", "th": "tha_Thai", "hi": "hin_Deva", "he": "heb_Hebr",
    "fr": "fra_Latn", "de": "deu_Latn", "es": "spa_Latn", "it": "ita_Latn", "pt": "por_Latn",
    "nl": "nld_Latn", "pl": "pol_Latn", "sv": "swe_Latn", "da": "dan_Latn", "no": "nob_Latn",
    "fi": "fin_Latn", "cs": "ces_Latn", "sk": "slk_Latn", "ro": "ron_Latn", "hu": "hun_Latn",
    "tr": "tur_Latn", "vi": "vie_Latn", "id": "ind_Latn", "ca": "cat_Latn", "hr": "hrv_Latn",
    "lt": "lit_Latn", "lv": "lvs_Latn", "et": "est_Latn",
}
# A Marian pair named like Helsinki-NLP/opus-mt-<source>-en translates that language only.
_MARIAN_PAIR = re.compile(r"opus-mt-([a-z]{2,3})-en(?:$|[^a-z])")


def detect_language(text: str) -> str | None:
    """The ISO 639-1 code of the language `text` is written in, or None (no letters)."""
    counts: dict[str, int] = {}
    latin = 0
    for char in text:
        if not char.isalpha():
            continue
        language = _script_language(ord(char))
        if language is None:
            latin += unicodedata.name(char, "").startswith("LATIN")
            continue
        counts[language] = counts.get(language, 0) + 1
    if counts.get("ja") and counts.get("zh"):
        counts["ja"] += counts.pop("zh")  # kanji among kana: Japanese
    if counts:
        language, count = max(counts.items(), key=lambda item: item[1])
        # A CJK word in an English list ("猫, 4k, masterpiece") means nothing to the image
        # model: the prompt is translated. Other scripts must make up a third of the letters.
        if language in _DENSE or count * 2 >= latin:
            return language
    return _latin_language(text) if latin else None


def _script_language(code: int) -> str | None:
    for first, last, language in _SCRIPT_RANGES:
        if first <= code <= last:
            return language
    return None


def _latin_language(text: str) -> str:
    """English unless py3langid is sure of another language (short texts are English)."""
    if len(re.findall(r"[^\W\d_]+", text)) < LATIN_MIN_WORDS:
        return ENGLISH
    language, probability = _language_identifier().classify(text)
    return str(language) if probability >= LATIN_CONFIDENCE else ENGLISH


@lru_cache(maxsize=1)
def _language_identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier  # noqa: PLC0415

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(LATIN_LANGUAGES))
    return identifier


@dataclass(frozen=True)
class Translation:
    """What the model made of a text: English `text`, from `language`."""

    text: str
    language: str


class Translator:
    """A loaded translation model into English, on one device."""

    def __init__(self, source: str, device: str) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: PLC0415

        self.source = source
        self.device = device
        self.tokenizer: Any = AutoTokenizer.from_pretrained(source)
        self.model: Any = AutoModelForSeq2SeqLM.from_pretrained(source).to(device).eval()
        self.kind = _kind(self.tokenizer)
        pair = _MARIAN_PAIR.search(source.lower())
        # A pair model given another language would answer nonsense: it is left alone.
        self.only_from = pair.group(1) if pair and pair.group(1) != "mul" else None
        self._lock = threading.Lock()  # a tokenizer's src_lang is state

    def can_translate(self, language: str) -> bool:
        if language == ENGLISH:
            return False
        if self.kind == "nllb":
            return language in NLLB_CODES
        return self.only_from is None or self.only_from == language

    def translate(self, text: str, language: str) -> str:
        """`text` (in `language`) in English, on one line; `text` itself when the model
        cannot translate it or gives nothing back."""
        if not text.strip() or not self.can_translate(language):
            return text
        import torch  # noqa: PLC0415

        with self._lock, torch.inference_mode():
            extra = self._language_options(language)
            inputs = self.tokenizer(text, return_tensors="pt", truncation=True,
                                    max_length=MAX_INPUT_TOKENS).to(self.device)
            budget = min(MAX_OUTPUT_TOKENS, 2 * int(inputs["input_ids"].shape[1]) + 16)
            output = self.model.generate(**inputs, max_new_tokens=budget, num_beams=1,
                                         do_sample=False, **extra)
        english = clean_line(self.tokenizer.decode(output[0], skip_special_tokens=True))
        return english or text

    def _language_options(self, language: str) -> dict[str, Any]:
        if self.kind == "nllb":
            self.tokenizer.src_lang = NLLB_CODES[language]
            return {"forced_bos_token_id": self.tokenizer.convert_tokens_to_ids("eng_Latn")}
        if self.kind == "m2m100":
            self.tokenizer.src_lang = language
            return {"forced_bos_token_id": self.tokenizer.get_lang_id(ENGLISH)}
        return {}


def _kind(tokenizer: Any) -> str:
    """"nllb" or "m2m100" (told the source language), else "pair" (Marian and the like)."""
    name = type(tokenizer).__name__.lower()
    if "nllb" in name:
        return "nllb"
    if "m2m100" in name:
        return "m2m100"
    return "pair"


def clean_line(text: str) -> str:
    """`text` as one line of printable characters, spaces collapsed."""
    printable = "".join(ch if ch.isprintable() and ch != "\ufffd" else " " for ch in text)
    return " ".join(printable.split())


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _load(source: str, device: str) -> Translator:
    return Translator(source, device)


def translator(source: str, device: str) -> Translator:
    """The process's translator for `source` on `device`, loaded on first use."""
    with _LOAD_LOCK:  # two threads asking at once load it once
        return _load(source, device)


def translate(source: str, device: str, text: str) -> Translation | None:
    """`text` in English with the model `source`; None when it is English already, has no
    detectable language, or is in one the model does not translate."""
    language = detect_language(text)
    if language is None or language == ENGLISH:
        return None
    model = translator(source, device)
    if not model.can_translate(language):
        return None
    return Translation(model.translate(text, language), language)
