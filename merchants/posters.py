"""Printable channel posters (PNG and PDF) rendered with Pillow.

The QR on the poster is the contact way's own ``qr_code`` image, downloaded and pasted as
is: that is WeCom's hosted "contact me" code, and re-encoding it ourselves could only drift
from what WeCom routes. Chinese text needs a CJK font; we look in the usual Debian places
(``fonts-noto-cjk``, ``fonts-wqy-microhei``) and fail loudly rather than print tofu boxes.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import httpx
from PIL import Image, ImageDraw, ImageFont

DPI = 300

# name -> (width mm, height mm)
SIZES_MM: dict[str, tuple[int, int]] = {
    "a5": (148, 210),  # door poster, flyer
    "tent": (100, 140),  # table tent (桌贴/台卡)
}

# Bold first for the title; any one of them is enough.
FONT_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
)
BOLD_CANDIDATES = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Bold.ttc",
)

BRAND = (214, 64, 39)  # warm red, reads well printed
INK = (34, 34, 34)
MUTED = (110, 110, 110)
PAPER = (255, 255, 255)
CREAM = (255, 243, 224)


class PosterError(Exception):
    """Poster cannot be produced (no CJK font, QR image unreachable); message is Chinese."""


def size_px(size: str) -> tuple[int, int]:
    if size not in SIZES_MM:
        raise ValueError(f"unknown poster size {size!r}")
    w, h = SIZES_MM[size]
    return round(w / 25.4 * DPI), round(h / 25.4 * DPI)


def find_cjk_font(candidates=FONT_CANDIDATES) -> Path:
    """``LINLI_POSTER_FONT`` if set, else the first known CJK font on this machine."""
    env = os.environ.get("LINLI_POSTER_FONT")
    paths = ([env] if env else []) + list(candidates)
    for p in paths:
        if p and Path(p).is_file():
            return Path(p)
    raise PosterError(
        "找不到中文字体，无法生成海报。请安装 fonts-noto-cjk（apt-get install fonts-noto-cjk）"
        "或 fonts-wqy-microhei，或用环境变量 LINLI_POSTER_FONT 指向一个中文字体文件。"
    )


def _sc_index(path: Path) -> int:
    """In a Noto CJK collection pick the Simplified Chinese face (glyph shapes differ by region)."""
    if path.suffix.lower() != ".ttc":
        return 0
    for index in range(10):
        try:
            family = ImageFont.truetype(str(path), 20, index=index).getname()[0]
        except OSError:
            break
        if " SC" in family:
            return index
    return 0


@lru_cache(maxsize=64)
def load_font(px: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    path = None
    if bold:
        path = next((Path(p) for p in BOLD_CANDIDATES if Path(p).is_file()), None)
    path = path or find_cjk_font()
    return ImageFont.truetype(str(path), px, index=_sc_index(path))


def fetch_qr(url: str, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None) -> Image.Image:
    """Download the contact way's hosted QR image."""
    try:
        with httpx.Client(timeout=timeout, transport=transport, follow_redirects=True) as http:
            resp = http.get(url)
            resp.raise_for_status()
        img = Image.open(io.BytesIO(resp.content))
        img.load()
    except (httpx.HTTPError, OSError) as exc:
        raise PosterError(f"二维码图片下载失败，请稍后再试（{exc.__class__.__name__}）。") from exc
    return img.convert("RGB")


@dataclass
class PosterContent:
    store_name: str
    cuisines: list[str]  # Chinese labels
    offer_text: str  # the welcome offer, e.g. "添加店长企业微信 立领满100减20券"
    headline: str = "扫码加店长微信"
    footer: str = "微信扫一扫 · 添加门店企业微信 · 邻里"


_NO_LINE_START = set("，。、；：！？）》」』”’,.;:!?)")


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, max_width: int, max_lines: int) -> list[str]:
    """Greedy wrap by character (Chinese has no spaces); ellipsis past ``max_lines``."""
    lines: list[str] = []
    for para in text.splitlines() or [""]:
        line = ""
        for ch in para:
            # closing punctuation never starts a line (it hangs at the end instead)
            if draw.textlength(line + ch, font=font) <= max_width or (line and ch in _NO_LINE_START):
                line += ch
            else:
                lines.append(line)
                line = ch
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + "…", font=font) > max_width:
            last = last[:-1]
        lines[-1] = last + "…"
    return lines


def _fit_font(draw, text: str, max_width: int, start_px: int, min_px: int, bold: bool):
    px = start_px
    while px > min_px and draw.textlength(text, font=load_font(px, bold)) > max_width:
        px -= 4
    return load_font(px, bold)


