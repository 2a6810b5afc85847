"""Taste profile ↔ WeCom corp tags (企业客户标签).

Out: a resident's preferred cuisines (group 口味偏好) and the business circles of the stores
they follow (group 商圈) become corp tags on every open member↔diner contact. The local
``ResidentTag`` rows are the truth: planning (``plan_resident_tags``) only changes rows, and
a job (``residents.jobs.sync_resident_tags``) brings WeCom in line with one ``mark_tag`` per member. A row
stays pending (``synced_at`` NULL, ``attempts``/``last_error``) until WeCom took it, so a
45033, a timeout or an outage delays tags but never loses them: RQ retries the job with
backoff and ``sync_pending_tags`` (for a scheduler or the CLI) sweeps what is left.

Every ``mark_tag`` goes through a per-corp Redis semaphore (``core.semaphore``), because WeCom
answers 45033 beyond a handful of concurrent tag writes and our processes can't see each
other. A resident's sync and staff-edit handling run under one Redis lock per resident.

Back: when staff tag a diner in the WeCom app (``edit_external_contact``), cuisine tags we
did not put there become ``staff_tag`` signals (``ref=tag:<userid>``), removed ones drop
them. Our own ``mark_tag`` makes no callback in WeCom; even if one came, it would find no
signal to change and stop there. Our synced tags that a member removed are put back (the
local rows are the truth) unless the profile no longer wants them.

Rooms: ``corp`` (our tag catalogue and WeCom's), ``plan`` (what a resident should carry),
``sync`` (``mark_tag`` through the throttle), ``inbound`` (staff edits read back). The RQ
jobs are in ``residents.jobs``, the event handlers and signal receivers in
``residents.handlers``. This module re-exports the names callers use.
"""

from residents.tags.corp import (
    CIRCLE_GROUP,
    CIRCLE_PREFIX,
    CUISINE_GROUP,
    CUISINE_PREFIX,
    TagSyncDeferred,
    circle_key,
    corp_tag_rows,
    cuisine_key,
    ensure_corp_tags,
    reconcile_corp_tags,
    redis_lock,
)
from residents.tags.inbound import StaffTagChanges, apply_staff_tags, follow_users
from residents.tags.plan import desired_tags, plan_resident_tags
from residents.tags.sync import (
    MAX_SWEEP_ATTEMPTS,
    RETRY_INTERVALS,
    Pushed,
    mark_tag_throttle,
    push,
)

__all__ = [
    "CIRCLE_GROUP", "CIRCLE_PREFIX", "CUISINE_GROUP", "CUISINE_PREFIX", "MAX_SWEEP_ATTEMPTS", "RETRY_INTERVALS",
    "Pushed", "StaffTagChanges", "TagSyncDeferred", "apply_staff_tags", "circle_key", "corp_tag_rows",
    "cuisine_key", "desired_tags", "ensure_corp_tags", "follow_users", "mark_tag_throttle", "plan_resident_tags",
    "push", "reconcile_corp_tags", "redis_lock",
]
