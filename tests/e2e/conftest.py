"""A live stack over real HTTP: the app and the WeCom simulator, each on a loopback port,
pointed at each other (the simulator posts callbacks to the app; the app calls the
simulator's /cgi-bin/). Jobs run in the test process with a real RQ worker in burst mode."""
from __future__ import annotations


import pytest

from core.db import db
from tests.conftest import BACKENDS, LiveServer, _truncate_all, make_test_app
from tests.stack import Stack




@pytest.fixture(scope="module")
def stack(tmp_path_factory, database_urls, redis_url):
    from wecom.simulator import create_simulator_app

    tmp = tmp_path_factory.mktemp("stack")
    app_server, sim_server = LiveServer(), LiveServer()
    sim_app = create_simulator_app(
        {
            "WECOM_SIM_DATABASE_URL": f"sqlite:///{tmp / 'sim.db'}",
            "WECOM_SIM_PUBLIC_URL": sim_server.url,
            "WECOM_SIM_CALLBACK_URL": f"{app_server.url}/wecom/callback",
        }
    )
    sim_server.app = sim_app
    backend = BACKENDS[-1]  # PostgreSQL when CI provides it
    app = make_test_app(
        tmp / "instance",
        database_urls[backend],
        redis_url,
        WECOM_API_BASE=f"{sim_server.url}/cgi-bin/",
        WECHAT_OA_API_BASE=f"{sim_server.url}/",
        WECHAT_OA_AUTHORIZE_URL=f"{sim_server.url}/connect/oauth2/authorize",
        PUBLIC_BASE_URL=app_server.url,
    )
    app_server.app = app
    stack = Stack(app, app_server, sim_app, sim_server)
    with app.app_context():
        yield stack
        db.session.remove()
        _truncate_all(database_urls[backend])
    app.extensions["redis"].flushdb()
    app.extensions["redis"].close()
    stack.http.close()
    app_server.stop()
    sim_server.stop()
