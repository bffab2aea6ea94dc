"""Prompt weights and prompts longer than CLIP's 77 tokens, through compel.

A prompt written without weight syntax that fits CLIP's window goes to the pipeline as text,
exactly as before, so existing prompts keep drawing byte-identical images. Anything else is
read as AUTOMATIC1111 syntax (generator/a1111_syntax.py) and turned into embeddings by
compel: every 75 tokens (or each BREAK) become one 77-token chunk with its own start and end
markers, the chunks are concatenated, and the negative prompt is padded with empty chunks to
the same length, which is how A1111 draws long prompts. Like A1111, a full chunk is cut after
a comma rather than inside a phrase: after the last , . ; or : that fits (A1111 looks back
at most 20 tokens for it, compel through the whole chunk), else after the last whole word.

Weights are compel's: above 1 a word's embedding is pushed away from the empty prompt's, below
1 it is blended towards the prompt without that word (0 removes it). The direction matches
A1111; the strength of a given number is close to it, not equal.

Works for Stable Diffusion 1.x/2.x pipelines and SDXL (both text encoders, plus the pooled
embedding of the second). Other pipelines get the words without weights, and the user is told.
Called inside loras.applied(...) (a LoRA may change the text encoder) and after
embeddings.ensure_loaded(...) (new tokens must be in the tokenizer first).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from generator import a1111_syntax
from generator.a1111_syntax import Chunk
from settings.i18n import _

CLIP_WINDOW = 75  # CLIP's 77 positions less the start and end markers


@dataclass(frozen=True)
class EncodedPrompts:
    """Pipeline call arguments standing for prompt and negative prompt, and what to tell the user."""

    kwargs: dict[str, Any]
    notes: tuple[str, ...] = field(default=())


def encode(pipe: Any, prompt: str, negative: str) -> EncodedPrompts:
    """The pipeline arguments for `prompt` and `negative` (A1111 weight syntax, any length)."""
    chunks = a1111_syntax.parse(prompt)
    negative_chunks = a1111_syntax.parse(negative)
    if _fits_as_text(pipe, prompt, chunks) and _fits_as_text(pipe, negative, negative_chunks):
        return EncodedPrompts({"prompt": prompt, "negative_prompt": negative or None})
    parameters = inspect.signature(pipe.__call__).parameters
    if _is_sd(pipe, parameters):
        return EncodedPrompts(_sd_embeddings(pipe, chunks, negative_chunks))
    if _is_sdxl(pipe, parameters):
        return EncodedPrompts(_sdxl_embeddings(pipe, chunks, negative_chunks))
    return _as_text(pipe, (prompt, chunks), (negative, negative_chunks))


def token_count(pipe: Any, text: str) -> int:
    """How many CLIP tokens `text` takes in the pipeline's first tokenizer (markers not counted)."""
    tokenizer = _first_tokenizer(pipe)
    if tokenizer is None:
        return 0
    if hasattr(pipe, "maybe_convert_prompt"):
        # A multi-vector textual inversion stands for several tokens; the pipeline expands it too.
        text = pipe.maybe_convert_prompt(text, tokenizer)
    return len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


def _fits_as_text(pipe: Any, text: str, chunks: tuple[Chunk, ...]) -> bool:
    return a1111_syntax.is_plain(text, chunks) and token_count(pipe, text) <= CLIP_WINDOW


def _first_tokenizer(pipe: Any) -> Any:
    return getattr(pipe, "tokenizer", None) or getattr(pipe, "tokenizer_2", None)


def _is_clip_tokenizer(tokenizer: Any) -> bool:
    # By name: transformers 4 has CLIPTokenizer and CLIPTokenizerFast, transformers 5 only the first.
    return type(tokenizer).__name__ in ("CLIPTokenizer", "CLIPTokenizerFast")


def _is_clip(tokenizer: Any, text_encoder: Any) -> bool:
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    encoders = (CLIPTextModel, CLIPTextModelWithProjection)
    return _is_clip_tokenizer(tokenizer) and isinstance(text_encoder, encoders)


