"""`require_access`: a FastAPI dependency that refuses an organization whose access is suspended."""

# No `from __future__ import annotations` here: FastAPI reads the dependencies' annotations at run time.

import logging
from typing import Any, Awaitable, Callable, Optional, Union

from ._client import Access, AsyncBillingClient, BillingClient, BillingError

log = logging.getLogger("thanotopolis_billing")

NOT_AUTHENTICATED = "Not authenticated: the organization of the caller is not known."
NOT_REGISTERED = (
    "This organization is not registered with billing (tenant_not_found): register it "
    "(ensure_tenant, or the billing service's follower of the platform's database) before it uses this."
)


def _tenant_of(caller: Any) -> Optional[str]:
    """The organization's id from what the `tenant_id` dependency gave: the id itself, or an object carrying
    it as `tenant_id` (the platform's `User`)."""
    if caller is None:
        return None
    tenant = getattr(caller, "tenant_id", caller)
    return str(tenant) if tenant else None


def require_access(
    client: Union[AsyncBillingClient, BillingClient],
    tenant_id: Callable[..., Any],
    *,
    fail_open: bool = True,
    status_code: int = 402,
) -> Callable[..., Awaitable[Access]]:
    """A dependency returning the organization's `Access`, or answering `status_code` (402 Payment Required)
    with the service's reason when it is not allowed.

    `tenant_id` is a dependency that gives the authenticated caller's organization: its id, or an object with
    a `tenant_id` attribute, such as the platform's `get_current_active_user`. It is required, and never a
    request header: the platform's frontend sends the organization's *subdomain* in `X-Tenant-ID`, and any
    header is the browser's to choose.

    An organization the billing service does not know (404 `tenant_not_found`) is refused with
    `status_code`, whatever `fail_open` says. Only when the billing service cannot be reached (or answers
    otherwise than expected) does `fail_open` decide: the request goes through (logged, reason
    `unchecked`) rather than locking every organization out, or with `fail_open=False` it gets 503.
    """
    if not callable(tenant_id):
        raise TypeError(
            "require_access needs tenant_id: a dependency giving the authenticated user's organization "
            "(e.g. the platform's get_current_active_user); the X-Tenant-ID header holds a subdomain and "
            "is not trusted"
        )
    from fastapi import Depends, HTTPException

    async def dependency(caller: Any = Depends(tenant_id)) -> Access:
        tenant = _tenant_of(caller)
        if not tenant:
            raise HTTPException(status_code=401, detail=NOT_AUTHENTICATED)
        try:
            if isinstance(client, AsyncBillingClient):
                access = await client.access(tenant)
            else:
                import anyio

                access = await anyio.to_thread.run_sync(client.access, tenant)
        except BillingError as e:
            if e.status == 404 and e.code == "tenant_not_found":
                raise HTTPException(status_code=status_code, detail=NOT_REGISTERED) from e
            return _unchecked(tenant, e, fail_open)
        except Exception as e:  # the service down or unreachable: decided by fail_open
            return _unchecked(tenant, e, fail_open)
        if not access.allowed:
            raise HTTPException(
                status_code=status_code,
                detail=f"This organization's access is suspended ({access.reason}): update billing to continue.",
            )
        return access

    return dependency


def _unchecked(tenant: str, error: Exception, fail_open: bool) -> Access:
    from fastapi import HTTPException

    if not fail_open:
        raise HTTPException(status_code=503, detail="Billing cannot be checked now; try again.") from error
    log.warning("billing access not checked for %s: %s", tenant, error)
    return Access(tenant, True, "unchecked", None)
