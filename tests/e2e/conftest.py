"""End-to-end tests over real HTTP: the app and the WeCom simulator on loopback ports,
pointed at each other (the simulator posts callbacks to the app; the app calls the
simulator's /cgi-bin/). Jobs run in the test process with a real RQ worker in burst mode."""
from __future__ import annotations

from tests.support.stack import stack  # noqa: F401  (module-scoped live app + simulator)