def _is_sd(pipe: Any, parameters: Any) -> bool:
    return (
        "prompt_embeds" in parameters
        and "pooled_prompt_embeds" not in parameters
        and getattr(pipe, "text_encoder_2", None) is None
        and _is_clip(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None))
    )


def _is_sdxl(pipe: Any, parameters: Any) -> bool:
    return (
        "pooled_prompt_embeds" in parameters
        and getattr(pipe, "text_encoder_3", None) is None
        and _is_clip(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None))
        and _is_clip(getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None))
    )


def _compel(pipe: Any, tokenizer: Any, text_encoder: Any, penultimate: bool) -> Any:
    from compel import Compel, ReturnedEmbeddingsType, SplitLongTextMode

    returned = (
        ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        if penultimate  # what SDXL's pipeline takes from both encoders
        else ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED
    )
    inversions = _TextualInversions(pipe, tokenizer) if _has_added_words(pipe, tokenizer) else None
    return Compel(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        textual_inversion_manager=inversions,
        truncate_long_prompts=False,
        returned_embeddings_type=returned,
        split_long_text_mode=SplitLongTextMode.PHRASES,
    )


def _has_added_words(pipe: Any, tokenizer: Any) -> bool:
    # Textual inversions add words to the tokenizer; without any, expanding would only cost time.
    return hasattr(pipe, "maybe_convert_prompt") and len(tokenizer) > tokenizer.vocab_size


def _sd_embeddings(
    pipe: Any, chunks: tuple[Chunk, ...], negative_chunks: tuple[Chunk, ...]
) -> dict[str, Any]:
    import torch

    compel = _compel(pipe, pipe.tokenizer, pipe.text_encoder, penultimate=False)
    with torch.no_grad():
        embeds = _conditioning(compel, chunks)
        negative_embeds = _conditioning(compel, negative_chunks)
        length = max(embeds.shape[1], negative_embeds.shape[1])
        empty = compel.conditioning_provider.empty_z
        return {
            "prompt_embeds": _padded(embeds, empty, length),
            "negative_prompt_embeds": _padded(negative_embeds, empty, length),
        }


