"""Coupon rules, by concern: ``templates`` (terms, validation, status, the tenant lookup,
where a template applies), ``issuing`` (claims, short codes), ``redemption`` (the till's
rules, redeem, reversal, desk throttling), ``statistics`` (per-template counts, desk history),
``display`` (labels and card text), ``welcome`` (a store's welcome text and coupon).

Every function takes a ``Session`` and never commits; the caller owns the transaction.
This module re-exports the names callers use (``from coupons.services import redeem``).
"""
from __future__ import annotations

from coupons.services.display import (
    headline,
    hours_text,
    kind_label,
    mask_holder,
    status_label,
    weekdays_text,
)
from coupons.services.issuing import (
    CODE_ALPHABET,
    CODE_LENGTH,
    IssueError,
    format_code,
    issue_coupon,
    new_short_code,
    normalize_code,
)
from coupons.services.redemption import (
    REVERSAL_WINDOW,
    WRONG_CODE_LIMIT,
    WRONG_CODE_WINDOW,
    RedemptionError,
    RedemptionResult,
    ReversalError,
    already_redeemed_error,
    can_reverse,
    check_redeemable,
    compute_discount,
    desk_throttled,
    find_coupon,
    get_redemption,
    lift_desk_locks,
    locked_tills,
    record_wrong_code,
    redeem,
    reverse,
    reverse_for,
)
from coupons.services.statistics import (
    TemplateStats,
    recent_redemptions,
    template_stats,
)
from coupons.services.templates import (
    FROZEN_TERMS,
    STATUS_TRANSITIONS,
    TemplateError,
    TemplateSpec,
    applies_at,
    create_template,
    get_template,
    list_templates,
    set_template_status,
    stores_for_templates,
    templates_for_store,
    update_template,
    validate_spec,
)
from coupons.services.welcome import (
    WELCOME_TEXT_MAX_BYTES,
    WelcomeError,
    merchant_templates,
    update_welcome,
)

__all__ = [
    "CODE_ALPHABET", "CODE_LENGTH", "FROZEN_TERMS", "REVERSAL_WINDOW", "STATUS_TRANSITIONS",
    "WELCOME_TEXT_MAX_BYTES", "WRONG_CODE_LIMIT", "WRONG_CODE_WINDOW", "IssueError",
    "RedemptionError", "RedemptionResult", "ReversalError", "TemplateError", "TemplateSpec",
    "TemplateStats", "WelcomeError", "already_redeemed_error", "applies_at", "can_reverse",
    "check_redeemable", "compute_discount", "create_template", "desk_throttled",
    "lift_desk_locks", "locked_tills",
    "find_coupon", "format_code", "get_redemption", "get_template", "headline", "hours_text",
    "issue_coupon", "kind_label", "list_templates", "mask_holder", "merchant_templates",
    "new_short_code", "normalize_code", "recent_redemptions", "record_wrong_code", "redeem",
    "reverse", "reverse_for", "set_template_status", "status_label", "stores_for_templates", "template_stats",
    "templates_for_store", "update_template", "update_welcome", "validate_spec",
    "weekdays_text"
]