def _name_lines(draw, name: str, max_width: int, u: float):
    """The store name as one line if it fits at a readable size, else wrapped onto two
    (an ellipsis past that): never wider than ``max_width``."""
    font = _fit_font(draw, name, max_width, int(9 * u), int(6 * u), bold=True)
    if draw.textlength(name, font=font) <= max_width:
        return [name], font
    for px in range(int(7 * u), int(4 * u) - 1, -4):
        font = load_font(px, True)
        lines = _wrap(draw, name, font, max_width, max_lines=2)
        # closing punctuation may hang past the width in ``_wrap``: that line must fit too
        if not lines[-1].endswith("…") and all(draw.textlength(li, font=font) <= max_width for li in lines):
            return lines, font
    # Too long even small: two lines with an ellipsis, room left for a hanging bracket.
    return _wrap(draw, name, font, max_width - font.size, max_lines=2), font


def _center(draw, y: int, text: str, font, fill, width: int) -> int:
    box = draw.textbbox((0, 0), text, font=font)
    draw.text(((width - (box[2] - box[0])) // 2 - box[0], y), text, font=font, fill=fill)
    return y + int(font.size * 1.3)


def render_poster(content: PosterContent, qr: Image.Image, size: str = "a5") -> Image.Image:
    """Lay out title band, cuisines, offer, QR and footer, scaled to the paper size."""
    W, H = size_px(size)
    u = W / 100  # layout unit: 1% of the width
    img = Image.new("RGB", (W, H), PAPER)
    d = ImageDraw.Draw(img)
    margin = int(6 * u)
    inner = W - 2 * margin

    # Title band: store name (shrunk to fit, else wrapped onto two lines), cuisines.
    band_h = int(H * 0.2)
    name_lines, name_font = _name_lines(d, content.store_name, inner, u)
    cuisine_font = load_font(int(4.2 * u))
    line_h = int(name_font.size * 1.3)
    text_h = line_h * len(name_lines) + (int(u) + int(cuisine_font.size * 1.3) if content.cuisines else 0)
    band_h = max(band_h, text_h + int(6 * u))
    d.rectangle([0, 0, W, band_h], fill=BRAND)
    y = (band_h - text_h) // 2
    for line in name_lines:
        y = _center(d, y, line, name_font, PAPER, W)
    if content.cuisines:
        cuisines = _wrap(d, " · ".join(content.cuisines), cuisine_font, inner, max_lines=1)[0]
        y = _center(d, y + int(u), cuisines, cuisine_font, CREAM, W)

    # Headline and offer.
    y = band_h + int(4 * u)
    y = _center(d, y, content.headline, load_font(int(6.5 * u), bold=True), INK, W)
    offer = content.offer_text.strip()
    if offer:
        offer_font = load_font(int(4.6 * u), bold=True)
        lines = _wrap(d, offer, offer_font, inner - int(6 * u), max_lines=3)
        line_h = int(offer_font.size * 1.35)
        box_top = y + int(u)
        box_bottom = box_top + line_h * len(lines) + int(3 * u)
        d.rounded_rectangle([margin, box_top, W - margin, box_bottom], radius=int(2.5 * u), fill=CREAM)
        ty = box_top + int(1.6 * u)
        for line in lines:
            _center(d, ty, line, offer_font, BRAND, W)
            ty += line_h
        y = box_bottom

    # QR: as large as fits; NEAREST keeps module edges sharp when enlarging.
    footer_font = load_font(int(3.4 * u))
    footer_h = int(footer_font.size * 2.6)
    avail_h = H - footer_h - y - int(6 * u)
    target = min(int(W * 0.62), avail_h)
    resample = Image.NEAREST if target >= qr.width else Image.LANCZOS
    scaled = qr.resize((target, round(qr.height * target / qr.width)), resample)
    qx = (W - scaled.width) // 2
    qy = y + (H - footer_h - y - scaled.height) // 2
    pad = int(1.5 * u)
    d.rounded_rectangle(
        [qx - pad, qy - pad, qx + scaled.width + pad, qy + scaled.height + pad],
        radius=int(2 * u), outline=BRAND, width=max(2, int(0.5 * u)), fill=PAPER,
    )
    img.paste(scaled, (qx, qy))

    # Footer.
    d.rectangle([0, H - footer_h, W, H], fill=CREAM)
    _center(d, H - footer_h + (footer_h - footer_font.size) // 2 - int(0.4 * u), content.footer, footer_font, MUTED, W)
    return img


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", dpi=(DPI, DPI))
    return buf.getvalue()


def to_pdf(img: Image.Image) -> bytes:
    """One page whose size is the paper size (pixels at 300 dpi → points)."""
    buf = io.BytesIO()
    img.save(buf, "PDF", resolution=float(DPI))
    return buf.getvalue()


def poster_bytes(content: PosterContent, qr: Image.Image, size: str, fmt: str) -> bytes:
    img = render_poster(content, qr, size)
    if fmt == "png":
        return to_png(img)
    if fmt == "pdf":
        return to_pdf(img)
    raise ValueError(f"unknown poster format {fmt!r}")
