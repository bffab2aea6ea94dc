"""What the grammar refuses before a job waits in line: prompt weights out of range and more
LoRAs than a job may stack (the worker would fail them only after the wait)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bots.errors import PromptError
from bots.grammar import parse, request_from_fields
from bots.limits import Limits
from generator.request import MAX_LORAS


def test_a_weight_out_of_range_is_refused_in_prompt_and_negative() -> None:
    for text in ("a (red:9) fox", "a fox --no (blur:4)"):
        with pytest.raises(PromptError, match=r"Prompt weight \d is not allowed: .*from 0 to 3"):
            parse(text, Limits())
    assert parse("a (red:1.3) [fox] ((snow))", Limits()).prompt == "a (red:1.3) [fox] ((snow))"


def test_more_loras_than_a_job_may_stack_are_refused(tmp_path: Path) -> None:
    for i in range(MAX_LORAS + 1):
        (tmp_path / f"style{i}.safetensors").write_bytes(b"")
    limits = Limits(lora_dir=tmp_path)
    names = ",".join(f"style{i}" for i in range(MAX_LORAS + 1))
    with pytest.raises(PromptError, match=f"{MAX_LORAS + 1} LoRAs given: .* at most {MAX_LORAS}"):
        request_from_fields({"prompt": "a fox", "lora": names}, limits)
    kept = ",".join(f"style{i}" for i in range(MAX_LORAS))
    assert len(request_from_fields({"prompt": "a fox", "lora": kept}, limits).loras) == MAX_LORAS
