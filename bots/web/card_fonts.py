"""Fonts for the prompt URL's image cards (bots/web/placeholder.py) in any language (#16).

Pillow's default font draws Latin only: Chinese text comes out as boxes. A card whose text
needs other glyphs is drawn with a CJK-capable TrueType font of the system (Noto CJK,
WenQuanYi, Droid Sans Fallback: they cover Cyrillic and Greek too); a server without one
answers non-Latin-script browsers in English instead (`card_locale`), so no one sees boxes.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path

from PIL import ImageFont

CARD_FONT_SIZE = 12
# Where distributions install CJK fonts, for systems without fontconfig's fc-list.
COMMON_PATHS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "C:/Windows/Fonts/msyh.ttc",
)
# Languages written in Latin script: the default font draws them.
LATIN_LANGUAGES = frozenset(
    "af ca cs cy da de en es et eu fi fr ga gl hr hu id is it lt lv ms mt nl no nb nn pl pt "
    "ro sk sl sq sv sw tr vi".split())
# The first code point the default font cannot draw (past Latin Extended-B and IPA).
_LATIN_END = 0x2B0


@functools.lru_cache(maxsize=1)
def cjk_font_path() -> str | None:
    """A TrueType/OpenType font of this system with CJK glyphs, or None."""
    if shutil.which("fc-list"):
        try:  # fonts that contain 中 (U+4E2D), as fontconfig knows them
            listed = subprocess.run(["fc-list", ":charset=4e2d", "file"], capture_output=True,
                                    text=True, timeout=10, check=False).stdout
        except (OSError, subprocess.SubprocessError):
            listed = ""
        for line in sorted(listed.splitlines()):
            path = line.strip().rstrip(":").strip()
            if path.lower().endswith((".ttf", ".ttc", ".otf")) and Path(path).is_file():
                return path
    return next((path for path in COMMON_PATHS if Path(path).is_file()), None)


def needs_wide_font(text: str) -> bool:
    """True when `text` has characters the default font cannot draw (CJK, Cyrillic, …)."""
    return any(ord(char) >= _LATIN_END and not 0x2000 <= ord(char) < 0x2070 for char in text)


def card_font(text: str) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, bool]:
    """The font to draw `text` with, and whether it is the wide (CJK) one."""
    path = cjk_font_path() if needs_wide_font(text) else None
    if path is None:
        return ImageFont.load_default(), False
    return ImageFont.truetype(path, CARD_FONT_SIZE), True


def card_locale(locale: str | None) -> str | None:
    """The locale to write image cards in: `locale` when it is Latin-script or the system has
    a CJK font to draw it with, else None (English)."""
    if locale is None or locale.partition("_")[0].lower() in LATIN_LANGUAGES:
        return locale
    return locale if cjk_font_path() else None
