"""Members belong to merchants (grants), handovers stay inside a merchant, and an approved
store's new name or address waits for review while the approved values stay public."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from accounts.models import User
from core.db import db
from core.errors import Conflict
from core.txn import transaction
from merchants import services
from merchants.models import Member, MemberGrant, ReviewStatus, Store, StoreMember
from residents import transfers as svc
from residents.models import ContactRelationship, MemberTransfer, Resident, TransferItem, TransferKind
from tests.support.merchants import (  # noqa: F401  (fixtures)
    client,
    fast_hashing,
    login,
    make_merchant,
    make_regions,
    post_form,
)


def _member(userid: str) -> int:
    with transaction(db.session):
        m = Member(userid=userid, name=userid, can_hold_customers=True, active=True)
        db.session.add(m)
        db.session.flush()
        return m.id


def _user(username: str) -> User:
    return db.session.scalar(select(User).where(User.username == username))


@pytest.fixture
def shops(app):
    ids = make_regions()
    _, mine_m, mine = make_merchant("mine_owner", ids["徐家汇"], name="我的小馆")
    _, theirs_m, theirs = make_merchant("their_owner", ids["南京西路"], name="别家秘制牛蛙")
    with transaction(db.session):
        for sid in (mine, theirs):
            db.session.get(Store, sid).status = ReviewStatus.approved
    return {"ids": ids, "mine": mine, "theirs": theirs, "mine_m": mine_m, "theirs_m": theirs_m}


def test_staff_service_refuses_members_not_granted_to_the_merchant(shops):
    ours, theirs = _member("ours"), _member("theirs_only")
    with transaction(db.session):
        services.grant_member(db.session, shops["mine_m"], ours)
        services.grant_member(db.session, shops["theirs_m"], theirs)
        services.grant_member(db.session, shops["mine_m"], ours)  # idempotent
    assert db.session.scalar(select(func.count()).select_from(MemberGrant)) == 2
    store = db.session.get(Store, shops["mine"])
    assert [m.userid for m in services.staff_candidates(db.session, store)] == ["ours"]
    with pytest.raises(services.ServiceError) as exc, transaction(db.session):
        services.set_store_staff(db.session, store, [services.StaffChoice("theirs_only")])
    assert "别家" not in str(exc.value.message) and "theirs_only" in str(exc.value.message)
    with transaction(db.session):
        assert services.set_store_staff(db.session, store, [services.StaffChoice("ours")])
    with pytest.raises(Conflict), transaction(db.session):  # still serving: not revoked
        services.revoke_grant(db.session, shops["mine_m"], ours)


def test_operator_grants_members_on_the_admin_page(client, shops):
    from tests.support.merchants import make_admin

    member = _member("granted_by_admin")
    make_admin("root")
    login(client, "root")
    assert client.get("/admin/members").status_code == 200
    resp = post_form(client, "/admin/members", {"merchant_id": str(shops["mine_m"]), "member_id": str(member)})
    assert resp.status_code == 302
    grant = db.session.scalar(select(MemberGrant))
    assert (grant.merchant_id, grant.member_id, grant.granted_by_id) == (shops["mine_m"], member, _user("root").id)
    assert post_form(client, "/admin/members", {"merchant_id": "0", "member_id": str(member)}).status_code == 400
    assert post_form(client, "/admin/members", {"merchant_id": str(shops["mine_m"]), "member_id": "99999"}).status_code == 400
    resp = post_form(client, "/admin/members/revoke", {"merchant_id": str(shops["mine_m"]), "member_id": str(member)},
                     token_url="/admin/members")
    assert resp.status_code == 302 and db.session.scalar(select(func.count()).select_from(MemberGrant)) == 0


def _serve(store_id: int, merchant_id: int, member_id: int) -> None:
    with transaction(db.session):
        services.grant_member(db.session, merchant_id, member_id)
        db.session.add(StoreMember(store_id=store_id, member_id=member_id))


def _customer(member_id: int, store_id: int | None, ext: str) -> None:
    with transaction(db.session):
        r = Resident(external_userid=ext, name=ext)
        db.session.add(r)
        db.session.flush()
        db.session.add(ContactRelationship(resident_id=r.id, member_id=member_id, store_id=store_id))


def _start(owner: str, store_id: int, member_id: int, takeover_id: int, wecom=()) -> int:
    with transaction(db.session):
        user = _user(owner)
        store, member = svc.get_staff_for(db.session, user, store_id, member_id)
        return svc.start_transfer(
            db.session, user, store=store, member=member, takeover_id=takeover_id, kind=TransferKind.on_job,
            wecom_customers=list(wecom),
        ).transfer.id


def test_a_shared_members_handover_moves_only_this_merchants_customers_and_locks_per_merchant(shops):
    shared, mine_heir, their_heir = _member("shared"), _member("mine_heir"), _member("their_heir")
    _serve(shops["mine"], shops["mine_m"], shared)
    _serve(shops["mine"], shops["mine_m"], mine_heir)
    _serve(shops["theirs"], shops["theirs_m"], shared)
    _serve(shops["theirs"], shops["theirs_m"], their_heir)
    _customer(shared, shops["mine"], "wm_mine")
    _customer(shared, shops["theirs"], "wm_theirs")
    _customer(shared, None, "wm_storeless")
    mine_t = _start("mine_owner", shops["mine"], shared, mine_heir, wecom=["wm_only_wecom", "wm_theirs", "wm_storeless"])
    items = set(db.session.scalars(select(TransferItem.external_userid).where(TransferItem.transfer_id == mine_t)))
    assert items == {"wm_mine"}
    # the other merchant's handover of the same member is not blocked by mine
    their_t = _start("their_owner", shops["theirs"], shared, their_heir)
    assert set(db.session.scalars(select(TransferItem.external_userid).where(TransferItem.transfer_id == their_t))) == {
        "wm_theirs"}
    with pytest.raises(svc.TransferError) as exc:  # but my own second one is
        _start("mine_owner", shops["mine"], shared, mine_heir)
    assert "别家" not in str(exc.value.message)
    assert db.session.scalar(select(func.count()).select_from(MemberTransfer)) == 2


def test_an_exclusive_members_storeless_and_wecom_only_customers_move(shops):
    own, heir = _member("own"), _member("heir")
    _serve(shops["mine"], shops["mine_m"], own)
    _serve(shops["mine"], shops["mine_m"], heir)
    _customer(own, None, "wm_storeless")
    t = _start("mine_owner", shops["mine"], own, heir, wecom=["wm_only_wecom"])
    assert set(db.session.scalars(select(TransferItem.external_userid).where(TransferItem.transfer_id == t))) == {
        "wm_storeless", "wm_only_wecom"}


def _edit(client, store_id: int, name: str, address: str):
    return post_form(client, f"/portal/stores/{store_id}/edit", {
        "store_name": name, "address": address, "circle_id": str(db.session.get(Store, store_id).circle_id),
        "cuisines": ["sichuan"], "avg_spend": "60",
    })


def test_renaming_an_approved_store_waits_for_review(client, shops):
    from tests.support.merchants import make_manager

    store_id = shops["mine"]
    before = db.session.get(Store, store_id)
    old_name, old_address = before.name, before.address
    login(client, "mine_owner")
    assert _edit(client, store_id, "改名后的小馆", "新地址 1 号").status_code == 302
    db.session.expire_all()
    store = db.session.get(Store, store_id)
    assert store.status == ReviewStatus.approved and (store.name, store.address) == (old_name, old_address)
    assert (store.pending_name, store.pending_address) == ("改名后的小馆", "新地址 1 号")
    assert "改名后的小馆" in client.get(f"/portal/stores/{store_id}").get_data(as_text=True)
    assert "改名后的小馆" in client.get(f"/portal/stores/{store_id}/edit").get_data(as_text=True)

    make_manager("xuhui", [shops["ids"]["徐汇区"]])
    assert post_form(client, "/auth/logout", {}, token_url=f"/portal/stores/{store_id}").status_code == 302
    login(client, "xuhui")
    page = client.get("/portal/review").get_data(as_text=True)
    assert 'data-testid="pending-name"' in page and "改名后的小馆" in page
    resp = post_form(client, f"/portal/review/{store_id}", {f"s{store_id}-decision": "reject"},
                     token_url="/portal/review")
    assert resp.status_code == 400  # a rejection needs a reason
    resp = post_form(client, f"/portal/review/{store_id}", {f"s{store_id}-decision": "approve"},
                     token_url="/portal/review")
    assert resp.status_code == 302
    db.session.expire_all()
    store = db.session.get(Store, store_id)
    assert (store.name, store.address, store.status) == ("改名后的小馆", "新地址 1 号", ReviewStatus.approved)
    assert store.pending_name is None and not store.has_pending_change


def test_a_rejected_change_keeps_the_approved_values(app, shops):
    from tests.support.merchants import make_manager

    store = db.session.get(Store, shops["mine"])
    old = store.name
    data = services.StoreInput(name="乱改的名字", address=store.address, circle_id=store.circle_id,
                               cuisines=["sichuan"], avg_spend_fen=100)
    with transaction(db.session):
        services.update_store(db.session, store, data)
    make_manager("xuhui", [shops["ids"]["徐汇区"]])
    with transaction(db.session):
        assert [s.id for s in services.review_queue(db.session, _user("xuhui"))] == [store.id]
        services.review_store(db.session, _user("xuhui"), store.id, approve=False, reason="名称不实")
    db.session.expire_all()
    store = db.session.get(Store, shops["mine"])
    assert (store.name, store.status, store.pending_name, store.change_reason) == (
        old, ReviewStatus.approved, None, "名称不实")
