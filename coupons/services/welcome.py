"""A store's welcome settings: the text new contacts receive and the coupon template handed
to them. A coupons concern (it names a template); the store row only holds the choice."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Invalid, NotFound
from coupons.models import CouponTemplate
from coupons.services.templates import get_template
from merchants.models import Store

WELCOME_TEXT_MAX_BYTES = 4000  # WeCom's limit on a welcome message's text content


class WelcomeError(Invalid):
    """A welcome setting the owner can fix; the message is plain words for the form."""


def merchant_templates(session: Session, merchant_id: int) -> list[CouponTemplate]:
    """Every template of the merchant, oldest first: the welcome coupon's choices."""
    stmt = select(CouponTemplate).where(CouponTemplate.merchant_id == merchant_id).order_by(CouponTemplate.id)
    return list(session.scalars(stmt))


def update_welcome(session: Session, store: Store, *, text: str, template_id: int | None) -> None:
    """Welcome text (WeCom caps it at 4000 bytes) and the coupon handed to new contacts."""
    text = (text or "").strip()
    if len(text.encode("utf-8")) > WELCOME_TEXT_MAX_BYTES:
        raise WelcomeError(_l("欢迎语太长：企业微信最多 4000 字节（约 1300 个汉字）。"), "welcome_text")
    if template_id is not None:
        try:
            get_template(session, template_id, store.merchant_id)
        except NotFound:
            raise WelcomeError(_l("请选择本商户的优惠券模板。"), "template_id") from None
    store.welcome_text = text
    store.welcome_template_id = template_id
