"""Imports every model module so ``Base.metadata`` is complete (Alembic, tests)."""
from marketplace import wecom_events  # noqa: F401
from marketplace.auth import models as auth_models  # noqa: F401
from merchants import models as merchant_models  # noqa: F401
from merchants import channels  # noqa: F401
from coupons import models as coupon_models  # noqa: F401
from marketplace.residents import models as resident_models  # noqa: F401

from marketplace.db import Base

metadata = Base.metadata
