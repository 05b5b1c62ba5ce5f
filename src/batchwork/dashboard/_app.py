"""The dashboard's ASGI app: HTML pages and a JSON API over the processor's admin API.

Security model, in one place:

* **Token.** With ``token`` set, every page, API call and action needs it: an
  ``Authorization: Bearer`` header, or the HttpOnly ``SameSite=Strict`` cookie set by the
  login form (or by opening any page once with ``?token=…``).
* **CSRF.** Actions are POSTs only. A cross-site request is refused by its ``Origin`` /
  ``Sec-Fetch-Site`` headers; forms also carry a per-app CSRF token, and API calls must be
  ``application/json`` (which a cross-site page cannot send without a CORS preflight,
  and the dashboard answers none).
* **Host.** Requests must name an allowed host, so a DNS-rebinding page cannot reach a
  dashboard on loopback.
* **Escaping.** Jinja autoescapes every value, and a Content-Security-Policy without
  ``unsafe-inline`` stops any script that is not the dashboard's own file.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from batchwork.cli._render import STATUS_STYLES, span, when
from batchwork.errors import BatchworkError, JobNotFound
from batchwork.jobs import JobStatus

from ._charts import fill_buckets, throughput_chart
from ._views import (
    Refused,
    by_name,
    by_status,
    form_fields,
    job_events,
    job_names,
    json_response,
    pretty,
    query_int,
    security_headers,
)

if TYPE_CHECKING:
    from batchwork.jobs import Job, JobProcessor

HERE = Path(__file__).parent
PAGE_SIZE = 50
COOKIE = "batchwork_token"
RANGES = {"5m": 300, "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400}
Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    processor: JobProcessor,
    *,
    token: str | None = None,
    allowed_hosts: Sequence[str] | None = None,
    refresh_interval: float = 2.0,
) -> Starlette:
    """The dashboard as an ASGI app, standalone or mounted inside your own app.

    ``token``: required for pages, the API and actions when given. ``allowed_hosts``:
    ``Host`` header values accepted (default: any when mounted by you; ``serve`` passes
    the loopback names). ``refresh_interval``: seconds between live refreshes.

    Example::

        from starlette.routing import Mount
        app = Starlette(routes=[Mount("/jobs-admin", create_app(processor, token="s3cret"))])
    """
    return Dashboard(processor, token, allowed_hosts, refresh_interval).app


class Dashboard:
    """The pages, API routes and guards of one dashboard app."""

    def __init__(
        self,
        processor: JobProcessor,
        token: str | None,
        allowed_hosts: Sequence[str] | None,
        refresh_interval: float,
    ) -> None:
        self.processor = processor
        self.token = token
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.refresh_ms = int(refresh_interval * 1000)
        self.csrf = secrets.token_urlsafe(32)
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )
        self.env.filters.update(when=when, span=span, pretty=pretty)
        page, api, act = self._page, self._api, self._action
        self.app = Starlette(
            lifespan=self._lifespan,
            routes=[
                Route("/", page(self.overview), name="overview"),
                Route("/jobs", page(self.jobs_page), name="jobs"),
                Route("/jobs/new", act(self.enqueue_form), methods=["POST"]),
                Route("/jobs/{job_id:int}", page(self.job_page), name="job"),
                Route("/jobs/{job_id:int}/cancel", act(self.cancel_form), methods=["POST"]),
                Route("/jobs/{job_id:int}/retry", act(self.retry_form), methods=["POST"]),
                Route("/crons", page(self.crons_page), name="crons"),
                Route("/workers", page(self.workers_page), name="workers"),
                Route("/login", self.login, methods=["GET", "POST"]),
                Route("/api/overview", api(self.api_overview)),
                Route("/api/stats", api(self.api_stats)),
                Route("/api/timeline", api(self.api_timeline)),
                Route("/api/jobs", api(self.api_jobs)),
                Route("/api/jobs", act(self.api_enqueue, json_api=True), methods=["POST"]),
                Route("/api/jobs/{job_id:int}", api(self.api_job)),
                Route(
                    "/api/jobs/{job_id:int}/cancel",
                    act(self.api_cancel, json_api=True),
                    methods=["POST"],
                ),
                Route(
                    "/api/jobs/{job_id:int}/retry",
                    act(self.api_retry, json_api=True),
                    methods=["POST"],
                ),
                Route("/api/crons", api(self.api_crons)),
                Route("/api/workers", api(self.api_workers)),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ],
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        # Run standalone (``batchwork dashboard``), the app owns this loop's store
        # connections; mounted in another app, this never runs and the host app decides.
        yield
        await self.processor.close()

    # -- guards ------------------------------------------------------------------------
    def _check_host(self, request: Request) -> None:
        if self.allowed_hosts is None:
            return
        host = request.headers.get("host", "").rsplit(":", 1)[0].strip("[]").lower()
        if host not in self.allowed_hosts:
            raise Refused(400, f"host {host!r} is not allowed")

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def _same_origin(self, request: Request) -> None:
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise Refused(403, "cross-site request refused")
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            if urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
                raise Refused(403, f"cross-origin request from {origin} refused")
        elif origin == "null":
            raise Refused(403, "request from an opaque origin refused")

    def _page(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                self._check_host(request)
                if self.token is not None and "token" in request.query_params:
                    return self._login_redirect(request, request.query_params["token"])
                if not self._authorized(request):
                    return self._render(request, "login.html", {"failed": False}, status=401)
                return await endpoint(request)
            except Refused as exc:
                return self._render(request, "error.html", {"message": exc.message}, exc.status)
            except JobNotFound as exc:
                return self._render(request, "error.html", {"message": str(exc)}, 404)

        return guarded

    def _api(self, endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                self._check_host(request)
                if not self._authorized(request):
                    raise Refused(401, "a valid token is required")
                return await endpoint(request)
            except Refused as exc:
                return json_response({"error": exc.message}, exc.status)
            except JobNotFound as exc:
                return json_response({"error": str(exc)}, 404)
            except (BatchworkError, ValueError) as exc:
                return json_response({"error": str(exc)}, 400)

        return guarded

    def _action(self, endpoint: Endpoint, *, json_api: bool = False) -> Endpoint:
        async def check(request: Request) -> Response:
            self._same_origin(request)
            if json_api:
                media = request.headers.get("content-type", "").split(";")[0].strip()
                if media != "application/json":
                    raise Refused(415, "actions take application/json")
            else:
                form = await form_fields(request)
                given = str(form.get("csrf", ""))
                if not hmac.compare_digest(given.encode(), self.csrf.encode()):
                    raise Refused(403, "missing or wrong CSRF token; reload the page")
            return await endpoint(request)

        return self._api(check) if json_api else self._page(check)

    def _login_redirect(self, request: Request, given: str) -> Response:
        query = {k: v for k, v in request.query_params.items() if k != "token"}
        target = request.url.path + ("?" + urlencode(query) if query else "")
        response = RedirectResponse(target, status_code=303)
        if hmac.compare_digest(given.encode(), (self.token or "").encode()):
            self._set_cookie(request, response, given)
        return response

    def _set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            COOKIE,
            value,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=request.scope.get("root_path") or "/",
        )

    async def login(self, request: Request) -> Response:
        """The token form: GET shows it, POST checks the token and sets the cookie."""
        try:
            self._check_host(request)
            if request.method == "POST":
                self._same_origin(request)
                given = (await form_fields(request)).get("token", "")
                if self.token is not None and hmac.compare_digest(
                    given.encode(), self.token.encode()
                ):
                    response = RedirectResponse(self._href(request, "/"), status_code=303)
                    self._set_cookie(request, response, given)
                    return response
                return self._render(request, "login.html", {"failed": True}, status=401)
        except Refused as exc:
            return self._render(request, "error.html", {"message": exc.message}, exc.status)
        return self._render(request, "login.html", {"failed": False})

    # -- rendering ---------------------------------------------------------------------
    def _href(self, request: Request, path: str, **query: Any) -> str:
        clean = {k: v for k, v in query.items() if v not in (None, "")}
        root = str(request.scope.get("root_path", "")).rstrip("/")
        return root + path + ("?" + urlencode(clean) if clean else "")

    def _render(
        self, request: Request, name: str, context: Mapping[str, Any], status: int = 200
    ) -> Response:
        def href(path: str, **query: Any) -> str:
            return self._href(request, path, **query)

        html = self.env.get_template(name).render(
            request=request,
            href=href,
            csrf=self.csrf,
            refresh_ms=self.refresh_ms,
            status_styles=STATUS_STYLES,
            statuses=[s.value for s in JobStatus],
            now=datetime.now(UTC),
            secured=self.token is not None,
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=security_headers())

    # -- queries shared by pages and API -------------------------------------------------
    async def _overview(self, range_key: str) -> dict[str, Any]:
        seconds = RANGES.get(range_key, RANGES["15m"])
        bucket = max(5.0, seconds / 60)
        now = datetime.now(UTC)
        since = now - timedelta(seconds=seconds)
        since = since - timedelta(seconds=since.timestamp() % bucket)
        stats = await self.processor.stats()
        points = await self.processor.timeline(since=since, bucket=bucket)
        workers = await self.processor.workers()
        buckets = fill_buckets(points, since=since, until=now, bucket=bucket)
        # A killed worker's row stays until another worker recovers it: count the live.
        workers = [w for w in workers if (now - w.heartbeat_at).total_seconds() < w.lease_timeout]
        return {
            "stats": stats,
            "by_status": by_status(stats),
            "by_name": by_name(stats),
            "buckets": buckets,
            "bucket": bucket,
            "since": since,
            "workers": workers,
            "running": sum(len(w.running) for w in workers),
        }

    async def _jobs(self, request: Request) -> tuple[list[Job], dict[str, Any], bool]:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in {s.value for s in JobStatus}:
            raise Refused(400, f"unknown status {status!r}")
        filters = {"status": status, "name": q.get("name") or None, "tag": q.get("tag") or None}
        limit = query_int(q.get("limit"), PAGE_SIZE, 1, 1000)
        offset = query_int(q.get("offset"), 0, 0, 100_000)
        # One row more than the page tells whether an older page exists.
        rows = await self.processor.list(
            status=status, name=filters["name"], tag=filters["tag"], limit=limit + 1, offset=offset
        )
        return rows[:limit], {**filters, "limit": limit, "offset": offset}, len(rows) > limit

    # -- pages -------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        range_key = request.query_params.get("range", "15m")
        data = await self._overview(range_key)
        chart = throughput_chart(data["buckets"], bucket=data["bucket"])
        context = {**data, "chart": chart, "range_key": range_key, "ranges": list(RANGES)}
        return self._render(request, "overview.html", context)

    async def jobs_page(self, request: Request) -> Response:
        jobs, filters, more = await self._jobs(request)
        stats = await self.processor.stats()
        context = {
            "jobs": jobs,
            "filters": filters,
            "has_more": more,
            "names": sorted(by_name(stats)),
            "job_names": sorted(job_names(self.processor)),
            "message": request.query_params.get("message"),
        }
        return self._render(request, "jobs.html", context)

    async def job_page(self, request: Request) -> Response:
        job = await self.processor.get(request.path_params["job_id"])
        context = {
            "job": job,
            "ended": JobStatus(job.status).ended,
            "events": job_events(job),
            "message": request.query_params.get("message"),
        }
        return self._render(request, "job.html", context)

    async def crons_page(self, request: Request) -> Response:
        crons = await self.processor.crons()
        return self._render(request, "crons.html", {"crons": crons})

    async def workers_page(self, request: Request) -> Response:
        workers = await self.processor.workers()
        now = datetime.now(UTC)
        rows = [
            {
                "worker": w,
                "age": (now - w.heartbeat_at).total_seconds(),
                "alive": (now - w.heartbeat_at).total_seconds() < w.lease_timeout,
            }
            for w in workers
        ]
        return self._render(request, "workers.html", {"workers": rows})

    # -- form actions ------------------------------------------------------------------
    async def cancel_form(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        changed = await self.processor.cancel(job_id)
        text = "cancellation requested" if changed else "the job had already ended"
        return RedirectResponse(self._href(request, f"/jobs/{job_id}", message=text), 303)

    async def retry_form(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        changed = await self.processor.retry(job_id)
        text = "the job is pending again" if changed else "the job has not ended"
        return RedirectResponse(self._href(request, f"/jobs/{job_id}", message=text), 303)

    async def enqueue_form(self, request: Request) -> Response:
        form = await form_fields(request)
        try:
            job_id = await self._enqueue(
                name=str(form.get("name", "")),
                payload_text=str(form.get("payload", "")),
                priority=str(form.get("priority", "") or "0"),
                run_at=str(form.get("run_at", "")),
            )
        except (ValueError, BatchworkError) as exc:
            return RedirectResponse(self._href(request, "/jobs", message=str(exc)), 303)
        return RedirectResponse(self._href(request, f"/jobs/{job_id}", message="enqueued"), 303)

    async def _enqueue(self, *, name: str, payload_text: str, priority: str, run_at: str) -> int:
        name = name.strip()
        if not name:
            raise ValueError("a job name is required")
        known = job_names(self.processor)
        if known and name not in known:
            raise ValueError(f"unknown job name {name!r}")
        try:
            payload = json.loads(payload_text) if payload_text.strip() else None
        except json.JSONDecodeError as exc:
            raise ValueError(f"payload is not valid JSON: {exc}") from exc
        when_at = datetime.fromisoformat(run_at) if run_at.strip() else None
        if when_at is not None and when_at.tzinfo is None:
            when_at = when_at.replace(tzinfo=UTC)
        job_id: int = await self.processor.enqueue(
            name, payload, priority=int(priority), run_at=when_at
        )
        return job_id

    # -- JSON API ----------------------------------------------------------------------
    async def api_overview(self, request: Request) -> Response:
        data = await self._overview(request.query_params.get("range", "15m"))
        chart = throughput_chart(data["buckets"], bucket=data["bucket"])
        return json_response(
            {
                "by_status": data["by_status"],
                "by_name": data["by_name"],
                "timeline": data["buckets"],
                "bucket_seconds": data["bucket"],
                "mean_pickup": chart.mean_pickup,
                "workers": len(data["workers"]),
                "running": data["running"],
            }
        )

    async def api_stats(self, request: Request) -> Response:
        return json_response(await self.processor.stats())

    async def api_timeline(self, request: Request) -> Response:
        q = request.query_params
        minutes = query_int(q.get("minutes"), 60, 1, 60 * 24 * 31)
        bucket = float(query_int(q.get("bucket"), 60, 1, 86400))
        since = datetime.now(UTC) - timedelta(minutes=minutes)
        return json_response(await self.processor.timeline(since=since, bucket=bucket))

    async def api_jobs(self, request: Request) -> Response:
        jobs, filters, more = await self._jobs(request)
        return json_response({"jobs": jobs, **filters, "has_more": more})

    async def api_job(self, request: Request) -> Response:
        return json_response(await self.processor.get(request.path_params["job_id"]))

    async def api_enqueue(self, request: Request) -> Response:
        try:
            body = await request.json()
        except json.JSONDecodeError as exc:
            raise Refused(400, f"body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise Refused(400, "body must be a JSON object with name and payload")
        job_id = await self._enqueue(
            name=str(body.get("name", "")),
            payload_text=json.dumps(body.get("payload")),
            priority=str(body.get("priority", 0)),
            run_at=str(body.get("run_at") or ""),
        )
        return json_response({"id": job_id}, 201)

    async def api_cancel(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return json_response({"id": job_id, "changed": await self.processor.cancel(job_id)})

    async def api_retry(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        return json_response({"id": job_id, "changed": await self.processor.retry(job_id)})

    async def api_crons(self, request: Request) -> Response:
        crons = await self.processor.crons()
        return json_response(crons)

    async def api_workers(self, request: Request) -> Response:
        return json_response(await self.processor.workers())
