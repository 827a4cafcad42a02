"""The Thanotopolis platform's client for thanotopolis-billing.

- `BillingClient` / `AsyncBillingClient(base_url, jwt_secret=... | token=...)`: `record_usage`,
  `record_usage_many`, `access`, `ensure_tenant`;
- `usage_event`: a usage record as the service bills it (the follower's mapping and event ids);
- `mint_token`: an HS256 token from the shared secret;
- `require_access` (in `thanotopolis_billing.fastapi`, re-exported here when FastAPI is installed).
"""

from ._client import (
    Access,
    AsyncBillingClient,
    BillingClient,
    BillingError,
    Tenant,
    UsageRecord,
    UsageResult,
)
from ._mapping import UnbillableRecord, call_event_id, record_event_id, usage_event
from ._token import mint_token

__all__ = [
    "Access",
    "AsyncBillingClient",
    "BillingClient",
    "BillingError",
    "Tenant",
    "UnbillableRecord",
    "UsageRecord",
    "UsageResult",
    "call_event_id",
    "mint_token",
    "record_event_id",
    "require_access",
    "usage_event",
]


def require_access(*args, **kwargs):  # type: ignore[no-untyped-def]
    """See `thanotopolis_billing.fastapi.require_access` (needs FastAPI)."""
    from .fastapi import require_access as _require_access

    return _require_access(*args, **kwargs)
