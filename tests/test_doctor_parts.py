"""Parts of the doctor this machine cannot show end to end: GPU memory against the model's
size (torch's CUDA API stubbed: there is no GPU here; our code runs as it is), the models of
IMAGINE_MODELS (hub ids not in the cache, a folder that is not a model, a checkpoint), and
the human report's shape."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bots.doctor import report, system
from bots.doctor.system import _cuda_memory, check_models, model_weights_bytes
from settings import Settings

MB = 1024 ** 2


def fake_cuda(free: int, total: int = 80 * 1024 * MB, count: int = 1) -> SimpleNamespace:
    """The four calls of torch.cuda the check makes, as torch answers them on a GPU host."""
    cuda = SimpleNamespace(device_count=lambda: count,
                           get_device_properties=lambda i: SimpleNamespace(name="H100"),
                           mem_get_info=lambda i: (free, total))
    return SimpleNamespace(cuda=cuda)


def test_gpu_memory_against_the_model_weights(settings: Settings) -> None:
    weights = model_weights_bytes(settings)  # the tiny model: a few MB of safetensors
    assert 1 * MB < weights < 100 * MB
    assert _cuda_memory(fake_cuda(free=10 * weights), settings).status == "ok"
    tight = _cuda_memory(fake_cuda(free=int(weights * 1.2)), settings)
    assert tight.status == "warn" and "IMAGINE_MAX_BATCH" in tight.fix
    full = _cuda_memory(fake_cuda(free=weights // 2), settings)
    assert full.status == "fail" and "does not fit" in full.detail
    other = Settings(_env_file=None, **{**settings.model_dump(), "device": "cuda:3"})  # type: ignore[call-arg]
    wrong = _cuda_memory(fake_cuda(free=10 * weights, count=2), other)
    assert wrong.status == "fail" and "cuda:0 to cuda:1" in wrong.fix


def test_each_catalogue_model_is_checked(settings: Settings, tiny_model_dir: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    checkpoint = tmp_path / "model.safetensors"
    header = json.dumps({"__metadata__": {}}).encode()
    checkpoint.write_bytes(len(header).to_bytes(8, "little") + header)
    (tmp_path / "empty").mkdir()
    models = {"tiny": str(tiny_model_dir), "hub": "someone/not-in-the-cache",
              "file": str(checkpoint), "empty": str(tmp_path / "empty"),
              "broken": str(tmp_path / "broken.safetensors")}
    (tmp_path / "broken.safetensors").write_bytes(b"\xff" * 4)
    configured = Settings(_env_file=None, **{**settings.model_dump(), "models": models})  # type: ignore[call-arg]
    checks = {c.name: c for c in check_models(configured)}
    assert checks["model default"].status == "ok"
    assert checks["model tiny"].status == "ok"
    assert checks["model hub"].status == "fail"  # HF_HUB_OFFLINE=1 in the tests
    assert "hf download someone/not-in-the-cache" in checks["model hub"].fix
    assert checks["model file"].status == "warn" and "model.config" in checks["model file"].fix
    assert checks["model empty"].status == "fail" and "model_index.json" in checks["model empty"].detail
    assert checks["model broken"].status == "fail"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    online = {c.name: c for c in check_models(configured)}
    assert online["model hub"].status == "warn"
    assert "does not reach the hub" in online["model hub"].detail


def test_text_report_and_exit_code() -> None:
    checks = [report.ok("a", "fine"), report.warn("bb", "hmm", "do x"),
              report.fail("c", "broken", "do y"), report.skipped("d", "off")]
    lines = report.as_text(checks).splitlines()
    assert lines[0].startswith("ok    a ")
    assert lines[2].strip() == "fix: do x" and lines[4].strip() == "fix: do y"
    assert lines[-1] == "4 checks: 1 failed, 1 warnings"
    assert report.exit_code(checks) == 1 and report.exit_code(checks[:2]) == 0
    assert json.loads(report.as_json(checks[3:])) == {
        "checks": [{"name": "d", "status": "skipped", "detail": "off", "fix": ""}]}
    assert system.check_python().status == "ok"


def test_storage_in_a_bucket_and_the_embedded_redis(imagine_env: dict[str, str],
                                                    s3_env: dict[str, str]) -> None:
    from bots.doctor.services import check_redis, check_storage

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    bucket = check_storage(settings, min_free_gb=1.0)
    assert bucket.status == "ok" and s3_env["IMAGINE_STORAGE_URL"].split("/")[2] in bucket.detail
    missing = Settings(_env_file=None, **{**settings.model_dump(),  # type: ignore[call-arg]
                                          "storage_url": "s3://no-such-bucket/images"})
    refused = check_storage(missing, min_free_gb=1.0)
    assert refused.status == "fail" and "no-such-bucket" in refused.detail
    embedded = Settings(_env_file=None, **{**settings.model_dump(), "redis_url": None})  # type: ignore[call-arg]
    answer = check_redis(embedded)  # nothing runs there yet: `imagine up` would start one
    assert answer.status == "ok" and "embedded Redis" in answer.detail
