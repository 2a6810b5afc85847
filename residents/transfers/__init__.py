"""Staff leaving (离职继承) and moving (在职继承): a member's customers and customer groups go
to a colleague through WeCom, and our relationships follow them.

The flow, each step idempotent so a retried job or a repeated callback changes nothing twice:

1. ``services.start_transfer`` (portal, one transaction): a ``MemberTransfer`` with one ``TransferItem``
   per customer — the member's open relationships at the merchant's stores plus anyone WeCom
   still lists for them — numbered into batches of 100; the member is marked ``leaving``.
2. ``jobs.send_transfer``: one ``(resigned/)transfer_customer`` call per batch, each item's
   errcode recorded (0 → waiting; refusals and errors kept), then the member's customer
   groups go to the colleague (``groupchat/transfer`` / ``onjob_transfer``).
3. ``jobs.poll_transfer``: reads ``(resigned/)transfer_result``; the periodic sweep
   (``poll_running_transfers``, ``linli cron``) runs it every ``TRANSFER_POLL_SECONDS`` until
   every item is done, refused or failed, and re-sends batches whose job was lost.
   ``linli transfers poll`` is the same sweep by hand, at once.
4. The ``transfer_fail`` callback (``residents.handlers``) marks an item refused at once.

When WeCom reports an item done, the old relationship closes (reason ``transfer``) and the
colleague gets one at the same store and channel: no resident is lost on the way.

Rooms: ``services`` (the rules), ``queries`` (the pages' reads), ``labels`` (plain words),
``jobs`` (RQ entry points), ``views`` (the portal pages). This module re-exports the names
callers use, so ``residents.transfers.poll_running_transfers`` still names the job.
"""

from residents.transfers.jobs import (
    enqueue_poll,
    enqueue_send,
    give_up_after,
    poll_running,
    poll_running_transfers,
    poll_seconds,
    poll_transfer,
    send_transfer,
)
from residents.transfers.labels import (
    ERRCODE_LABELS,
    KIND_LABELS,
    STATUS_LABELS,
    TRANSFER_LABELS,
    errcode_label,
    mask_name,
)
from residents.transfers.queries import (
    Problem,
    Progress,
    StaffRow,
    TransferRow,
    list_transfers,
    progress,
    staff_overview,
)
from residents.transfers.services import (
    BATCH_SIZE,
    SUCCESS_MSG_MAX,
    Checked,
    Started,
    TransferError,
    apply_results,
    check_request,
    get_staff_for,
    get_transfer_for,
    give_up_waiting,
    maybe_finish,
    move_relationships,
    record_sent,
    refuse_item,
    retry_failed,
    start_transfer,
    takeover_choices,
    transfers_visible_to,
    wecom_customers_of,
)

__all__ = [
    "BATCH_SIZE", "ERRCODE_LABELS", "KIND_LABELS", "STATUS_LABELS", "SUCCESS_MSG_MAX", "TRANSFER_LABELS",
    "Checked", "Problem", "Progress", "StaffRow", "Started", "TransferError", "TransferRow",
    "apply_results", "check_request", "enqueue_poll", "enqueue_send", "errcode_label", "get_staff_for",
    "get_transfer_for", "give_up_after", "give_up_waiting", "list_transfers", "mask_name", "maybe_finish",
    "move_relationships", "poll_running", "poll_running_transfers", "poll_seconds", "poll_transfer",
    "progress", "record_sent", "refuse_item", "retry_failed", "send_transfer", "staff_overview",
    "start_transfer", "takeover_choices", "transfers_visible_to", "wecom_customers_of",
]
