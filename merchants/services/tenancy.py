"""Tenant lookups, one per kind and each "by id and owner": every view and job finds merchant
data through these, so none can forget the "and it is yours" part. Missing rows and other
tenants' rows alike raise ``core.errors.NotFound`` (other tenants' ids stay secret)."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from accounts.models import Role, User
from core.errors import NotFound
from merchants.models import Channel, Merchant, ReviewStatus, Store, StoreMember
from merchants.services.regions import circle_ids_within


def _manager_circles(session: Session, user: User) -> set[int]:
    return circle_ids_within(session, [r.id for r in user.regions])


def stores_visible_to(session: Session, user: User):
    """A ``select(Store)`` limited to what ``user`` may see: admin all, manager the stores in
    their regions, owner their merchant's, cashier their one store."""
    stmt = select(Store)
    if user.role == Role.admin:
        return stmt
    if user.role == Role.manager:
        return stmt.where(Store.circle_id.in_(_manager_circles(session, user) or {-1}))
    if user.role == Role.owner:
        return stmt.where(Store.merchant_id == (user.merchant_id or -1))
    if user.role == Role.cashier:
        return stmt.where(Store.id == (user.store_id or -1), Store.merchant_id == (user.merchant_id or -1))
    return stmt.where(False)


def get_store_for(session: Session, user: User, store_id: int, *options) -> Store:
    """The store if ``user`` may see it, else NotFound. ``options``: loader options for what
    the caller will show (see ``get_store_with_staff``)."""
    store = session.scalar(stores_visible_to(session, user).where(Store.id == store_id).options(*options))
    if store is None:
        raise NotFound()
    return store


def get_store_with_staff(session: Session, user: User, store_id: int) -> Store:
    """``get_store_for`` with the serving staff and their members loaded alongside: the store
    and staff pages list them, one query instead of one per member."""
    return get_store_for(session, user, store_id, selectinload(Store.staff).joinedload(StoreMember.member))


def get_merchant_for(session: Session, user: User) -> Merchant | None:
    """The signed-in owner's (or cashier's) merchant, None before enrolment."""
    if user.merchant_id is None or user.role not in (Role.owner, Role.cashier):
        return None
    return session.get(Merchant, user.merchant_id)


def get_channel(session: Session, store_id: int, channel_id: int) -> Channel:
    """By id *and* store, so a URL with another store's channel finds nothing (NotFound)."""
    channel = session.scalar(select(Channel).where(Channel.id == channel_id, Channel.store_id == store_id))
    if channel is None:
        raise NotFound()
    return channel


def get_cashier(session: Session, store: Store, user_id: int) -> User:
    """One of the store's cashier accounts, by id *and* store (NotFound otherwise)."""
    user = session.scalar(select(User).where(User.id == user_id, User.role == Role.cashier, User.store_id == store.id))
    if user is None:
        raise NotFound()
    return user


def store_is_approved(store: Store) -> bool:
    """Only approved stores get channel codes and coupons."""
    return store.status == ReviewStatus.approved
