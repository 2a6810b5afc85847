"""Merchant rules, one module per concern: ``validation`` (credit code, mobile, money),
``hours`` (opening hours), ``regions`` (regions and the managers scoped to them),
``tenancy`` (the "by id and owner" lookups), ``enrolment`` (enrolment and review),
``staff`` (serving members and cashiers), ``channels`` (channel codes).

Services take a session and never commit; views and jobs own the transaction. They raise
``merchants.errors`` (``core.errors`` families), never HTTP errors. Callers import the
public names from here.
"""
from __future__ import annotations

from merchants.errors import ChannelError, ServiceError
from merchants.services import channels
from merchants.services.channels import (
    add_contact_way,
    adds_today,
    apply_opening_hours,
    channel_counts,
    check_members_can_hold_customers,
    create_channel,
    deactivate_channel,
    local_today,
    make_state,
    parse_state,
    rebalance_channels,
    record_add,
    serving_userids,
    staff_changed,
    store_channels,
    wecom_error_message,
)
from merchants.services.enrolment import (
    StoreInput,
    add_store,
    enrol_merchant,
    recent_reviews,
    review_queue,
    review_store,
    update_store,
)
from merchants.services.hours import build_opening_hours, is_open, is_open_at, parse_hour_ranges
from merchants.services.regions import (
    RegionNode,
    circle_choices,
    circle_ids_within,
    create_manager,
    create_region,
    region_choices,
    region_path,
    region_tree,
    with_region_path,
)
from merchants.services.staff import (
    StaffChoice,
    add_cashier,
    cashiers_of,
    describe_wecom_error,
    fetch_corp_members,
    grant_member,
    granted_member_ids,
    granted_members,
    list_grants,
    member_merchant_ids,
    revoke_grant,
    set_cashier_active,
    set_store_staff,
    staff_candidates,
    upsert_members,
)
from merchants.services.tenancy import (
    get_cashier,
    get_channel,
    get_merchant_for,
    get_store_for,
    get_store_with_staff,
    store_is_approved,
    stores_visible_to,
)
from merchants.services.validation import (
    CREDIT_CODE_CHARS,
    credit_code_check_char,
    validate_credit_code,
    validate_mobile,
    yuan_to_fen,
)

__all__ = [
    "CREDIT_CODE_CHARS", "ChannelError", "RegionNode", "ServiceError", "StaffChoice", "StoreInput",
    "add_cashier", "add_contact_way", "add_store", "adds_today", "apply_opening_hours", "build_opening_hours",
    "cashiers_of", "channel_counts", "channels", "check_members_can_hold_customers", "circle_choices",
    "circle_ids_within", "create_channel", "create_manager", "create_region", "credit_code_check_char",
    "deactivate_channel", "describe_wecom_error", "enrol_merchant", "fetch_corp_members", "get_cashier",
    "get_channel", "get_merchant_for", "grant_member", "granted_member_ids", "granted_members", "list_grants",
    "member_merchant_ids", "revoke_grant", "get_store_for", "get_store_with_staff", "is_open", "is_open_at",
    "local_today", "make_state", "parse_hour_ranges", "parse_state", "rebalance_channels", "recent_reviews",
    "record_add", "region_choices", "region_path", "region_tree", "review_queue", "review_store",
    "serving_userids", "set_cashier_active", "set_store_staff", "staff_candidates", "staff_changed", "store_channels",
    "store_is_approved", "stores_visible_to", "update_store", "upsert_members", "validate_credit_code",
    "validate_mobile", "wecom_error_message", "with_region_path", "yuan_to_fen",
]
