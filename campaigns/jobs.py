"""RQ entry points of campaigns, over ids: the clock's tick, the plan job, the send job and
the tracking job. Each owns its transactions and never calls WeCom inside one; the rules are
in ``campaigns.services`` (planning, dispatch). Scheduled work is rows (campaigns, rounds,
chunks) that the tick turns into jobs, so a restart neither drops nor doubles a send."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from campaigns.models import PlanRound
from campaigns.services import dispatch, planning
from core import failpoints
from core.db import db, utcnow
from core.extensions import QUEUE_DEFAULT, QUEUE_LOW, enqueue
from core.txn import transaction
from core.wecom import get_wecom
from wecom.client import LOCAL_ERRCODE, WeComError

log = logging.getLogger(__name__)

STALLED = timedelta(minutes=2)  # a planning round with no heartbeat this long lost its job
LOOKBACK = timedelta(minutes=5)  # list_v2 from this long before the first claim (clock skew)
LIST_V2_SPAN = timedelta(days=30)  # WeCom: start_time..end_time at most a month


def tick(now: str | None = None) -> str:
    """The clock (every 30 s): open a round for campaigns due, restart stalled planners, queue
    the chunks due to be sent and the tasks due to be tracked, move campaigns along."""
    at = datetime.fromisoformat(now) if now else utcnow()
    with transaction(db.session) as session:
        round_ = planning.open_round(session, at)
        new_round = round_.id if round_ else None
        stalled = session.scalars(select(PlanRound.id).where(
            PlanRound.state == "planning", PlanRound.heartbeat_at < at - STALLED)).all()
        for round_id in stalled:
            session.get(PlanRound, round_id).heartbeat_at = at  # one restart per stall
    for round_id in ([new_round] if new_round else []) + list(stalled):
        enqueue(QUEUE_LOW, plan_round, round_id)
    with transaction(db.session) as session:
        moves = dispatch.advance(session, at)
        sends = dispatch.due_chunks(session, at)
        tracks = dispatch.due_for_tracking(session, at)
    for chunk_id in sends:
        enqueue(QUEUE_LOW, send_chunk, chunk_id)
    for chunk_id in tracks:
        enqueue(QUEUE_DEFAULT, track_chunk, chunk_id)
    return f"round {new_round}, {len(stalled)} restarted, {len(sends)} send(s), {len(tracks)} track(s), {len(moves)} move(s)"


def plan_round(round_id: int) -> str:
    """RQ job (``low``): walk the round's audience batch by batch, each batch one transaction
    with the cursor; a second copy of this job waits on the round's row lock and finds the
    walk further on (or over)."""
    batches, cache = 0, {}
    while True:
        with transaction(db.session) as session:
            finished = planning.plan_batch(session, round_id, utcnow(), cache=cache)
        batches += 1
        failpoints.hit("planning.after_batch")
        if finished:
            break
    with transaction(db.session) as session:
        dispatch.advance(session, utcnow())
        sends = dispatch.due_chunks(session, utcnow())
    for chunk_id in sends:
        enqueue(QUEUE_LOW, send_chunk, chunk_id)
    return f"round {round_id}: {batches} batch(es), {len(sends)} chunk(s) queued"


def send_chunk(chunk_id: int) -> str:
    """RQ job (``low``): claim the chunk, make sure WeCom has no task of it yet (after a
    takeover), create the task, store its msgid. Safe to run twice or to kill anywhere."""
    with transaction(db.session) as session:
        ticket = dispatch.claim(session, chunk_id, utcnow())
    if ticket is None:
        return "not claimed"
    failpoints.hit("dispatch.after_claim")
    client = get_wecom()
    if ticket.recover:
        try:
            found = _find_tasks(client, ticket)
        except WeComError as exc:
            with transaction(db.session) as session:
                dispatch.record_error(session, ticket, exc.errcode, str(exc), transient=True, now=utcnow())
            return f"lookup failed, retry later: {exc}"
        if found:
            keep, extra = found[0], found[1:]
            for msgid in extra:  # a duplicate slipped through: withdraw it while unconfirmed
                _withdraw(client, msgid)
            with transaction(db.session) as session:
                dispatch.record_submitted(session, ticket, keep, [], utcnow())
            return f"found task {keep}" + (f", withdrew {len(extra)}" if extra else "")
    if not ticket.may_send:
        with transaction(db.session) as session:
            dispatch.cancel_chunk(session, ticket.chunk_id, note="nothing to send")
        return "cancelled"
    with transaction(db.session) as session:
        if not dispatch.note_call(session, ticket, utcnow()):
            return "claim lost"
    failpoints.hit("dispatch.before_call")
    try:
        targets = ({"chat_id_list": ticket.external_userids} if ticket.chat_type == "group"
                   else {"external_userid": ticket.external_userids})
        answer = client.messages.add_msg_template(
            chat_type=ticket.chat_type, sender=ticket.sender, text=ticket.text, attachments=ticket.attachments,
            **targets,
        )
    except WeComError as exc:
        with transaction(db.session) as session:
            outcome = dispatch.record_error(session, ticket, exc.errcode, str(exc),
                                            transient=exc.retryable or exc.errcode == LOCAL_ERRCODE, now=utcnow())
        return f"{outcome}: {exc}"
    failpoints.hit("dispatch.after_call")
    msgid = answer["msgid"]
    with transaction(db.session) as session:
        stored = dispatch.record_submitted(session, ticket, msgid, list(answer.get("fail_list") or []), utcnow())
    if not stored:  # our lease ran out while WeCom answered and another worker took over
        _withdraw(client, msgid)
        return f"claim lost: withdrew {msgid}"
    failpoints.hit("dispatch.after_submit")
    return f"submitted {msgid} to {len(ticket.external_userids)}"


def _find_tasks(client, ticket: dispatch.Ticket) -> list[str]:
    """Tasks WeCom created for this chunk since its first claim (matched by the token)."""
    start = ticket.since - LOOKBACK
    end = min(utcnow() + timedelta(minutes=1), start + LIST_V2_SPAN)
    found, cursor = [], None
    while True:
        page = client.messages.list_v2(chat_type=ticket.chat_type, filter_type=0, start_time=int(start.timestamp()),
                                       end_time=int(end.timestamp()), cursor=cursor, limit=100)
        found += dispatch.matching_msgids(page.get("group_msg_list") or [], ticket.token)
        cursor = page.get("next_cursor")
        if not cursor:
            return found


def _withdraw(client, msgid: str) -> None:
    try:
        client.messages.cancel(msgid)
    except WeComError as exc:  # already confirmed (or cancelled): nothing more to do
        log.warning("could not withdraw duplicate task %s: %s", msgid, exc)


def track_chunk(chunk_id: int) -> str:
    """RQ job (``default``): has the member sent the task? Then store each recipient's result;
    if not, remind them (within WeCom's limit), or withdraw it once its campaigns ended."""
    with transaction(db.session) as session:
        item = dispatch.tracking(session, chunk_id, utcnow())
    if item is None:
        return "nothing to track"
    client = get_wecom()
    status = _task_status(client, item)
    if status == 2:
        results = _results(client, item)
        failpoints.hit("tracking.after_results")
        with transaction(db.session) as session:
            dispatch.record_results(session, chunk_id, results, utcnow())
        return f"sent: {sum(1 for s, _t in results.values() if s == 1)}/{len(results)} delivered"
    if item.expired:
        try:
            client.messages.cancel(item.msgid, userid_list=[item.sender])
        except WeComError as exc:
            if exc.errcode != 41093:  # 41093: already cancelled
                raise
        with transaction(db.session) as session:
            dispatch.cancel_chunk(session, chunk_id, note="unconfirmed when its campaigns ended")
        return "withdrawn"
    reminded = False
    if item.remind:
        try:
            client.messages.remind(item.msgid)
            reminded = True
        except WeComError as exc:
            log.info("remind %s: %s", item.msgid, exc)
    with transaction(db.session) as session:
        dispatch.record_pending(session, chunk_id, utcnow(), reminded=reminded)
    return "waiting for the member" + (" (reminded)" if reminded else "")


def _task_status(client, item: dispatch.Tracking) -> int | None:
    cursor = None
    while True:
        page = client.messages.task(item.msgid, cursor=cursor, limit=1000)
        for task in page.get("task_list") or []:
            if task.get("userid") == item.sender:
                return int(task.get("status", 0))
        cursor = page.get("next_cursor")
        if not cursor:
            return None


def _results(client, item: dispatch.Tracking) -> dict[str, tuple[int, int | None]]:
    out, cursor = {}, None
    while True:
        page = client.messages.send_result(item.msgid, item.sender, cursor=cursor, limit=1000)
        for row in page.get("send_list") or []:
            key = row.get("external_userid") or row.get("chat_id")  # a diner, or a group
            if key:
                out[key] = (int(row.get("status", 0)), row.get("send_time"))
        cursor = page.get("next_cursor")
        if not cursor:
            return out
