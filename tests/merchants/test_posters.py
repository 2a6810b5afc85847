"""Posters: paper sizes, Chinese glyphs (no tofu), and a QR that still decodes once printed."""
from __future__ import annotations

import io
import re

import pytest
import qrcode
from PIL import Image, ImageChops, ImageDraw

from merchants import posters
from merchants.posters import PosterContent, PosterError, find_cjk_font, load_font, poster_bytes
from tests.support.posters import decode_qr

SCAN_URL = "http://127.0.0.1:5001/phone/scan/cw_test_123"


@pytest.fixture
def qr_img() -> Image.Image:
    return qrcode.make(SCAN_URL).get_image().convert("RGB")


@pytest.fixture
def content() -> PosterContent:
    return PosterContent("老王川菜馆（和平里店）", ["川菜", "火锅"], "添加店长企业微信，立领满100减20元券")


def glyph(ch: str, px: int = 64) -> Image.Image:
    img = Image.new("L", (px * 2, px * 2), 0)
    ImageDraw.Draw(img).text((px // 2, px // 4), ch, font=load_font(px), fill=255)
    return img


def test_paper_sizes_at_300_dpi():
    assert posters.size_px("a5") == (1748, 2480)
    assert posters.size_px("tent") == (1181, 1654)
    with pytest.raises(ValueError):
        posters.size_px("a0")


def test_cjk_font_has_real_glyphs_not_notdef():
    """Each character of the store name must render as ink different from the .notdef box."""
    notdef = glyph("\U0010fffd")  # a private-use code point no font maps: draws .notdef
    for ch in "老王川菜馆邻里满减":
        g = glyph(ch)
        assert g.getbbox() is not None, ch
        assert ImageChops.difference(g, notdef).getbbox() is not None, f"{ch} renders as tofu"


def test_missing_font_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("LINLI_POSTER_FONT", raising=False)
    with pytest.raises(PosterError, match="fonts-noto-cjk"):
        find_cjk_font(candidates=("/nonexistent/font.ttc",))


@pytest.mark.parametrize("size", ["a5", "tent"])
def test_png_size_and_qr_decodes(content, qr_img, size):
    data = poster_bytes(content, qr_img, size, "png")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    assert img.size == posters.size_px(size)
    assert round(img.info["dpi"][0]) == 300
    assert decode_qr(img) == [SCAN_URL]


@pytest.mark.parametrize("size,mm", [("a5", (148, 210)), ("tent", (100, 140))])
def test_pdf_page_is_the_paper_size(content, qr_img, size, mm):
    data = poster_bytes(content, qr_img, size, "pdf")
    assert data.startswith(b"%PDF")
    box = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)\s*\]", data)
    assert box, "no MediaBox"
    w_mm, h_mm = (float(v) / 72 * 25.4 for v in box.groups())
    assert abs(w_mm - mm[0]) < 0.5 and abs(h_mm - mm[1]) < 0.5


def test_long_offer_text_wraps_without_error(qr_img):
    long = PosterContent("一家名字非常非常非常非常非常长的社区小馆子", ["粤菜"], "满减" * 300)
    img = posters.render_poster(long, qr_img, "tent")
    assert decode_qr(img) == [SCAN_URL]


def test_fetch_qr_over_http(qr_img):
    from tests.support.servers import LiveServer

    buf = io.BytesIO()
    qr_img.save(buf, "PNG")

    def qr_host(environ, start_response):
        if environ["PATH_INFO"] == "/qr/ok.png":
            start_response("200 OK", [("Content-Type", "image/png")])
            return [buf.getvalue()]
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [b"down"]

    server = LiveServer(qr_host)
    try:
        assert posters.fetch_qr(f"{server.url}/qr/ok.png").size == qr_img.size
        with pytest.raises(PosterError, match="二维码"):
            posters.fetch_qr(f"{server.url}/qr/broken.png")
    finally:
        server.stop()
    with pytest.raises(PosterError, match="二维码"):
        posters.fetch_qr("http://127.0.0.1:9/qr/nothing-listens.png", timeout=1)
