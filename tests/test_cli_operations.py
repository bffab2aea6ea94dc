"""`imagine upscale | zoom | pan` on local files with the tiny model and the tiny upscaler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bots.cli import cli
from generator.png import encode_png, parameters_text, read_parameters
from generator.request import ImageRequest


@pytest.fixture(scope="module")
def env(tiny_model_dir: Path, tiny_upscaler: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> dict[str, str]:
    return {"IMAGINE_MODEL": str(tiny_model_dir), "IMAGINE_DEVICE": "cpu",
            "IMAGINE_TORCH_THREADS": "2", "IMAGINE_UPSCALER": str(tiny_upscaler),
            "IMAGINE_DEFAULT_STEPS": "2",
            "IMAGINE_DATA_DIR": str(tmp_path_factory.mktemp("data"))}


@pytest.fixture(scope="module")
def picture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64×64 PNG with a prompt in its metadata, as imagine writes them."""
    yy, xx = np.mgrid[:64, :64]
    pixels = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    request = ImageRequest(prompt="a lighthouse at dusk", width=64, height=64, seed=5)
    path = tmp_path_factory.mktemp("in") / "lighthouse.png"
    path.write_bytes(encode_png(Image.fromarray(pixels), parameters_text(request, 5, "tiny")))
    return path


def imagine(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def test_upscale_with_the_configured_upscaler(env, picture: Path, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "big.png"
    code, output = imagine(env, "upscale", str(picture), "-o", str(out))
    assert code == 0, output
    assert size(out) == (128, 128) and f"128×128, seed 5 → {out}" in output
    assert "Size: 128x128" in (read_parameters(out.read_bytes()) or "")


def test_zoom_and_pan_use_the_recorded_prompt_or_the_given_one(env, picture: Path,  # noqa: ANN001
                                                              tmp_path: Path) -> None:
    zoomed = tmp_path / "zoomed.png"
    code, output = imagine(env, "zoom", str(picture), "--factor", "1.5", "-o", str(zoomed))
    assert code == 0, output
    assert size(zoomed) == (96, 96)
    assert (read_parameters(zoomed.read_bytes()) or "").startswith("a lighthouse at dusk\n")
    with Image.open(zoomed) as result, Image.open(picture) as source:
        assert np.array_equal(np.asarray(result.convert("RGB"))[16:80, 16:80],
                              np.asarray(source.convert("RGB")))
    panned = tmp_path / "panned.png"
    code, output = imagine(env, "pan", str(picture), "--direction", "up", "--prompt",
                           "a lighthouse in fog --seed 9", "-o", str(panned))
    assert code == 0, output
    assert size(panned) == (64, 96) and "seed 9" in output


def test_bad_inputs_get_one_clear_line(env, tmp_path: Path) -> None:  # noqa: ANN001
    bare = tmp_path / "bare.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(bare)
    code, output = imagine(env, "pan", str(bare), "--direction", "left", "-o",
                           str(tmp_path / "out.png"))
    assert code == 1 and "has no prompt in its metadata" in output and "--prompt" in output
    code, output = imagine(env, "zoom", str(bare), "--factor", "3", "-o", str(tmp_path / "o.png"))
    assert code == 2 and "'3' is not one of '1.5', '2'" in output
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    code, output = imagine(env, "upscale", str(text), "-o", str(tmp_path / "o.png"))
    assert code == 1 and output.startswith("Error: ") and "Traceback" not in output
    assert not (tmp_path / "o.png").exists()


def test_the_tiny_upscaler_is_what_spandrel_detects(tiny_upscaler: Path) -> None:
    from spandrel import ModelLoader

    model = ModelLoader().load_from_file(tiny_upscaler)
    assert (model.architecture.id, model.purpose, model.scale) == ("Compact", "SR", 2)
