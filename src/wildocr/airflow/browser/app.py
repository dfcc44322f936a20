"""The results browser's FastAPI app: server-rendered pages over the `images` and `words` tables.

Mounted by the api-server at `/wildocr` (see `WildOcrPlugin`). Airflow does not authenticate plugin apps,
so every route depends on Airflow's own checks: a logged-in user (the UI's `_token` cookie or a bearer
token) with read access to Assets, since the tables are the `wildocr_images` / `wildocr_words` Assets;
the DAG-run view also needs read access to that DAG's runs. No credentials: 401 (an HTML page with a
login link for a browser); an invalid token or no permission: 403.

Where the data comes from: the same rule as the DAGs' default, the Variable `wildocr_output_root`, else
the embedded default under WILDOCR_HOME; `s3://` roots and photos are read with the `wildocr_s3`
connection. A request never names a path: it names a `dt` (validated, and turned into a path by the
storage layer) and an image key (a hash looked up in that partition's rows), and photos are read only from
the URIs stored in the table.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from wildocr.airflow import settings
from wildocr.airflow.browser.links import URL_PREFIX

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # thumbnails per partition page
SEARCH_LIMIT = 200  # images per search
SETTINGS_TTL_SECONDS = 60.0  # how long the output root and the S3 options are reused
IMAGE_CACHE_SECONDS = 3600  # browsers may keep a picture this long (its ETag changes with a rerun)

_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
_templates.env.filters["query"] = lambda params: urlencode({k: v for k, v in params.items() if v is not None})


# --- settings, resolved like the DAGs resolve them -----------------------------------------------------


class _TTLCache:
    """A value per key, recomputed after `ttl` seconds (Variables and credentials can change)."""

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._values: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            hit = self._values.get(key)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        value = compute()
        with self._lock:
            self._values[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_cache = _TTLCache(SETTINGS_TTL_SECONDS)


def clear_settings_cache() -> None:
    """Forget the cached output root and S3 options (tests; a changed Variable shows within a minute)."""
    _cache.clear()


def output_root() -> str:
    """The DAGs' rule without a Param: the Variable `wildocr_output_root` (read from the metadata DB, as
    the api-server has no task context), else the embedded default."""
    from airflow.models import Variable

    def compute() -> str:
        return settings.output_root(variable=Variable.get(settings.VAR_OUTPUT_ROOT, default_var=None))

    return _cache.get("output_root", compute)


def storage_options(url: str) -> dict[str, Any] | None:
    """fsspec options for a URL: from the `wildocr_s3` connection for S3, None for local files."""
    from wildocr.airflow.hooks import storage_options_for
    from wildocr.storage.objectstore import is_s3_url

    return _cache.get(("options", is_s3_url(url)), lambda: storage_options_for([url]))


def reader():
    from wildocr.storage.query import TableReader

    root = output_root()
    return TableReader(root, storage_options(root))


# --- auth -------------------------------------------------------------------------------------------------


def _requires_asset_read() -> Callable:
    from airflow.api_fastapi.core_api.security import requires_access_asset

    return requires_access_asset("GET")


def _requires_run_read() -> Callable:
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag("GET", DagAccessEntity.RUN)


def _login_url(request: Request) -> str:
    try:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:  # no auth manager initialised (not inside the api-server)
        return "/"


# --- helpers ----------------------------------------------------------------------------------------------


def _dt(dt: str) -> str:
    from wildocr.storage.tables import validate_dt

    try:
        return validate_dt(dt)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


ShardHint = Annotated[
    int | None, Query(ge=0, le=10_000_000, description="the image's shard (reads one file)")
]


PageNumber = Annotated[int, Query(ge=1, le=100_000, description="the page of a PDF or multi-page TIFF")]


def _image(dt: str, key: str, shard: int | None, page: int = 1):
    from wildocr.storage.query import validate_image_key

    dt = _dt(dt)
    try:
        validate_image_key(key)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    entry = reader().image(dt, key, shard=shard, page=page)
    if entry is None:
        raise HTTPException(404, f"no image {key} (page {page}) in partition dt={dt}")
    return entry


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    from wildocr.pipeline.preview import OVERLAY_SIDE, THUMBNAIL_SIDE

    base = request.scope.get("root_path", "").rstrip("/") or URL_PREFIX
    sizes = {"fit": _fit, "thumb_side": THUMBNAIL_SIDE, "overlay_side": OVERLAY_SIDE}
    response = _templates.TemplateResponse(
        request, name, {"base": base, "root": output_root(), **sizes, **context}
    )
    response.headers["Cache-Control"] = "private, no-cache"
    return response


def _fit(width: int | None, height: int | None, side: int) -> tuple[int, int]:
    """Display size of a picture scaled (never up) to fit a `side` square; a square when unknown."""
    if not width or not height:
        return side, side
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _picture(request: Request, entry: Any, kind: str, render: Callable[[], bytes]) -> Response:
    """A rendered JPEG with caching headers; 304 when the browser's copy is still the current one."""
    tag = hashlib.sha256(
        f"{kind}|{entry.image_uri}|{entry.page}|{entry.etag}|{entry.run_id}|{entry.processed_at}".encode()
    ).hexdigest()[:32]
    etag = f'"{tag}"'
    headers = {"ETag": etag, "Cache-Control": f"private, max-age={IMAGE_CACHE_SECONDS}"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    from wildocr.engine.imageio import ImageDecodeError

    try:
        data = render()
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise HTTPException(404, f"photo not readable at {entry.image_uri}: {type(exc).__name__}") from None
    except ImageDecodeError as exc:
        raise HTTPException(404, f"photo not decodable: {exc}") from None
    return Response(data, media_type="image/jpeg", headers=headers)


# --- the app ----------------------------------------------------------------------------------------------


def create_app() -> FastAPI:
    """The browser app; every route requires an authenticated user with read access to Assets."""
    app = FastAPI(
        title="wildocr results browser",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # nothing served without auth, not even a schema
        dependencies=[Depends(_requires_asset_read())],
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None) or {}
        if "text/html" not in request.headers.get("accept", ""):
            return Response(str(exc.detail), exc.status_code, headers=headers, media_type="text/plain")
        context = {"status": exc.status_code, "detail": exc.detail, "login_url": None}
        if exc.status_code == 401:
            context["login_url"] = _login_url(request)
        return _templates.TemplateResponse(
            request,
            "error.html",
            {"base": request.scope.get("root_path", "") or URL_PREFIX, **context},
            status_code=exc.status_code,
            headers=headers,
        )

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        return _page(request, "index.html", partitions=reader().partitions())

    @app.get("/dt/{dt}", response_class=HTMLResponse)
    def partition(
        request: Request,
        dt: str,
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        shard: Annotated[int | None, Query(ge=0)] = None,
        errors: bool = False,
    ) -> HTMLResponse:
        dt = _dt(dt)
        tables = reader()
        summary = tables.partition(dt)
        if summary is None:
            raise HTTPException(404, f"no partition dt={dt} under {tables.root}")
        images, total = tables.images(
            dt, shard=shard, errors_only=errors, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        return _page(
            request,
            "partition.html",
            dt=dt,
            summary=summary,
            images=images,
            total=total,
            page=page,
            pages=max(1, math.ceil(total / PAGE_SIZE)),
            shard=shard,
            errors=errors,
        )

    @app.get("/dt/{dt}/image/{key}", response_class=HTMLResponse)
    def image(
        request: Request, dt: str, key: str, shard: ShardHint = None, page: PageNumber = 1
    ) -> HTMLResponse:
        entry = _image(dt, key, shard, page)
        words = reader().words(entry.dt, entry.image_uri, shard=entry.shard, page=page) if entry.ok else []
        return _page(request, "image.html", dt=entry.dt, image=entry, words=words)

    @app.get("/dt/{dt}/image/{key}/thumb.jpg")
    def thumbnail(
        request: Request, dt: str, key: str, shard: ShardHint = None, page: PageNumber = 1
    ) -> Response:
        from wildocr.pipeline.preview import thumbnail_jpeg

        entry = _image(dt, key, shard, page)
        return _picture(
            request,
            entry,
            "thumb",
            lambda: thumbnail_jpeg(entry.image_uri, storage_options(entry.image_uri), page=page),
        )

    @app.get("/dt/{dt}/image/{key}/overlay.jpg")
    def overlay(
        request: Request, dt: str, key: str, shard: ShardHint = None, page: PageNumber = 1
    ) -> Response:
        from wildocr.pipeline.preview import overlay_jpeg

        entry = _image(dt, key, shard, page)

        def render() -> bytes:
            words = reader().words(entry.dt, entry.image_uri, shard=entry.shard, page=page)
            return overlay_jpeg(entry.image_uri, words, storage_options(entry.image_uri), page=page)

        return _picture(request, entry, "overlay", render)

    @app.get("/search", response_class=HTMLResponse)
    def search(
        request: Request,
        q: Annotated[str, Query(max_length=200)] = "",
        dt: str | None = None,
    ) -> HTMLResponse:
        dt = _dt(dt) if dt else None
        hits = reader().search(q, limit=SEARCH_LIMIT, dt=dt) if q.strip() else []
        return _page(request, "search.html", q=q, dt=dt, hits=hits, limit=SEARCH_LIMIT)

    @app.get("/run", response_class=HTMLResponse, dependencies=[Depends(_requires_run_read())])
    def run(request: Request, dag_id: str, run_id: str) -> HTMLResponse:
        from wildocr.storage.tables import is_valid_dt

        plan = _run_plan(dag_id, run_id)
        tables = reader()
        written = sorted((dt for dt in (plan or {}).get("shards", {}) if is_valid_dt(dt)), reverse=True)
        return _page(
            request,
            "run.html",
            dag_id=dag_id,
            run_id=run_id,
            plan=plan,
            partitions=[(dt, tables.partition(dt)) for dt in written],
            same_root=plan is not None and str(plan.get("output_root", "")).rstrip("/") == tables.root,
        )

    return app


def _run_plan(dag_id: str, run_id: str) -> dict[str, Any] | None:
    """The plan the run's manifest task pushed (output root, dates, shards), or None for other DAGs."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(
            XComModel.get_many(
                run_id=run_id,
                key=settings.RUN_XCOM_KEY,
                task_ids=settings.MANIFEST_TASK,
                dag_ids=dag_id,
                map_indexes=-1,
            )
        ).first()
        value = XComModel.deserialize_value(row) if row is not None else None
    return value if isinstance(value, dict) and isinstance(value.get("shards"), dict) else None


app = create_app()
