"""The clients: `BillingClient` (sync) and `AsyncBillingClient`, one behaviour, over httpx."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import random
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import httpx

from ._mapping import usage_event
from ._token import _Tokens

MAX_BATCH = 1000
RETRIED_STATUSES = (429, 503)


class BillingError(Exception):
    """The service refused a request: `status` and its `code` and `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Access:
    tenant_id: str
    allowed: bool
    reason: str
    until: Optional[str]


@dataclasses.dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    subdomain: str
    is_demo: bool


@dataclasses.dataclass(frozen=True)
class UsageResult:
    accepted: int = 0
    duplicates: int = 0
    #: Records not sent: of a type that is not billed, or without words.
    not_billed: int = 0

    def __add__(self, other: "UsageResult") -> "UsageResult":
        return UsageResult(
            self.accepted + other.accepted,
            self.duplicates + other.duplicates,
            self.not_billed + other.not_billed,
        )


@dataclasses.dataclass(frozen=True)
class UsageRecord:
    """A usage record as the platform stores it (`usage_records`)."""

    tenant_id: str
    usage_type: str
    amount: Union[int, str, float, Any]
    record_id: str
    occurred_at: Optional[_dt.datetime] = None
    call_id: Optional[str] = None
    metadata: Optional[Mapping[str, Any]] = None


def _error(resp: httpx.Response) -> BillingError:
    try:
        body = resp.json()
        return BillingError(resp.status_code, str(body.get("code", "")), str(body.get("detail", "")))
    except ValueError:
        return BillingError(resp.status_code, "", resp.text[:200])


def _retry_after(resp: Optional[httpx.Response], attempt: int) -> float:
    if resp is not None:
        raw = resp.headers.get("retry-after")
        if raw:
            try:
                return max(0.0, float(raw))
            except ValueError:
                pass
    return min(30.0, 0.25 * (2**attempt)) * (0.5 + random.random() / 2)


def _events(records: Iterable[Union[UsageRecord, Mapping[str, Any]]]) -> "tuple[List[Dict[str, Any]], int]":
    events: List[Dict[str, Any]] = []
    skipped = 0
    for r in records:
        rec = r if isinstance(r, UsageRecord) else UsageRecord(**dict(r))
        e = usage_event(
            rec.tenant_id, rec.usage_type, rec.amount, rec.record_id, rec.occurred_at, rec.call_id, rec.metadata
        )
        if e is None:
            skipped += 1
        else:
            events.append(e)
    return events, skipped


class _Base:
    def __init__(
        self,
        base_url: str,
        *,
        jwt_secret: Optional[Union[str, bytes]] = None,
        token: Optional[str] = None,
        audience: Optional[str] = None,
        issuer: Optional[str] = None,
        max_retries: int = 5,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens = _Tokens(jwt_secret, token, audience, issuer)
        self.max_retries = max_retries

    def _headers(self, role: str) -> Dict[str, str]:
        return {"Authorization": f"Bearer {self._tokens.for_role(role)}"}


class BillingClient(_Base):
    """Synchronous client. `jwt_secret=` mints its own tokens; `token=` uses the one given."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, transport: Any = None, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "BillingClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _request(self, method: str, path: str, role: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            resp: Optional[httpx.Response] = None
            try:
                resp = self._http.request(method, self.base_url + path, headers=self._headers(role), **kw)
                if resp.status_code not in RETRIED_STATUSES:
                    return resp
            except httpx.TransportError:
                if attempt >= self.max_retries:
                    raise
            if attempt >= self.max_retries:
                assert resp is not None
                return resp
            time.sleep(_retry_after(resp, attempt))
            attempt += 1

    def _send(self, events: List[Dict[str, Any]]) -> UsageResult:
        total = UsageResult()
        for i in range(0, len(events), MAX_BATCH):
            resp = self._request("POST", "/api/usage/events", "service", json={"events": events[i : i + MAX_BATCH]})
            if resp.status_code != 200:
                raise _error(resp)
            body = resp.json()
            total = total + UsageResult(body["accepted"], body["duplicates"])
        return total

    def record_usage(
        self,
        tenant_id: str,
        usage_type: str,
        amount: Any,
        record_id: str,
        occurred_at: Optional[_dt.datetime] = None,
        call_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> UsageResult:
        """Sends one usage record (nothing for a type that is not billed)."""
        return self.record_usage_many([UsageRecord(tenant_id, usage_type, amount, record_id, occurred_at, call_id, metadata)])

    def record_usage_many(self, records: Iterable[Union[UsageRecord, Mapping[str, Any]]]) -> UsageResult:
        """Sends records in batches of 1,000 (each batch all or nothing)."""
        events, skipped = _events(records)
        return self._send(events) + UsageResult(not_billed=skipped)

    def access(self, tenant_id: str) -> Access:
        resp = self._request("GET", "/api/billing/access", "service", params={"tenant_id": tenant_id})
        if resp.status_code != 200:
            raise _error(resp)
        b = resp.json()
        return Access(b["tenant_id"], b["allowed"], b["reason"], b.get("until"))

    def ensure_tenant(self, id: str, name: str, subdomain: str) -> Tenant:
        """Registers the organization unless it is registered already (then returns it as it is)."""
        body = {"id": id, "name": name, "subdomain": subdomain}
        resp = self._request("POST", "/api/admin/tenants", "super_admin", json=body)
        if resp.status_code == 409:
            listing = self._request("GET", "/api/admin/tenants", "super_admin")
            found = _find_tenant(listing, id)
            if found is not None:
                return found
        if resp.status_code not in (200, 201):
            raise _error(resp)
        return _tenant(resp.json())


class AsyncBillingClient(_Base):
    """Asynchronous client, the same calls as `BillingClient`, awaited."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, transport: Any = None, **kw: Any) -> None:
        super().__init__(base_url, **kw)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncBillingClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, role: str, **kw: Any) -> httpx.Response:
        attempt = 0
        while True:
            resp: Optional[httpx.Response] = None
            try:
                resp = await self._http.request(method, self.base_url + path, headers=self._headers(role), **kw)
                if resp.status_code not in RETRIED_STATUSES:
                    return resp
            except httpx.TransportError:
                if attempt >= self.max_retries:
                    raise
            if attempt >= self.max_retries:
                assert resp is not None
                return resp
            await asyncio.sleep(_retry_after(resp, attempt))
            attempt += 1

    async def _send(self, events: List[Dict[str, Any]]) -> UsageResult:
        total = UsageResult()
        for i in range(0, len(events), MAX_BATCH):
            resp = await self._request(
                "POST", "/api/usage/events", "service", json={"events": events[i : i + MAX_BATCH]}
            )
            if resp.status_code != 200:
                raise _error(resp)
            body = resp.json()
            total = total + UsageResult(body["accepted"], body["duplicates"])
        return total

    async def record_usage(
        self,
        tenant_id: str,
        usage_type: str,
        amount: Any,
        record_id: str,
        occurred_at: Optional[_dt.datetime] = None,
        call_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> UsageResult:
        return await self.record_usage_many(
            [UsageRecord(tenant_id, usage_type, amount, record_id, occurred_at, call_id, metadata)]
        )

    async def record_usage_many(self, records: Iterable[Union[UsageRecord, Mapping[str, Any]]]) -> UsageResult:
        events, skipped = _events(records)
        return await self._send(events) + UsageResult(not_billed=skipped)

    async def access(self, tenant_id: str) -> Access:
        resp = await self._request("GET", "/api/billing/access", "service", params={"tenant_id": tenant_id})
        if resp.status_code != 200:
            raise _error(resp)
        b = resp.json()
        return Access(b["tenant_id"], b["allowed"], b["reason"], b.get("until"))

    async def ensure_tenant(self, id: str, name: str, subdomain: str) -> Tenant:
        body = {"id": id, "name": name, "subdomain": subdomain}
        resp = await self._request("POST", "/api/admin/tenants", "super_admin", json=body)
        if resp.status_code == 409:
            listing = await self._request("GET", "/api/admin/tenants", "super_admin")
            found = _find_tenant(listing, id)
            if found is not None:
                return found
        if resp.status_code not in (200, 201):
            raise _error(resp)
        return _tenant(resp.json())


def _tenant(b: Mapping[str, Any]) -> Tenant:
    return Tenant(b["id"], b["name"], b["subdomain"], bool(b.get("is_demo", False)))


def _find_tenant(listing: httpx.Response, id: str) -> Optional[Tenant]:
    if listing.status_code != 200:
        return None
    body = listing.json()
    rows = body.get("tenants", body) if isinstance(body, dict) else body
    for t in rows:
        if t.get("id") == id:
            return _tenant(t)
    return None