def _sdxl_embeddings(
    pipe: Any, chunks: tuple[Chunk, ...], negative_chunks: tuple[Chunk, ...]
) -> dict[str, Any]:
    import torch

    compels = (
        _compel(pipe, pipe.tokenizer, pipe.text_encoder, penultimate=True),
        _compel(pipe, pipe.tokenizer_2, pipe.text_encoder_2, penultimate=True),
    )
    with torch.no_grad():
        # Per encoder: prompt, negative prompt, the empty prompt that pads them.
        parts = [
            (_conditioning(c, chunks), _conditioning(c, negative_chunks), c.conditioning_provider.empty_z)
            for c in compels
        ]
        length = max(max(p.shape[1], n.shape[1]) for p, n, _ in parts)
        # The two encoders' embeddings lie side by side in SDXL's cross-attention input.
        embeds = torch.cat([_padded(p, empty, length) for p, _, empty in parts], dim=-1)
        negative_embeds = torch.cat([_padded(n, empty, length) for _, n, empty in parts], dim=-1)
        pooled_embeds = _pooled(compels[1], a1111_syntax.plain_text(chunks))
        negative_pooled = _pooled(compels[1], a1111_syntax.plain_text(negative_chunks))
    if not any(piece.text.strip() for chunk in negative_chunks for piece in chunk) and getattr(
        pipe.config, "force_zeros_for_empty_prompt", False
    ):
        # SDXL's pipeline draws "no negative prompt" with zeros, not the empty prompt's embedding.
        negative_embeds = torch.zeros_like(negative_embeds)
        negative_pooled = torch.zeros_like(negative_pooled)
    return {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": negative_embeds,
        "pooled_prompt_embeds": pooled_embeds,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def _as_text(
    pipe: Any, positive: tuple[str, tuple[Chunk, ...]], negative: tuple[str, tuple[Chunk, ...]]
) -> EncodedPrompts:
    """For pipelines compel cannot feed: the words at weight 1, and notes saying what was lost."""
    texts: list[str] = []
    notes: list[str] = []
    for label, (text, chunks) in (("prompt", positive), ("negative prompt", negative)):
        plain = text if a1111_syntax.is_plain(text, chunks) else a1111_syntax.plain_text(chunks)
        if plain != text:
            notes.append(
                _("This model does not support prompt weights or BREAK: the {label}'s words "
                  "were used at weight 1.").format(label=label)
            )
        dropped = _dropped_words(pipe, plain)
        if dropped:
            notes.append(_("This model reads only {CLIP_WINDOW} tokens: the {label} lost "
                           "“{dropped}”.").format(
                             CLIP_WINDOW=CLIP_WINDOW, label=label, dropped=dropped))
        texts.append(plain)
    return EncodedPrompts({"prompt": texts[0], "negative_prompt": texts[1] or None}, tuple(notes))


def _dropped_words(pipe: Any, text: str) -> str:
    """The end of `text` a pipeline reading it only through CLIP tokenizers cuts off ('' if none)."""
    tokenizers = [getattr(pipe, name, None) for name in ("tokenizer", "tokenizer_2", "tokenizer_3")]
    present: Sequence[Any] = [t for t in tokenizers if t is not None]
    if not present or not all(_is_clip_tokenizer(t) for t in present):
        return ""  # a T5 encoder beside CLIP reads far longer prompts
    ids = present[0](text, add_special_tokens=False, verbose=False).input_ids
    if len(ids) <= CLIP_WINDOW:
        return ""
    return str(present[0].decode(ids[CLIP_WINDOW:]))


def _conditioning(compel: Any, chunks: tuple[Chunk, ...]) -> Any:
    """The chunks' embeddings side by side; each chunk is one or more 77-token windows."""
    import torch
    from compel.prompt_parser import FlattenedPrompt

    tensors = []
    for chunk in chunks:
        # A piece without tokens would have no position for compel to weight.
        pieces = [(piece.text, piece.weight) for piece in chunk if piece.text.strip()] or [("", 1.0)]
        (tensor, _), _ = compel.build_conditioning_tensor_for_prompt_object(FlattenedPrompt(pieces))
        tensors.append(tensor)
    return torch.cat(tensors, dim=1)


def _padded(tensor: Any, empty: Any, length: int) -> Any:
    """`tensor` lengthened to `length` tokens with empty-prompt windows, as A1111 pads."""
    import torch

    missing = (length - tensor.shape[1]) // empty.shape[1]
    if not missing:
        return tensor
    filler = empty.to(device=tensor.device, dtype=tensor.dtype).repeat(tensor.shape[0], missing, 1)
    return torch.cat([tensor, filler], dim=1)


def _pooled(compel: Any, text: str) -> Any:
    """The pooled embedding of the words (first window, no weights), as SDXL's pipeline makes it."""
    return compel.conditioning_provider.get_pooled_embeddings([text])


class _TextualInversions:
    """Expands a multi-vector textual inversion's word into its tokens, for one tokenizer.

    compel's own DiffusersTextualInversionManager always uses `pipe.tokenizer`, which gives
    SDXL's second tokenizer the first one's token ids.
    """

    def __init__(self, pipe: Any, tokenizer: Any) -> None:
        self.pipe = pipe
        self.tokenizer = tokenizer

    def expand_textual_inversion_token_ids_if_necessary(self, token_ids: list[int]) -> list[int]:
        if not token_ids:
            return token_ids
        text = self.pipe.maybe_convert_prompt(self.tokenizer.decode(token_ids), self.tokenizer)
        return list(self.tokenizer.encode(text, add_special_tokens=False))
