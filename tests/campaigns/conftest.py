"""Campaign fixtures: the live stack (app + WeCom simulator over HTTP) for dispatch tests."""
from __future__ import annotations

from tests.support.stack import stack  # noqa: F401  (module-scoped live app + simulator)
