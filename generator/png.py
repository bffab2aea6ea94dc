"""PNG bytes with the generation parameters inside, the way A1111-compatible tools read them.

Pure Pillow (no torch): bots and the web server import this to read metadata back, and recall
(bots/recall.py) splits the text of any A1111-style PNG with `text_chunks` and
`parse_parameters` (or of a JPEG or WebP, where A1111 writes it into EXIF: `exif_comment`).
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import PurePath

from PIL import Image, PngImagePlugin

from generator.request import SAMPLER_LABELS, ImageRequest

PARAMETERS_KEY = "parameters"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# A parameters text is a few kilobytes; a compressed chunk is never inflated beyond this.
TEXT_LIMIT = 1024 * 1024
# A1111's own pattern for one settings entry: `Key: value` or `Key: "quoted, value"`.
_ENTRY = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')

# Settings-line keys beyond A1111's own, written for every mode but txt2img so that recall
# (bots/recall.py) can run the operation again: A1111 names the strength this way, the rest
# are ours. The hashes are storage names (sha256[:32] of the source's and mask's PNG bytes).
STRENGTH = "Denoising strength"
OPERATION = "Operation"
UPSCALE_FACTOR = "Upscale factor"
ZOOM_FACTOR = "Zoom factor"
PAN = "Pan"
SOURCE_IMAGE = "Source image"
MASK_IMAGE = "Mask image"
# A ControlNet's kind, conditioning scale and control image (a storage name), ours too.
CONTROLNET = "ControlNet"
CONTROL_WEIGHT = "Control weight"
CONTROL_IMAGE = "Control image"
# What the user wrote when the prompt drawn differs (#16: translated into English, or
# expanded by --enhance), the language it was detected in, and whether it was enhanced.
ORIGINAL_PROMPT = "Original prompt"
ORIGINAL_NEGATIVE = "Original negative prompt"
PROMPT_LANGUAGE = "Prompt language"
ENHANCED = "Enhanced"


def parameters_text(
    request: ImageRequest, seed: int, model_label: str, *, sampler_label: str | None = None
) -> str:
    """A1111's `parameters` text: prompt, optional negative prompt, then one settings line.

    `sampler_label` overrides the usual label when the worker ran a substitute sampler.
    """
    label = sampler_label or SAMPLER_LABELS.get(request.sampler, request.sampler)
    settings = [
        f"Steps: {request.num_inference_steps}",
        f"Sampler: {label}",
        f"CFG scale: {request.guidance_scale}",
        f"Seed: {seed}",
        f"Size: {request.width}x{request.height}",
        f"Model: {model_label}",
    ]
    if request.control is not None:
        settings += [f"{CONTROLNET}: {request.control}",
                     f"{CONTROL_WEIGHT}: {number(request.control_weight)}",
                     f"{CONTROL_IMAGE}: {request.control_image}"]
    if request.mode != "txt2img":
        settings.append(f"{STRENGTH}: {request.strength}")
        settings.extend(operation_entries(request))
    # A1111 keeps a prompt's LoRAs in it as <lora:name:weight>; other tools read them there.
    lines = [" ".join([request.prompt, *(f"<lora:{lora.name}:{number(lora.weight)}>"
                                         for lora in request.loras)])]
    if request.negative_prompt:
        lines.append(f"Negative prompt: {request.negative_prompt}")
    lines.append(", ".join(settings))
    return "\n".join(lines)


def with_entries(parameters: str, entries: list[str]) -> str:
    """`parameters` with `entries` added to its settings line (its last line)."""
    return ", ".join([parameters, *entries]) if entries else parameters


def quoted(value: str) -> str:
    """A settings value as A1111 quotes one holding commas or quotes (JSON string syntax),
    which parse_parameters unquotes."""
    return json.dumps(value, ensure_ascii=False)


def operation_entries(request: ImageRequest) -> list[str]:
    """What an image operation's settings line adds: the mode, its factor or direction, and
    the hashes of the images it started from."""
    entries = [f"{OPERATION}: {request.mode}"]
    if request.factor is not None:
        key = ZOOM_FACTOR if request.mode == "zoom_out" else UPSCALE_FACTOR
        entries.append(f"{key}: {request.factor:g}")
    if request.direction is not None:
        entries.append(f"{PAN}: {request.direction}")
    entries.append(f"{SOURCE_IMAGE}: {request.source_image}")
    if request.mask_image is not None:
        entries.append(f"{MASK_IMAGE}: {request.mask_image}")
    return entries


def number(value: float) -> str:
    """A float as short as it reads back exactly: 1.0 → "1", 0.8 → "0.8"."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def model_label(source: str) -> str:
    """The name A1111-style metadata gives a model: a file's stem or a repo's (folder's) name."""
    # The worker labels its models with this too, so a label read back matches.
    path = PurePath(source.rstrip("/\\"))
    return path.stem if path.suffix in (".safetensors", ".ckpt") else path.name


