"""Reading posters back: the QR codes on a rendered poster (pyzbar needs Debian libzbar0)."""
from __future__ import annotations

from PIL import Image
from pyzbar.pyzbar import decode


def decode_qr(img: Image.Image) -> list[str]:
    return [r.data.decode() for r in decode(img.convert("L"))]
