"""Group campaigns over real HTTP: a customer group linked to the merchant's store gets one
task from its owner with ``chat_id_list`` (``chat_type`` group); every diner in the group sees
it once the owner confirms; the group's WeCom quota caps the next one."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from campaigns import jobs
from campaigns.models import (
    Campaign,
    CampaignState,
    Channels,
    ChunkState,
    Decision,
    Delivery,
    DeliveryStatus,
    Push,
    SendChunk,
)
from campaigns.services import CampaignInput, create_campaign, launch
from core.db import db, utcnow
from core.txn import transaction
from residents import jobs as resident_jobs
from residents.models import CustomerGroup
from tests.support.coupons import make_shop, make_template
from tests.support.residents import add_staff, make_circle


def run(stack) -> None:
    db.session.remove()
    jobs.tick()
    stack.drain()
    db.session.remove()


def group_campaign(shop, template_id: int, name: str) -> int:
    start = utcnow() - timedelta(minutes=1)
    data = CampaignInput(name=name, message="群里的朋友：本周川菜券", reason="你在我们的美食群", template_ids=[template_id],
                         send_from=start, send_until=start + timedelta(days=2), quiet_start=0, quiet_end=0,
                         channels=Channels.groups)
    with transaction(db.session) as session:
        owner = session.merge(shop.owner)
        campaign_id = create_campaign(session, owner, data).id
        launch(session, owner, campaign_id)
    return campaign_id


def test_a_group_campaign_is_one_task_per_owner_and_the_group_quota_caps_the_next(stack, monkeypatch):
    http, sim = stack.http, stack.sim_url
    http.post(f"{sim}/sim/admin/config", json={"auto_confirm_seconds": 0, "quota_rule": "1/day"}).raise_for_status()
    monkeypatch.setitem(stack.app.config, "WECOM_PUSH_QUOTA_RULE", "1/day")
    try:
        with transaction(db.session) as session:
            shop = make_shop(session, make_circle(session))
            add_staff(session, shop.store, "zhangwei")  # zhangwei owns 邻里美食群
        template_id = make_template(shop, valid_from=None, valid_until=None, valid_days=30).id
        resident_jobs.sync_all_groups()
        db.session.remove()
        food = db.session.scalar(select(CustomerGroup).where(CustomerGroup.name == "邻里美食群"))
        assert food.store_id is not None
        chat_id = food.chat_id

        first = group_campaign(shop, template_id, "群发川菜")
        run(stack)
        masses = [m for m in http.get(f"{sim}/sim/admin/mass_messages").json()["mass_messages"]
                  if m["chat_type"] == "group"]
        assert len(masses) == 1
        (task,) = masses[0]["tasks"]
        assert task["userid"] == "zhangwei" and [t["chat_id"] for t in task["targets"]] == [chat_id]
        http.post(f"{sim}/sim/admin/confirm/{masses[0]['msgid']}").raise_for_status()
        run(stack)
        run(stack)
        db.session.remove()
        assert db.session.get(Campaign, first).state == CampaignState.done
        delivery = db.session.scalar(select(Delivery).where(Delivery.chat_id == chat_id))
        assert delivery.status == DeliveryStatus.sent
        chunk = db.session.get(SendChunk, delivery.chunk_id)
        assert (chunk.chat_type, chunk.state) == ("group", ChunkState.confirmed)
        inbox = http.get(f"{sim}/sim/admin/inbox/wangxiaoming").json()["messages"]
        assert any(m["chat_id"] == chat_id and m["msgid"] == masses[0]["msgid"] for m in inbox)

        second = group_campaign(shop, template_id, "再发一次")  # the group's one message today is used
        run(stack)
        db.session.remove()
        decision = db.session.scalar(select(Push.decision).where(Push.campaign_id == second, Push.chat_id == chat_id))
        assert decision == Decision.capped
        assert len([m for m in http.get(f"{sim}/sim/admin/mass_messages").json()["mass_messages"]
                    if m["chat_type"] == "group"]) == 1
    finally:
        http.post(f"{sim}/sim/admin/config", json={"quota_rule": "days/month"})
