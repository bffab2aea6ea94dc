"""Textual-inversion embeddings on the real tiny pipeline: loaded when named, once, and a file
that does not fit is a clear error after which the pipeline draws as before."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from generator.errors import GenerationError
from generator.library import embedding_files

SIZE = 64
STEPS = 2


@pytest.fixture
def pipe(tiny_model_dir: Path, one_torch_thread: None) -> Any:
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(tiny_model_dir)


def _draw(pipe: Any, prompt: str, negative: str | None = None) -> str:
    import torch

    image = pipe(prompt, negative_prompt=negative, width=SIZE, height=SIZE,
                 num_inference_steps=STEPS, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(3)).images[0]
    return hashlib.sha256(image.tobytes()).hexdigest()


def test_an_embedding_named_in_the_prompt_changes_the_image(pipe: Any, tiny_embeddings_dir: Path) -> None:
    from generator import embeddings

    files = embedding_files(tiny_embeddings_dir)
    plain = _draw(pipe, "a red fox")
    as_text = _draw(pipe, "a red fox, tiny-token")
    embeddings.ensure_loaded(pipe, files, ["a red fox, tiny-token", ""])
    assert "tiny-token" in pipe.tokenizer.added_tokens_encoder
    assert _draw(pipe, "a red fox, tiny-token") != as_text
    # Every other prompt draws exactly what it drew before.
    assert _draw(pipe, "a red fox") == plain


def test_in_the_negative_prompt_too(pipe: Any, tiny_embeddings_dir: Path) -> None:
    from generator import embeddings

    files = embedding_files(tiny_embeddings_dir)
    as_text = _draw(pipe, "a red fox", "tiny-token")
    embeddings.ensure_loaded(pipe, files, ["a red fox", "(tiny-token:1.2), blurry"])
    assert _draw(pipe, "a red fox", "tiny-token") not in (as_text, _draw(pipe, "a red fox"))


def test_only_named_embeddings_are_loaded_and_only_once(pipe: Any, tiny_embeddings_dir: Path) -> None:
    from generator import embeddings

    files = embedding_files(tiny_embeddings_dir)
    before = len(pipe.tokenizer)
    embeddings.ensure_loaded(pipe, files, ["tiny-tokens everywhere", "my_tiny-token", ""])
    assert len(pipe.tokenizer) == before
    embeddings.ensure_loaded(pipe, files, ["TINY-TOKEN"])
    embeddings.ensure_loaded(pipe, files, ["tiny-token again"])
    # Two vectors: the token and tiny-token_1.
    assert len(pipe.tokenizer) == before + 2
    assert embeddings.used_in(files, ["x", "a tiny-token."]) == ["tiny-token"]


def test_an_embedding_that_does_not_fit_is_a_clear_error(pipe: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from generator import embeddings

    save_file({"emb_params": torch.ones(1, 48)}, str(tmp_path / "wide-one.safetensors"))
    torch.save({"string_to_param": {"*": torch.ones(3, 32)}, "name": "ok"}, tmp_path / "pt-one.pt")
    (tmp_path / "junk-one.bin").write_bytes(b"junk")
    save_file({"emb_params": torch.ones(1, 32)}, str(tmp_path / "cat.safetensors"))
    files = embedding_files(tmp_path)
    plain = _draw(pipe, "a wide-one cat")
    with pytest.raises(GenerationError, match=r"^Embedding wide-one does not fit model tiny: "
                                              r"its vectors are not 32 wide"):
        embeddings.ensure_loaded(pipe, files, ["a wide-one"])
    with pytest.raises(GenerationError, match=r"^Embedding junk-one \(junk-one.bin\) could not be loaded"):
        embeddings.ensure_loaded(pipe, files, ["junk-one"])
    with pytest.raises(GenerationError, match=r"^Embedding cat cannot be used: 'cat' is already a token"):
        embeddings.ensure_loaded(pipe, files, ["a cat"])
    assert _draw(pipe, "a wide-one cat") == plain
    # An A1111 .pt embedding loads (three vectors).
    embeddings.ensure_loaded(pipe, files, ["pt-one"])
    assert "pt-one_2" in pipe.tokenizer.added_tokens_encoder


def test_a_name_with_capitals_is_found_in_any_case(pipe: Any, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from generator import embeddings

    save_file({"emb_params": torch.ones(2, 32)}, str(tmp_path / "EasyNeg.safetensors"))
    embeddings.ensure_loaded(pipe, embedding_files(tmp_path), ["", "blurry, EasyNeg"])
    ids = pipe.tokenizer(pipe.maybe_convert_prompt("a easyneg cat", pipe.tokenizer)).input_ids
    added = pipe.tokenizer.added_tokens_encoder
    assert added["easyneg"] in ids and added["easyneg_1"] in ids
    assert added["easyneg"] in pipe.tokenizer("a EasyNeg cat").input_ids
