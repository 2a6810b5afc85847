"""The campaign state machine: legal moves only, each one recorded (from, to, who, when), one
winner when two move the same campaign, and other tenants' campaigns out of reach."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from campaigns.models import Campaign, CampaignState, CampaignTransition
from campaigns.services import CampaignInput, cancel, create_campaign, get_campaign_for, launch, move, pause, resume
from core.db import db, utcnow
from core.errors import Conflict, Forbidden, Invalid, NotFound
from marketplace.cli import main
from tests.support.coupons import make_shop, make_template, tx
from tests.support.residents import make_circle

S = CampaignState


@pytest.fixture
def shop(app):
    with tx() as session:
        return make_shop(session, make_circle(session))


def new_campaign(shop, **kw) -> int:
    template = make_template(shop, valid_from=None, valid_until=None, valid_days=30)
    start = utcnow() + timedelta(hours=1)
    data = dict(name="周末川菜", message="周末来吃川菜", reason="你收藏过川菜馆", template_ids=[template.id],
                send_from=start, send_until=start + timedelta(days=2))
    data.update(kw)
    with tx() as session:
        return create_campaign(session, session.merge(shop.owner), CampaignInput(**data)).id


def history(campaign_id: int) -> list[tuple]:
    db.session.remove()
    rows = db.session.scalars(select(CampaignTransition).where(CampaignTransition.campaign_id == campaign_id)
                              .order_by(CampaignTransition.id))
    return [(r.from_state, r.to_state, r.user_id) for r in rows]


def test_launch_pause_resume_cancel_are_recorded(app, shop):
    campaign_id = new_campaign(shop)
    owner = shop.owner.id
    with tx() as session:
        user = session.merge(shop.owner)
        assert launch(session, user, campaign_id).state == S.scheduled
        assert pause(session, user, campaign_id).state == S.paused
        assert resume(session, user, campaign_id).state == S.scheduled  # back where it paused
        assert resume(session, user, campaign_id).state == S.scheduled  # not paused: nothing to do
    with tx() as session:
        move(session, campaign_id, S.planning)  # the system (the clock): no user
        move(session, campaign_id, S.paused, user_id=owner)
        assert resume(session, session.merge(shop.owner), campaign_id).state == S.planning
        assert cancel(session, session.merge(shop.owner), campaign_id).state == S.cancelled
    assert history(campaign_id) == [
        (None, S.draft, owner), (S.draft, S.scheduled, owner), (S.scheduled, S.paused, owner),
        (S.paused, S.scheduled, owner), (S.scheduled, S.planning, None), (S.planning, S.paused, owner),
        (S.paused, S.planning, owner), (S.planning, S.cancelled, owner),
    ]
    with tx() as session, pytest.raises(Conflict):
        launch(session, session.merge(shop.owner), campaign_id)  # cancelled is the end


def test_illegal_moves_are_conflicts(app, shop):
    campaign_id = new_campaign(shop)
    with tx() as session:
        for to in (S.sending, S.tracking, S.done, S.paused):
            with pytest.raises(Conflict):
                move(session, campaign_id, to)
        with pytest.raises(Conflict):  # the state it is not in
            move(session, campaign_id, S.planning, expect=S.scheduled)
    assert history(campaign_id) == [(None, S.draft, shop.owner.id)]


def test_a_window_already_over_cannot_launch(app, shop):
    past = utcnow() - timedelta(days=3)
    campaign_id = new_campaign(shop, send_from=past, send_until=past + timedelta(days=1))
    with tx() as session, pytest.raises(Invalid):
        launch(session, session.merge(shop.owner), campaign_id)


def test_two_people_launching_at_once_make_one_move(app, shop):
    campaign_id = new_campaign(shop)
    results: list[str] = []
    barrier = threading.Barrier(4)
    flask_app = app

    def attempt():
        with flask_app.app_context():
            barrier.wait()
            try:
                with tx() as session:
                    launch(session, session.merge(shop.owner), campaign_id)
                results.append("ok")
            except Conflict:
                results.append("conflict")
            finally:
                db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 3 + ["ok"]
    assert [h[1] for h in history(campaign_id)] == [S.draft, S.scheduled]


def test_other_tenants_see_nothing(app, shop):
    campaign_id = new_campaign(shop)
    with tx() as session:
        other = make_shop(session, make_circle(session), name="湘味")
    with tx() as session:
        for action in (get_campaign_for, launch, pause, resume, cancel):
            with pytest.raises(NotFound):
                action(session, session.merge(other.owner), campaign_id)
        with pytest.raises(Forbidden):
            create_campaign(session, session.merge(shop.cashier), CampaignInput(
                name="x", message="m", reason="r", template_ids=[1], send_from=utcnow(),
                send_until=utcnow() + timedelta(days=1)))
    db.session.remove()
    assert db.session.get(Campaign, campaign_id).state == S.draft


def test_linli_campaign_status_prints_state_audience_and_history(app, shop, runner):
    campaign_id = new_campaign(shop)
    with tx() as session:
        launch(session, session.merge(shop.owner), campaign_id)
    result = runner.invoke(main, ["campaign", "status", str(campaign_id)])
    assert result.exit_code == 0, result.output
    assert f"campaign {campaign_id} '周末川菜'" in result.output and ": scheduled" in result.output
    assert "0 eligible; excluded: erased 0, opted_out 0, unreachable 0, capped 0" in result.output
    assert "— → draft" in result.output and "draft → scheduled" in result.output
    missing = runner.invoke(main, ["campaign", "status", "999999"])
    assert missing.exit_code != 0 and "no campaign 999999" in missing.output
