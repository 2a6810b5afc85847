"""Checks on what a merchant types at enrolment: credit code, mobile number, money."""
from __future__ import annotations

import re
from decimal import Decimal

from flask_babel import lazy_gettext as _l

from core.errors import Invalid
from core.money import parse_yuan
from merchants.errors import ServiceError

# GB 32100-2015: 18 characters from 31 symbols (no I, O, Z, S, V); weights 3^i mod 31.
CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
CREDIT_CODE_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_CREDIT_CODE_RE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10}$")
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")


def credit_code_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code for its first 17."""
    total = sum(CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, CREDIT_CODE_WEIGHTS))
    return CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def validate_credit_code(code: str) -> str:
    """The normalised code (upper case, no spaces), or ServiceError if its form or check
    character is wrong."""
    normalised = re.sub(r"\s+", "", code or "").upper()
    if not _CREDIT_CODE_RE.match(normalised):
        raise ServiceError(_l("统一社会信用代码应为 18 位数字或大写字母（不含 I、O、Z、S、V）。"), "credit_code")
    if credit_code_check_char(normalised[:17]) != normalised[17]:
        raise ServiceError(_l("统一社会信用代码校验位不正确，请核对。"), "credit_code")
    return normalised


def validate_mobile(mobile: str) -> str:
    """A mainland mobile number (11 digits, 13x–19x); spaces, dashes and +86 are dropped."""
    digits = re.sub(r"[\s-]", "", mobile or "")
    if digits.startswith("+86"):
        digits = digits[3:]
    elif len(digits) == 13 and digits.startswith("86"):
        digits = digits[2:]
    if not MOBILE_RE.match(digits):
        raise ServiceError(_l("请输入 11 位中国大陆手机号。"), "contact_mobile")
    return digits


def yuan_to_fen(text: str | int | Decimal, field_name: str = "avg_spend") -> int:
    """``core.money.parse_yuan`` as a ``ServiceError`` on ``field_name``, so the portal's
    forms show it where the amount was typed."""
    try:
        return parse_yuan(text, field_name)
    except Invalid as exc:
        raise ServiceError(exc.message, exc.field) from None
