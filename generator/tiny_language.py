"""Tiny translation and enhancement models with random weights and real configs (#16).

Like generator/tiny_model.py: no machine of this project can download a model, so tests,
the bench and `imagine model tiny DIR` use these, built offline from the real transformers
classes, saved with `save_pretrained` and read back by the same `from_pretrained` calls as
a real model (generator/translate.py, generator/enhance.py):

- DIR/translate: a MarianMT (the architecture of Helsinki-NLP/opus-mt-zh-en), its tokenizer
  a BPE trained here on a few lines of Chinese and English (saved as a fast tokenizer,
  which AutoTokenizer reads without SentencePiece .spm files);
- DIR/enhance: a Qwen2 causal LM with a byte-level BPE trained the same way and a ChatML
  chat template, the format of Qwen2.5-Instruct's.

Their output is random text, but it goes through every step a real model's does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRANSLATE_FOLDER = "translate"
ENHANCE_FOLDER = "enhance"
_VOCAB_SIZE = 384
_SUFFIX = "</w>"
_BYTE_VOCAB_SIZE = 1024  # the alphabet of 256 bytes, then every merge the corpus has

# Training text for the tokenizers: enough to give both scripts merges of their own.
_CORPUS = [
    "一只猫坐在窗台上，阳光明媚", "山上的日落，油画风格", "雨中的城市街道，霓虹灯",
    "a cat sitting on a windowsill in the sun", "a sunset over the mountains, oil painting",
    "a city street in the rain with neon lights", "a detailed portrait of an old sailor",
    "ein Hund im Park", "un chat sur un tapis", "山の上の城", "바다 위의 배",
]
_SPECIALS = ["<pad>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>"]
# Qwen2.5-Instruct's chat format (ChatML), without its tool-calling branches.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_tiny_language_models(dir: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """DIR/translate and DIR/enhance (IMAGINE_TRANSLATE_MODEL, IMAGINE_ENHANCE_MODEL)."""
    return (build_tiny_translator(dir / TRANSLATE_FOLDER, seed=seed),
            build_tiny_enhancer(dir / ENHANCE_FOLDER, seed=seed))


def build_tiny_translator(folder: Path, *, seed: int = 0) -> Path:
    """A tiny MarianMT and its tokenizer in `folder`."""
    import torch  # noqa: PLC0415 - torch only when a model is built
    from transformers import MarianConfig, MarianMTModel  # noqa: PLC0415

    tokenizer = _tokenizer(pad="<pad>", eos="</s>", unk="<unk>")
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id,
        forced_eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MarianMTModel(config)
    _save(model, tokenizer, folder)
    return folder


def build_tiny_enhancer(folder: Path, *, seed: int = 0) -> Path:
    """A tiny Qwen2 causal LM, its tokenizer and chat template in `folder`."""
    import torch  # noqa: PLC0415
    from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: PLC0415

    tokenizer = _tokenizer(pad="<pad>", eos="<|im_end|>", unk="<unk>", byte_level=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        # The system prompt alone is hundreds of byte-level tokens.
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|im_start|>"),
        tie_word_embeddings=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    _save(model, tokenizer, folder)
    return folder


def _tokenizer(*, pad: str, eos: str, unk: str, byte_level: bool = False) -> Any:
    """A BPE trained on _CORPUS. Marian's: words and CJK characters apart (BERT's
    pre-tokenizer), so random output decodes to readable words. Qwen2's: byte-level, as
    transformers' Qwen2Tokenizer rebuilds it whatever the file says (any text encodes)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers  # noqa: PLC0415, I001
    from transformers import PreTrainedTokenizerFast  # noqa: PLC0415

    if byte_level:
        core = Tokenizer(models.BPE())
        core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        core.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=_BYTE_VOCAB_SIZE, special_tokens=_SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    else:
        core = Tokenizer(models.BPE(unk_token=unk, end_of_word_suffix=_SUFFIX))
        core.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=False)
        core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        core.decoder = decoders.BPEDecoder(suffix=_SUFFIX)
        trainer = trainers.BpeTrainer(vocab_size=_VOCAB_SIZE, special_tokens=_SPECIALS,
                                      end_of_word_suffix=_SUFFIX, show_progress=False)
    core.train_from_iterator(_CORPUS, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=pad, eos_token=eos,
                                   unk_token=unk, model_max_length=2048)


def _save(model: Any, tokenizer: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
