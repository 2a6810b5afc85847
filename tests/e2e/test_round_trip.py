"""The foundation's round trip over real HTTP, with nothing stubbed: the app creates a
contact way through its WeCom client; a simulated diner scans it; the simulator posts the
encrypted ``add_external_contact`` callback to ``/wecom/callback``; a real RQ worker job
handles it and calls ``send_welcome_msg`` inside WeCom's 20 s welcome-code window; the
diner's phone page shows the welcome text."""
from __future__ import annotations

import time

from core.wecom import get_wecom

DINER, MEMBER = "xiaomei", "liuyang"


def _welcomes(stack) -> list[dict]:
    inbox = stack.http.get(f"{stack.sim_url}/sim/admin/inbox/{DINER}").json()["messages"]
    return [m for m in inbox if m["source"] == "welcome"]


def test_scan_to_welcome_round_trip(stack):
    way = get_wecom().contact_way.add(type=1, scene=2, user=[MEMBER], skip_verify=True)
    assert way["config_id"] and way["qr_code"].startswith(stack.sim_url)
    # The QR image is served by the simulator and encodes a URL the phone view understands.
    assert stack.http.get(way["qr_code"]).headers["content-type"] == "image/png"

    scanned_at = time.monotonic()
    scan = stack.http.post(
        f"{stack.sim_url}/sim/admin/scan", json={"wechat_user": DINER, "config_id": way["config_id"]}
    )
    assert scan.status_code == 200, scan.text

    welcomes = stack.wait_for(lambda: _welcomes(stack), timeout=20)
    # The simulator refuses welcome codes older than 20 s (41050), so a delivered welcome is
    # proof the job ran inside the window; measure it as well.
    assert time.monotonic() - scanned_at < 20
    assert len(welcomes) == 1
    message = welcomes[0]
    assert message["from"] == MEMBER
    assert message["msgtype"] == "text"
    text = message["text"]["content"]
    assert "欢迎" in text

    # The callback really came over HTTP, encrypted, and the app answered it.
    delivered = stack.http.get(f"{stack.sim_url}/sim/admin/callbacks").json()
    adds = [c for c in delivered["callbacks"] if c["change_type"] == "add_external_contact"]
    assert adds and adds[0]["status"] == "delivered", adds

    phone = stack.http.get(f"{stack.sim_url}/phone/{DINER}")
    assert phone.status_code == 200
    assert text.splitlines()[0] in phone.text
