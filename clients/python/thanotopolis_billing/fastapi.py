"""`require_access`: a FastAPI dependency that refuses an organization whose access is suspended."""

# No `from __future__ import annotations` here: FastAPI reads the dependencies' annotations at run time.

import logging
from typing import Any, Awaitable, Callable, Optional, Union

from ._client import Access, AsyncBillingClient, BillingClient

log = logging.getLogger("thanotopolis_billing")


def _tenant_from_header(request: Any) -> Optional[str]:
    return request.headers.get("x-tenant-id")


def require_access(
    client: Union[AsyncBillingClient, BillingClient],
    tenant_id: Optional[Callable[..., Any]] = None,
    *,
    fail_open: bool = True,
    status_code: int = 402,
) -> Callable[..., Awaitable[Access]]:
    """A dependency returning the organization's `Access`, or answering `status_code` (402 Payment Required)
    with the service's reason when it is not allowed.

    `tenant_id` is a dependency that gives the organization's id (by default the `X-Tenant-ID` header the
    platform's frontend sends). When the billing service cannot be reached, `fail_open` lets the request
    through (logged) rather than locking every organization out.
    """
    from fastapi import Depends, HTTPException, Request

    def header_tenant(request: Request) -> Optional[str]:
        return _tenant_from_header(request)

    source = tenant_id or header_tenant

    async def dependency(tenant: Optional[str] = Depends(source)) -> Access:
        if not tenant:
            raise HTTPException(status_code=400, detail="The organization is not known: send X-Tenant-ID.")
        try:
            if isinstance(client, AsyncBillingClient):
                access = await client.access(str(tenant))
            else:
                import anyio

                access = await anyio.to_thread.run_sync(client.access, str(tenant))
        except Exception as e:  # the service down or refusing: decided by fail_open
            if not fail_open:
                raise HTTPException(status_code=503, detail="Billing cannot be checked now; try again.") from e
            log.warning("billing access not checked for %s: %s", tenant, e)
            return Access(str(tenant), True, "unchecked", None)
        if not access.allowed:
            raise HTTPException(
                status_code=status_code,
                detail=f"This organization's access is suspended ({access.reason}): update billing to continue.",
            )
        return access

    return dependency
