"""The package against the real binary (`thanotopolis-billing serve` on a fresh SQLite database).

Run by scripts/python-client/run.sh: `BILLING_BIN=target/debug/thanotopolis-billing python -m unittest`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid

import httpx

import thanotopolis_billing as tb
from thanotopolis_billing.fastapi import require_access

ROOT = pathlib.Path(__file__).resolve().parents[3]
SECRET = "python-client-tests-secret-with-entropy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """`serve` in a process of its own, with only the variables given."""

    def __init__(self, **env: str) -> None:
        self.dir = tempfile.mkdtemp(prefix="billing-py-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        binary = os.environ.get("BILLING_BIN", str(ROOT / "target/debug/thanotopolis-billing"))
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": f"sqlite://{self.dir}/billing.db",
            "BIND": f"127.0.0.1:{self.port}",
            "JWT_SECRET": SECRET,
            **env,
        }
        self.log = open(os.path.join(self.dir, "service.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve"], cwd=self.dir, env=variables, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the service did not start: " + open(self.log.name).read())
            time.sleep(0.05)

    def admin(self) -> dict:
        return {"Authorization": "Bearer " + tb.mint_token(SECRET, role="super_admin")}

    def usage(self, tenant: str) -> dict:
        r = httpx.get(f"{self.url}/api/billing/dashboard", params={"tenant_id": tenant}, headers=self.admin())
        r.raise_for_status()
        return r.json()["current_period_usage"]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


SERVICE: Service


def setUpModule() -> None:
    global SERVICE
    SERVICE = Service()


def tearDownModule() -> None:
    SERVICE.stop()


def new_tenant(client: tb.BillingClient) -> str:
    tid = str(uuid.uuid4())
    client.ensure_tenant(tid, "Org " + tid[:8], "org-" + tid[:8])
    return tid


class MappingTest(unittest.TestCase):
    def test_the_followers_cases_map_the_same(self) -> None:
        cases = json.loads((ROOT / "testdata/platform/mapping_cases.json").read_text())
        for case in cases:
            row, expect = case["row"], case["expect"]
            args = ("t", row["usage_type"], row["amount"], row["id"], None, row["call_id"])
            if isinstance(expect, dict) and "held" in expect:
                with self.assertRaises(tb.UnbillableRecord) as e:
                    tb.usage_event(*args)
                self.assertEqual(e.exception.reason, expect["held"])
                continue
            event = tb.usage_event(*args)
            if expect == "not_billed":
                self.assertIsNone(event, case)
            else:
                assert event is not None
                self.assertEqual(
                    (event["event_id"], event["type"], event["quantity"]),
                    (expect["event_id"], expect["type"], expect["quantity"]),
                )

    def test_tokens_are_hs256_with_the_claims(self) -> None:
        token = tb.mint_token("s", role="service", audience="billing")
        header, payload, _ = token.split(".")
        pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
        import base64

        self.assertEqual(json.loads(base64.urlsafe_b64decode(pad(header)))["alg"], "HS256")
        claims = json.loads(base64.urlsafe_b64decode(pad(payload)))
        self.assertEqual((claims["role"], claims["aud"]), ("service", "billing"))
        self.assertGreater(claims["exp"], time.time())
        with self.assertRaises(ValueError):
            tb.BillingClient("http://x", jwt_secret="a", token="b")


class UsageTest(unittest.TestCase):
    def setUp(self) -> None:
        self.client = tb.BillingClient(SERVICE.url, jwt_secret=SECRET)

    def tearDown(self) -> None:
        self.client.close()

    def test_ensure_tenant_is_idempotent(self) -> None:
        tid = str(uuid.uuid4())
        first = self.client.ensure_tenant(tid, "Acme", "acme-" + tid[:8])
        again = self.client.ensure_tenant(tid, "Acme", "acme-" + tid[:8])
        self.assertEqual(first, again)
        with self.assertRaises(tb.BillingError) as e:
            self.client.ensure_tenant(str(uuid.uuid4()), "Other", "acme-" + tid[:8])
        self.assertEqual(e.exception.status, 409)

    def test_a_call_recorded_by_two_paths_counts_once(self) -> None:
        tid = new_tenant(self.client)
        call = str(uuid.uuid4())
        now = dt.datetime.now(dt.timezone.utc)
        r = self.client.record_usage(tid, "stt_words", "120.0000", str(uuid.uuid4()), now, call)
        self.assertEqual(r, tb.UsageResult(accepted=1))
        self.client.record_usage(tid, "tts_words", 80, str(uuid.uuid4()), now, call)
        first = self.client.record_usage(tid, "telephony_minutes", 3, str(uuid.uuid4()), now, call)
        second = self.client.record_usage(tid, "telephony_minutes", 3, str(uuid.uuid4()), now, call)
        self.assertEqual((first.accepted, second.duplicates), (1, 1))
        skipped = self.client.record_usage(tid, "tokens", 5000, str(uuid.uuid4()), now)
        self.assertEqual(skipped, tb.UsageResult(not_billed=1))
        # The same record again (a retry after a lost answer): a duplicate.
        rid = str(uuid.uuid4())
        self.client.record_usage(tid, "stt_words", 5, rid, now)
        self.assertEqual(self.client.record_usage(tid, "stt_words", 5, rid, now).duplicates, 1)
        u = SERVICE.usage(tid)
        self.assertEqual(
            (u["total_stt_words"], u["total_tts_words"], u["total_phone_calls"]), (125, 80, 1)
        )

    def test_records_go_in_batches_of_a_thousand(self) -> None:
        tid = new_tenant(self.client)
        records = [tb.UsageRecord(tid, "tts_words", 2, str(uuid.uuid4())) for _ in range(2500)]
        self.assertEqual(self.client.record_usage_many(records).accepted, 2500)
        self.assertEqual(SERVICE.usage(tid)["total_tts_words"], 5000)

    def test_a_record_that_cannot_be_billed_is_refused_before_sending(self) -> None:
        with self.assertRaises(tb.UnbillableRecord):
            self.client.record_usage("t", "stt_words", "12.5", str(uuid.uuid4()))

    def test_the_async_client_does_the_same(self) -> None:
        tid = new_tenant(self.client)

        async def go() -> tb.UsageResult:
            async with tb.AsyncBillingClient(SERVICE.url, jwt_secret=SECRET) as client:
                await client.ensure_tenant(tid, "Org", "org-" + tid[:8])
                result = await client.record_usage(tid, "phone_calls", 1, str(uuid.uuid4()), call_id="c-" + tid)
                again = await client.record_usage(tid, "telephony_minutes", 0, str(uuid.uuid4()), call_id="c-" + tid)
                access = await client.access(tid)
                self.assertFalse(access.allowed)
                return result + again

        self.assertEqual(asyncio.run(go()), tb.UsageResult(accepted=1, duplicates=1))
        self.assertEqual(SERVICE.usage(tid)["total_phone_calls"], 1)


class AccessTest(unittest.TestCase):
    def test_access(self) -> None:
        client = tb.BillingClient(SERVICE.url, jwt_secret=SECRET)
        none, demo = new_tenant(client), new_tenant(client)
        httpx.post(
            f"{SERVICE.url}/api/billing/set-demo-status/{demo}?is_demo=true", headers=SERVICE.admin()
        ).raise_for_status()
        self.assertEqual(client.access(none), tb.Access(none, False, "none", None))
        self.assertEqual(client.access(demo).reason, "demo")
        with self.assertRaises(tb.BillingError) as e:
            client.access(str(uuid.uuid4()))
        self.assertEqual((e.exception.status, e.exception.code), (404, "tenant_not_found"))
        client.close()

    def test_the_fastapi_dependency_takes_the_organization_from_the_authenticated_user(self) -> None:
        from fastapi import Depends, FastAPI, Header, HTTPException
        from fastapi.testclient import TestClient

        client = tb.BillingClient(SERVICE.url, jwt_secret=SECRET)
        none, demo = new_tenant(client), new_tenant(client)
        unregistered = str(uuid.uuid4())
        httpx.post(
            f"{SERVICE.url}/api/billing/set-demo-status/{demo}?is_demo=true", headers=SERVICE.admin()
        ).raise_for_status()

        class User:
            """The platform's `User`: its organization is `tenant_id` (a UUID)."""

            def __init__(self, tenant_id: str) -> None:
                self.tenant_id = uuid.UUID(tenant_id)

        users = {"t-none": User(none), "t-demo": User(demo), "t-new": User(unregistered)}

        # The platform's get_current_active_user: the user from the bearer token.
        def current_user(authorization: str = Header("")) -> User:
            user = users.get(authorization.removeprefix("Bearer "))
            if user is None:
                raise HTTPException(status_code=401, detail="Not authenticated")
            return user

        def app_with(billing: object, **kw: object) -> TestClient:
            app = FastAPI()

            @app.get("/calls")
            def calls(access: tb.Access = Depends(require_access(billing, current_user, **kw))):  # type: ignore[arg-type]
                return {"reason": access.reason, "tenant": access.tenant_id}

            return TestClient(app)

        as_user = lambda t, **h: {"Authorization": f"Bearer {t}", **h}  # noqa: E731
        # One event loop for the app's life, as a server has (the async client's connections belong to it).
        with app_with(tb.AsyncBillingClient(SERVICE.url, jwt_secret=SECRET)) as web:
            # The platform's frontend sends the subdomain in X-Tenant-ID; a browser may send anything.
            for header in ("acme", demo):
                refused = web.get("/calls", headers=as_user("t-none", **{"X-Tenant-ID": header}))
                self.assertEqual(refused.status_code, 402, header)
                self.assertIn("suspended (none)", refused.json()["detail"])
            allowed = web.get("/calls", headers=as_user("t-demo", **{"X-Tenant-ID": "acme"}))
            self.assertEqual(allowed.json(), {"reason": "demo", "tenant": demo})
            # An organization billing does not know is refused, not let through as if billing were down.
            new = web.get("/calls", headers=as_user("t-new"))
            self.assertEqual(new.status_code, 402)
            self.assertIn("not registered", new.json()["detail"])
            self.assertEqual(web.get("/calls", headers={"X-Tenant-ID": demo}).status_code, 401)

        # The sync client too; and a dependency giving the id itself.
        web = app_with(client)
        self.assertEqual(web.get("/calls", headers=as_user("t-demo")).json()["reason"], "demo")
        app = FastAPI()

        @app.get("/calls")
        def by_id(access: tb.Access = Depends(require_access(client, lambda: demo))):
            return {"reason": access.reason}

        self.assertEqual(TestClient(app).get("/calls").json(), {"reason": "demo"})

        # Billing unreachable: fail_open decides (for a known user).
        down = tb.BillingClient("http://127.0.0.1:9", jwt_secret=SECRET, max_retries=0)
        self.assertEqual(app_with(down).get("/calls", headers=as_user("t-none")).json()["reason"], "unchecked")
        self.assertEqual(app_with(down, fail_open=False).get("/calls", headers=as_user("t-none")).status_code, 503)

        with self.assertRaises(TypeError):
            require_access(client)  # type: ignore[call-arg]
        with self.assertRaises(TypeError):
            require_access(client, None)  # type: ignore[arg-type]
        client.close()


