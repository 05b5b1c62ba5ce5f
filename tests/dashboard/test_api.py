"""The dashboard's JSON API and pages over a real SQLite store (no browser)."""

from __future__ import annotations

import re

import httpx

from batchwork.jobs import JobProcessor

from .conftest import Seeded


async def test_api_jobs_lists_newest_first_with_filters(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    body = (await client.get("/api/jobs")).json()
    ids = [j["id"] for j in body["jobs"]]
    assert ids == sorted(ids, reverse=True)
    assert set(ids) == {seeded.finished, seeded.errored, seeded.pending, seeded.script}
    errored = (await client.get("/api/jobs", params={"status": "errored"})).json()["jobs"]
    assert [j["id"] for j in errored] == [seeded.errored]
    assert "RuntimeError: could not parse the report" in errored[0]["error"]
    assert "ValueError" in errored[0]["error"]  # the __cause__ chain is kept
    named = (await client.get("/api/jobs", params={"name": "slow"})).json()["jobs"]
    assert [j["id"] for j in named] == [seeded.pending]


async def test_api_jobs_pages_with_offset(client: httpx.AsyncClient, seeded: Seeded) -> None:
    first = (await client.get("/api/jobs", params={"limit": 3})).json()
    second = (await client.get("/api/jobs", params={"limit": 3, "offset": 3})).json()
    assert first["has_more"] is True
    assert second["has_more"] is False
    assert len(first["jobs"]) == 3
    assert len(second["jobs"]) == 1
    assert {j["id"] for j in first["jobs"]}.isdisjoint(j["id"] for j in second["jobs"])


async def test_api_job_stats_overview_crons_workers(
    client: httpx.AsyncClient, seeded: Seeded
) -> None:
    job = (await client.get(f"/api/jobs/{seeded.finished}")).json()
    assert job["status"] == "finished"
    assert job["result"] == 5
    assert (await client.get("/api/jobs/999999")).status_code == 404
    stats = (await client.get("/api/stats")).json()
    assert stats["by_status"] == {"finished": 1, "errored": 1, "pending": 2}
    overview = (await client.get("/api/overview")).json()
    assert sum(p["finished"] for p in overview["timeline"]) == 1
    assert sum(p["failed"] for p in overview["timeline"]) == 1
    crons = (await client.get("/api/crons")).json()
    assert [c["name"] for c in crons] == ["nightly"]
    assert crons[0]["description"]
    assert (await client.get("/api/workers")).json() == []
    assert (await client.get("/api/jobs", params={"status": "bogus"})).status_code == 400


async def test_api_actions_enqueue_cancel_retry(
    client: httpx.AsyncClient, processor: JobProcessor, seeded: Seeded
) -> None:
    created = await client.post("/api/jobs", json={"name": "add", "payload": {"a": 1, "b": 1}})
    assert created.status_code == 201
    job_id = created.json()["id"]
    assert (await processor.get(job_id)).payload == {"a": 1, "b": 1}
    cancel = await client.post(f"/api/jobs/{job_id}/cancel", json={})
    assert cancel.json() == {"id": job_id, "changed": True}
    assert (await processor.get(job_id)).status == "cancelled"
    again = await client.post(f"/api/jobs/{job_id}/cancel", json={})
    assert again.json()["changed"] is False
    retry = await client.post(f"/api/jobs/{job_id}/retry", json={})
    assert retry.json() == {"id": job_id, "changed": True}
    assert (await processor.get(job_id)).status == "pending"


async def test_api_enqueue_refuses_unknown_names_and_bad_bodies(client: httpx.AsyncClient) -> None:
    unknown = await client.post("/api/jobs", json={"name": "nope"})
    assert unknown.status_code == 400
    assert "nope" in unknown.json()["error"]
    not_json = await client.post(
        "/api/jobs", content=b"{bad", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    not_strict = await client.post(
        "/api/jobs",
        content=b'{"name": "add", "payload": {"x": NaN}}',
        headers={"content-type": "application/json"},
    )
    assert not_strict.status_code == 400
    assert "JSON" in not_strict.json()["error"]


async def test_actions_refuse_cross_site_requests(
    client: httpx.AsyncClient, processor: JobProcessor, seeded: Seeded
) -> None:
    url = f"/api/jobs/{seeded.pending}/cancel"
    evil = await client.post(url, json={}, headers={"origin": "http://evil.example"})
    assert evil.status_code == 403
    fetch_site = await client.post(url, json={}, headers={"sec-fetch-site": "cross-site"})
    assert fetch_site.status_code == 403
    # A cross-site <form> can only send "simple" content types: refused.
    simple = await client.post(url, content=b"{}", headers={"content-type": "text/plain"})
    assert simple.status_code == 415
    assert (await processor.get(seeded.pending)).status == "pending"


async def test_form_actions_need_the_csrf_token(
    client: httpx.AsyncClient, processor: JobProcessor, seeded: Seeded
) -> None:
    url = f"/jobs/{seeded.pending}/cancel"
    refused = await client.post(url, data={"csrf": "guess"})
    assert refused.status_code == 403
    assert (await processor.get(seeded.pending)).status == "pending"
    page = (await client.get(f"/jobs/{seeded.pending}")).text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match is not None
    done = await client.post(url, data={"csrf": match[1]})
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/jobs/{seeded.pending}?")
    assert (await processor.get(seeded.pending)).status == "cancelled"


async def test_token_guards_pages_api_and_actions(processor: JobProcessor, seeded: Seeded) -> None:
    from .conftest import client_for

    async with client_for(processor, token="s3cret") as anon:
        assert (await anon.get("/api/jobs")).status_code == 401
        page = await anon.get("/")
        assert page.status_code == 401
        assert 'name="token"' in page.text
        cancel = await anon.post(f"/api/jobs/{seeded.pending}/cancel", json={})
        assert cancel.status_code == 401
        wrong = await anon.get("/api/jobs", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        bearer = await anon.get("/api/jobs", headers={"authorization": "Bearer s3cret"})
        assert bearer.status_code == 200
        login = await anon.post("/login", data={"token": "s3cret"})
        assert login.status_code == 303
        assert "httponly" in login.headers["set-cookie"].lower()
        assert "samesite=strict" in login.headers["set-cookie"].lower()
        assert (await anon.get("/api/jobs")).status_code == 200  # the cookie now
    assert (await processor.get(seeded.pending)).status == "pending"


async def test_host_check_blocks_dns_rebinding(processor: JobProcessor) -> None:
    from .conftest import client_for

    hosts = ("127.0.0.1", "localhost")
    async with client_for(processor, allowed_hosts=hosts) as local:
        assert (await local.get("/api/jobs")).status_code == 200
    async with client_for(processor, allowed_hosts=hosts, base_url="http://evil.example") as c:
        assert (await c.get("/api/jobs")).status_code == 400


async def test_pages_render_and_escape_payloads(client: httpx.AsyncClient, seeded: Seeded) -> None:
    for path in ("/", "/jobs", "/jobs?status=errored", "/crons", "/workers"):
        response = await client.get(path)
        assert response.status_code == 200, path
        assert "script-src 'self'" in response.headers["content-security-policy"]
    detail = (await client.get(f"/jobs/{seeded.script}")).text
    assert "<script>window.__pwned" not in detail
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in detail
    assert "&lt;img src=x onerror=" in detail
    assert "<img" not in detail
    errored = (await client.get(f"/jobs/{seeded.errored}")).text
    assert "Traceback (most recent call last)" in errored
    assert (await client.get("/jobs/999999")).status_code == 404


async def test_mounted_under_a_prefix_links_stay_inside(processor: JobProcessor) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from batchwork.dashboard import create_app

    outer = Starlette(routes=[Mount("/admin/jobs", create_app(processor))])
    transport = httpx.ASGITransport(app=outer)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        page = await c.get("/admin/jobs/jobs")
        assert page.status_code == 200
        assert 'href="/admin/jobs/static/style.css"' in page.text
        assert 'href="/admin/jobs/crons"' in page.text
        assert (await c.get("/admin/jobs/static/live.js")).status_code == 200
        assert (await c.get("/admin/jobs/api/jobs")).json()["jobs"] == []


async def test_token_in_the_url_sets_the_cookie_and_leaves_the_url(
    processor: JobProcessor,
) -> None:
    from .conftest import client_for

    async with client_for(processor, token="s3cret") as browser:
        wrong = await browser.get("/jobs", params={"token": "nope", "status": "errored"})
        assert wrong.status_code == 303
        assert "set-cookie" not in wrong.headers
        opened = await browser.get("/jobs", params={"token": "s3cret", "status": "errored"})
        assert opened.status_code == 303
        assert opened.headers["location"] == "/jobs?status=errored"
        assert (await browser.get("/jobs?status=errored")).status_code == 200


async def test_overview_ranges_and_bad_numbers(client: httpx.AsyncClient, seeded: Seeded) -> None:
    for key, buckets in (("5m", 61), ("1h", 61), ("24h", 61)):
        body = (await client.get("/api/overview", params={"range": key})).json()
        assert len(body["timeline"]) in {buckets, buckets + 1}
        assert sum(p["finished"] for p in body["timeline"]) == 1
    assert (await client.get("/api/jobs", params={"limit": "many"})).status_code == 400
