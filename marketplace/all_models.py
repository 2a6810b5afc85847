"""Imports every model module so ``Base.metadata`` is complete (Alembic, tests)."""
from accounts import models as account_models  # noqa: F401
from campaigns import models as campaign_models  # noqa: F401
from core import tally  # noqa: F401
from core.db import Base
from core.inbox import models as inbox_models  # noqa: F401
from coupons import models as coupon_models  # noqa: F401
from integrations import models as integration_models  # noqa: F401
from integrations import webhook_models  # noqa: F401
from merchants import models as merchant_models  # noqa: F401
from residents import models as resident_models  # noqa: F401
from stats import models as stat_models  # noqa: F401

metadata = Base.metadata