def encode_png(image: Image.Image, parameters: str) -> bytes:
    """PNG bytes with a `parameters` text chunk; the same image and text give the same bytes."""
    info = PngImagePlugin.PngInfo()
    # Pillow writes tEXt for Latin-1 text and falls back to iTXt (UTF-8) otherwise, which is
    # what A1111 does for prompts with emoji or CJK. Pillow adds no timestamp chunk.
    info.add_text(PARAMETERS_KEY, parameters)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def read_parameters(png_bytes: bytes) -> str | None:
    """The `parameters` text of a PNG, or None when there is none or the bytes are not a PNG."""
    try:
        with Image.open(io.BytesIO(png_bytes)) as image:
            if image.format != "PNG":
                return None
            text = getattr(image, "text", {})
            value = text.get(PARAMETERS_KEY)
    except (OSError, ValueError, SyntaxError):
        return None
    return value if isinstance(value, str) else None


# --- reading back (bots/recall.py) --------------------------------------------------


@dataclass(frozen=True)
class Parameters:
    """An A1111 `parameters` text split up: prompt, negative prompt, the settings entries."""

    prompt: str
    negative_prompt: str
    entries: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        shown: dict[str, object] = {"Prompt": self.prompt}
        if self.negative_prompt:
            shown["Negative prompt"] = self.negative_prompt
        return {**shown, **self.entries}


def parse_parameters(text: str) -> Parameters:
    """Split A1111 `parameters` text the way A1111 does: the last line is the settings line
    when it holds at least three entries; the lines before are the prompt, up to a line
    starting `Negative prompt:`, which begins the negative prompt."""
    *lines, last = text.strip().split("\n")
    entries_line = ""
    if len(_ENTRY.findall(last)) >= 3:
        entries_line = last
    else:
        lines.append(last)
    prompt: list[str] = []
    negative: list[str] | None = None
    for line in (line.strip() for line in lines):
        if negative is None and line.startswith("Negative prompt:"):
            negative = [line.removeprefix("Negative prompt:").strip()]
        elif negative is not None:
            negative.append(line)
        else:
            prompt.append(line)
    entries = {key.strip(): _unquote(value.strip()) for key, value in _ENTRY.findall(entries_line)}
    return Parameters("\n".join(prompt).strip(), "\n".join(negative or []).strip(), entries)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            unquoted = json.loads(value)
        except ValueError:
            return value
        return unquoted if isinstance(unquoted, str) else value
    return value


def text_chunks(data: bytes) -> dict[str, str]:
    """The text chunks of PNG bytes (tEXt, zTXt, iTXt, before or after the pixels), keyword →
    text, first one of each keyword; the pixels are never decoded, so a decompression bomb
    costs nothing. Damaged chunks are left out; bytes that are not a PNG give {}."""
    if not data.startswith(PNG_SIGNATURE):
        return {}
    texts: dict[str, str] = {}
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8:position + 8 + length]
        position += length + 12  # length, type, body, CRC
        if kind == b"IEND":
            break
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            keyword, _, rest = body.partition(b"\0")
            text = _chunk_text(kind, rest)
            name = keyword.decode("latin-1")
            if text is not None and name not in texts:
                texts[name] = text
    return texts


def _chunk_text(kind: bytes, rest: bytes) -> str | None:
    try:
        if kind == b"tEXt":
            return rest.decode("latin-1")
        if kind == b"zTXt":  # compression method byte, then zlib data
            return _inflate(rest[1:]).decode("latin-1")
        # iTXt: compressed flag, method, language tag NUL, translated keyword NUL, UTF-8.
        compressed = rest[0] == 1
        _language, _, rest = rest[2:].partition(b"\0")
        _translated, _, rest = rest.partition(b"\0")
        return (_inflate(rest) if compressed else rest).decode("utf-8")
    except (zlib.error, UnicodeDecodeError, IndexError, ValueError):
        return None  # a damaged chunk is as good as none


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    text = inflater.decompress(data, TEXT_LIMIT)
    if inflater.unconsumed_tail:
        raise ValueError("text chunk larger than TEXT_LIMIT")
    return text


# EXIF's UserComment starts with 8 bytes naming its character code; A1111 writes its
# parameters there (UNICODE, UTF-16) in the JPEG and WebP files it saves.
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286
_CHARACTER_CODES = {b"ASCII\0\0\0": "ascii", b"UNICODE\0": "utf-16", b"\0" * 8: "utf-8"}


def exif_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment of an opened image (read from the header, no pixels decoded)."""
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (OSError, ValueError, SyntaxError, KeyError, struct.error):
        return None
    if isinstance(raw, str):
        return raw or None
    if not isinstance(raw, bytes) or len(raw) <= 8:
        return None
    code, body = _CHARACTER_CODES.get(raw[:8]), raw[8:]
    if code == "utf-16" and not body.startswith((b"\xff\xfe", b"\xfe\xff")):
        # No byte-order mark: mostly-ASCII text shows its zero bytes on one side.
        code = "utf-16-be" if body[:1] == b"\0" else "utf-16-le"
    text = body.decode(code or "utf-8", errors="replace").rstrip("\0")
    return text or None
