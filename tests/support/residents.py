"""Factories for residents: members, residents with an open relationship to a member (and a
store), and for live-stack tests a store with staff, a channel (a real contact way through
the WeCom client) and an active welcome template.

Plain session helpers (``make_*``, ``resident_with_contact``) add and flush; the caller owns
the transaction. ``welcome_store`` commits its own steps (it calls WeCom in between).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

from sqlalchemy import select

from core.db import db, utcnow
from core.txn import transaction
from coupons.models import CouponTemplate
from coupons.services import update_welcome
from merchants.models import Member, Region, RegionLevel, Store, StoreMember
from merchants.services import channels
from residents.models import ContactRelationship, RelationshipStatus, Resident
from residents.services import refresh_reachable
from tests.support.coupons import make_shop, make_template

_seq = itertools.count(1)

# the simulator's demo members allowed to hold customers (wecom/simulator/seed.py)
SIM_MEMBERS = {"zhangwei": "张伟", "lina": "李娜", "wangfang": "王芳", "liuyang": "刘洋", "chenjing": "陈静",
               "yangmin": "杨敏"}


def make_circle(session) -> Region:
    """A business circle under a fresh city (unique names, so tests can call it freely)."""
    n = next(_seq)
    city = Region(name=f"测试市{n}", level=RegionLevel.city)
    session.add(city)
    session.flush()
    circle = Region(name=f"商圈{n}", level=RegionLevel.circle, parent_id=city.id)
    session.add(circle)
    session.flush()
    return circle


def make_member(session, userid: str, name: str | None = None) -> Member:
    """Get or create our row for a WeCom member."""
    member = session.scalar(select(Member).where(Member.userid == userid))
    if member is None:
        member = Member(userid=userid, name=name or SIM_MEMBERS.get(userid, userid), can_hold_customers=True)
        session.add(member)
        session.flush()
    return member


def add_staff(session, store: Store, userid: str, *, backup: bool = False) -> StoreMember:
    sm = StoreMember(store_id=store.id, member_id=make_member(session, userid).id, backup=backup)
    session.add(sm)
    session.flush()
    return sm


def make_resident(session, external_userid: str | None = None, **fields) -> Resident:
    n = next(_seq)
    resident = Resident(external_userid=external_userid or f"wmTEST{n:06d}", name=fields.pop("name", f"街坊{n}"),
                        **fields)
    session.add(resident)
    session.flush()
    return resident


def open_contact(session, resident: Resident, member: Member, store: Store | None = None,
                 channel_id: int | None = None) -> ContactRelationship:
    rel = ContactRelationship(resident_id=resident.id, member_id=member.id, store_id=store.id if store else None,
                              channel_id=channel_id, status=RelationshipStatus.open, added_at=utcnow())
    session.add(rel)
    session.flush()
    refresh_reachable(session, resident.id)
    return rel


def resident_with_contact(session, *, userid: str = "zhangwei", store: Store | None = None,
                          external_userid: str | None = None, **fields) -> tuple[Resident, ContactRelationship]:
    """A resident with one open relationship to ``userid`` (attributed to ``store``)."""
    resident = make_resident(session, external_userid, **fields)
    return resident, open_contact(session, resident, make_member(session, userid), store)


# --- live stack ---------------------------------------------------------------------------


@dataclass
class WelcomeStore:
    store_id: int
    merchant_id: int
    channel_id: int
    config_id: str
    state: str
    template_id: int | None
    cuisines: list[str]
    welcome_text: str
    shop: object = None  # tests.support.coupons.Shop, to add a second store of the merchant


def welcome_store(
    client,
    staff: list[str],
    *,
    cuisines: list[str] | tuple[str, ...] = ("sichuan", "hotpot"),
    welcome_text: str = "",
    template: bool = True,
    shop=None,
    template_id: int | None = None,
    **template_kw,
) -> WelcomeStore:
    """An approved store served by ``staff`` (simulator userids), a channel code created in
    WeCom through ``client``, and an active welcome template (valid 30 days from issue).

    ``shop``: reuse a merchant from an earlier call (its other store gets the code);
    ``template_id``: use that template instead of creating one.
    """
    with transaction(db.session) as session:
        if shop is None:
            shop = make_shop(session, make_circle(session), name=f"邻里小馆{next(_seq)}")
            store = shop.store
        else:
            store = session.get(Store, shop.other_store.id)
        store.cuisines = list(cuisines)
        for userid in staff:
            add_staff(session, store, userid)
        store_id, merchant_id = store.id, store.merchant_id
    if template and template_id is None:
        kw = dict(name="新客立减10元", value=1000, min_spend_fen=5000, valid_from=None, valid_until=None,
                  valid_days=30, total_stock=None)
        kw.update(template_kw)
        template_id = make_template(shop, **kw).id
    with transaction(db.session) as session:
        store = session.get(Store, store_id)
        update_welcome(session, store, text=welcome_text, template_id=template_id)
        channel = channels.create_channel(session, client, store, name=f"门口海报{next(_seq)}", kind="door")
        return WelcomeStore(store_id, merchant_id, channel.id, channel.config_id, channel.state, template_id,
                            list(cuisines), welcome_text, shop)


def template_issued(template_id: int) -> int:
    db.session.remove()
    return db.session.get(CouponTemplate, template_id).issued_count
