"""Money is integer fen everywhere; these are the only places it becomes text or comes from it."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from flask_babel import lazy_gettext as _l

from core.errors import Invalid

MAX_YUAN = Decimal(1_000_000)


def yuan(fen: int | None) -> str:
    """12345 -> '123.45', 2000 -> '20' (display only; never parse this back)."""
    if fen is None:
        return ""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), 100)
    return f"{sign}{whole}" if cents == 0 else f"{sign}{whole}.{cents:02d}"


def fen_to_yuan(fen: int | None) -> str:
    """12345 -> '123.45', 2000 -> '20.00': always two decimals (form values, exports)."""
    fen = int(fen or 0)
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def parse_yuan(text: str | int | Decimal, field: str | None = None) -> int:
    """'58', '58.5', '¥58.50' -> fen, never through floats. Raises ``Invalid`` with a message
    for the person typing it."""
    cleaned = str(text if text is not None else "").strip().replace("¥", "").replace("￥", "").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise Invalid(_l("请输入金额，例如 58 或 58.50。"), field) from None
    if not value.is_finite():  # NaN, Infinity
        raise Invalid(_l("请输入金额，例如 58 或 58.50。"), field)
    if value < 0:
        raise Invalid(_l("金额不能为负数。"), field)
    if value > MAX_YUAN:  # before quantize: 1e400 has no two-decimal form (InvalidOperation)
        raise Invalid(_l("金额过大。"), field)
    if value != value.quantize(Decimal("0.01")):
        raise Invalid(_l("金额最多两位小数。"), field)
    return int(value * 100)