class RetryTest(unittest.TestCase):
    def test_429_from_the_service_is_waited_off(self) -> None:
        limited = Service(USAGE_EVENTS_PER_SECOND_PER_TOKEN="100")
        try:
            client = tb.BillingClient(limited.url, jwt_secret=SECRET)
            tid = new_tenant(client)
            records = [tb.UsageRecord(tid, "stt_words", 1, str(uuid.uuid4())) for _ in range(300)]
            started = time.time()
            self.assertEqual(client.record_usage_many(records).accepted, 300)
            self.assertEqual(client.record_usage_many(records[:0] + [
                tb.UsageRecord(tid, "stt_words", 1, str(uuid.uuid4())) for _ in range(150)
            ]).accepted, 150)
            self.assertGreaterEqual(time.time() - started, 1.0, "waited for Retry-After")
            self.assertEqual(limited.usage(tid)["total_stt_words"], 450)
            client.close()
        finally:
            limited.stop()

    def test_503_and_network_errors_are_retried_honoring_retry_after(self) -> None:
        seen: list = []

        class Flaky(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                seen.append(time.time())
                self.rfile.read(int(self.headers["content-length"]))
                if len(seen) == 1:
                    self.connection.close()  # a network error
                    return
                if len(seen) == 2:
                    self.send_response(503)
                    self.send_header("Retry-After", "1")
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                body = b'{"accepted": 1, "duplicates": 0}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            client = tb.BillingClient(f"http://127.0.0.1:{server.server_port}", token="t")
            self.assertEqual(client.record_usage("t", "stt_words", 3, "r1").accepted, 1)
            self.assertEqual(len(seen), 3)
            self.assertGreaterEqual(seen[2] - seen[1], 1.0, "Retry-After honored")
        finally:
            server.shutdown()


if __name__ == "__main__":
    unittest.main()
