"""``/stores/{id}/channels``, ``/channels/{id}``: a store's channel codes (渠道活码), read only.

Each carries WeCom's QR image (``qr_code``) and the portal's printable posters in every size
and format (``channels.poster``, absolute URLs; they need the owner's portal login, as in the
portal). Codes are made and retired in the portal, which talks to WeCom; retired ones are
listed too (``active`` false), with the contacts they brought."""
from __future__ import annotations

from flask import url_for
from spectree import Response as Doc
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import db
from core.errors import NotFound
from core.txn import transaction
from marketplace.api.v1 import schemas
from marketplace.api.v1.base import Caller, bp, json_response, merchant_caller, page_of, spec, store_for
from merchants import posters
from merchants import services as merchant_svc
from merchants.models import Channel

ERRORS = {f"HTTP_{code}": schemas.Problem for code in (401, 403, 404, 422, 429)}
POSTER_FORMATS = ("png", "pdf")


def _posters(channel: Channel) -> list[dict]:
    if not channel.qr_code:  # the portal has no poster before WeCom made the QR
        return []
    return [{"size": size, "format": fmt,
             "url": url_for("channels.poster", store_id=channel.store_id, channel_id=channel.id, fmt=fmt,
                            size=size, _external=True)}
            for size in posters.SIZES_MM for fmt in POSTER_FORMATS]


def channel_out(channel: Channel, contacts: int) -> dict:
    return {"id": channel.id, "store_id": channel.store_id, "name": channel.name, "kind": channel.kind,
            "kind_label": channel.kind_label, "active": channel.active, "contacts": contacts,
            "qr_code": channel.qr_code or None, "posters": _posters(channel),
            "created_at": channel.created_at.isoformat()}


def _channel(session: Session, who: Caller, channel_id: int) -> Channel:
    """The tenant lookup: the channel's store must be the key's (``store_for``), then the
    channel by id *and* store (``get_channel``)."""
    store_id = session.scalar(select(Channel.store_id).where(Channel.id == channel_id))
    if store_id is None:
        raise NotFound()
    return merchant_svc.get_channel(session, store_for(session, who, store_id).id, channel_id)


@bp.get("/stores/<int:store_id>/channels")
@spec.validate(query=schemas.Page, resp=Doc(HTTP_200=schemas.ChannelList, **ERRORS), tags=["channels"])
def list_channels(store_id: int, query: schemas.Page):
    """One of the key's stores' channel codes by id, retired ones included."""
    who = merchant_caller()
    with transaction(db.session) as session:
        store = store_for(session, who, store_id)
        rows, more = page_of(session, select(Channel).where(Channel.store_id == store.id), Channel.id, query)
        counts = merchant_svc.channel_counts(session, store.id) if rows else {}
        return json_response({"data": [channel_out(c, counts.get(c.id, 0)) for c in rows], "has_more": more})


@bp.get("/channels/<int:channel_id>")
@spec.validate(resp=Doc(HTTP_200=schemas.Channel, **ERRORS), tags=["channels"])
def get_channel(channel_id: int):
    """One channel code of the key's stores."""
    who = merchant_caller()
    with transaction(db.session) as session:
        channel = _channel(session, who, channel_id)
        contacts = merchant_svc.channel_counts(session, channel.store_id).get(channel.id, 0)
        return json_response(channel_out(channel, contacts))
