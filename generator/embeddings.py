"""Textual-inversion embeddings from IMAGINE_EMBEDDINGS_DIR, loaded when a prompt names them.

An embedding becomes a new token of the pipeline's tokenizer (and rows of its text encoder's
input embeddings), named like its file: writing `easynegative` in a prompt or negative
prompt then means what the embedding learned. A token added once stays for the worker's
life and changes nothing for prompts that do not contain it, so only embeddings a prompt
names are loaded, on first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from generator.errors import GenerationError, first_line
from generator.library import model_label
from settings.i18n import _

# SDXL embeddings hold one tensor per text encoder under these keys.
SDXL_KEYS: tuple[str, str] = ("clip_l", "clip_g")


def ensure_loaded(pipe: Any, files: Mapping[str, Path], texts: Sequence[str]) -> None:
    """Load into `pipe` every embedding of `files` whose name is a word of one of `texts`
    (not yet loaded ones only). A file that does not fit raises GenerationError."""
    for name in used_in(files, texts):
        _load(pipe, name, Path(files[name]))


def used_in(files: Mapping[str, Path], texts: Sequence[str]) -> list[str]:
    """The embedding names of `files` that appear as a word in `texts`."""
    return [name for name in files if any(_names(name, text) for text in texts if text)]


def _names(name: str, text: str) -> bool:
    # A word of its own: CLIP's tokenizer ignores case, and a hyphen or underscore next to
    # the name makes it part of a longer word.
    return re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE) is not None


def _load(pipe: Any, name: str, path: Path) -> None:
    pairs = _encoder_pairs(pipe, name)
    if all(_has_token(tokenizer, name) for _encoder, tokenizer in pairs):
        return
    if len(pairs) == 1:
        _add(pipe, name, path, str(path), *pairs[0])
        return
    # SDXL: the file holds a tensor for each of the two text encoders.
    state = _read_state(name, path)
    missing = [key for key in SDXL_KEYS if key not in state]
    if missing:
        raise GenerationError(
            _("Embedding {name} does not fit model {model_label}: it has no {missing} tensor "
              "(it was made for SD 1.x/2.x; SDXL needs clip_l and clip_g)").format(
                name=name, model_label=model_label(pipe), missing=missing[0]))
    widths = [encoder.get_input_embeddings().weight.shape[-1] for encoder, _tokenizer in pairs]
    if any(state[key].shape[-1] != width for key, width in zip(SDXL_KEYS, widths, strict=True)):
        # Checked for both first, so that a misfit leaves neither tokenizer changed.
        raise GenerationError(
            _("Embedding {name} does not fit model {model_label}: its vectors are not {widths} "
              "and {widths2} wide (it was made for another base model)").format(
                name=name, model_label=model_label(pipe), widths=widths[0], widths2=widths[1]))
    for key, (encoder, tokenizer) in zip(SDXL_KEYS, pairs, strict=True):
        _add(pipe, name, path, state[key], encoder, tokenizer)


def _encoder_pairs(pipe: Any, name: str) -> list[tuple[Any, Any]]:
    if not hasattr(pipe, "load_textual_inversion") or getattr(pipe, "tokenizer", None) is None:
        raise GenerationError(
            _("Model {model_label} takes no textual-inversion embeddings; leave {name} out of "
              "the prompt").format(model_label=model_label(pipe), name=name))
    pairs = [(pipe.text_encoder, pipe.tokenizer)]
    if getattr(pipe, "text_encoder_2", None) is not None and getattr(pipe, "tokenizer_2", None) is not None:
        pairs.append((pipe.text_encoder_2, pipe.tokenizer_2))
    return pairs


def _has_token(tokenizer: Any, name: str) -> bool:
    return _token(tokenizer, name) in tokenizer.added_tokens_encoder


def _token(tokenizer: Any, name: str) -> str:
    # CLIP's tokenizer lowercases the prompt before it looks for added tokens: a token with
    # capitals still matches, but diffusers' expansion of a multi-vector embedding
    # (maybe_convert_prompt) compares the lowercased text with the token and misses it.
    if tokenizer.tokenize("Ab") == tokenizer.tokenize("ab"):
        return name.lower()
    return name


def _add(pipe: Any, name: str, path: Path, source: Any, encoder: Any, tokenizer: Any) -> None:
    if _has_token(tokenizer, name):
        return
    token = _token(tokenizer, name)
    if token in tokenizer.get_vocab():
        # diffusers refuses to redefine a token the tokenizer already has.
        raise GenerationError(
            _("Embedding {name} cannot be used: {name!r} is already a token of model "
              "{model_label}'s tokenizer; the operator renames the file (e.g. {name}-emb)").format(
                name=name, model_label=model_label(pipe)))
    width = encoder.get_input_embeddings().weight.shape[-1]
    try:
        pipe.load_textual_inversion(source, token=token, text_encoder=encoder, tokenizer=tokenizer)
    except (ValueError, RuntimeError, OSError, KeyError) as exc:
        if "incorrect shape" in str(exc):
            raise GenerationError(
                _("Embedding {name} does not fit model {model_label}: its vectors are not "
                  "{width} wide (it was made for another base model)").format(
                    name=name, model_label=model_label(pipe), width=width)) from exc
        raise GenerationError(_("Embedding {name} ({path_name}) could not be loaded: "
                                "{first_line}").format(
                                  name=name, path_name=path.name, first_line=first_line(exc))) from exc


def _read_state(name: str, path: Path) -> dict[str, Any]:
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        import torch

        return dict(torch.load(str(path), map_location="cpu", weights_only=True))
    except Exception as exc:
        raise GenerationError(_("Embedding {name} ({path_name}) could not be read: {first_line}").format(
                                  name=name, path_name=path.name, first_line=first_line(exc))) from exc
