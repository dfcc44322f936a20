"""The results browser in a real Airflow api-server, driven by a real browser (headless Debian chromium).

Tables come from the real pipeline: `wildocr_nightly` runs with dag.test() on generated photos (one dt
staged, with a file that is not an image; one dt fused), writing to this test's own output root. Then
`airflow api-server` starts on a free loopback port over the same SQLite metadata DB, with
SimpleAuthManager and a known user, and the Variable `wildocr_output_root` (from the environment) pointing
at that root. Playwright drives /usr/bin/chromium (never a downloaded browser): log in through Airflow's
login page, the partitions, a partition's thumbnails, one overlay, a word search, the "OCR results" views
inside Airflow's own UI (navigation and DAG-run tab) and the publish task's extra link. Screenshots go to
artifacts/browser/ (git-ignored; CI keeps them).

Expected numbers are never written down: they are read from the same tables with DuckDB by this test.
On a developer machine without chromium or Playwright the browser test skips with the reason; with CI=true
it fails instead, so CI cannot pass without having run it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import duckdb
import pendulum
import pytest

pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "alice", "browser-test-password"
DT_STAGED, DT_FUSED = "2026-05-01", "2026-05-02"
SERVER_START_SECONDS = 180


def _browser_available() -> str | None:
    """Why the browser test cannot run here, or None when it can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -c constraints.txt -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
    return None


def _require_browser() -> None:
    reason = _browser_available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the browser test: {reason}")
    pytest.skip(reason)


# --- real tables from the real pipeline -----------------------------------------------------------------


@dataclass
class Lake:
    root: Path
    run_ids: dict[str, str]  # dt -> the dag run that wrote it

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        """DuckDB over the tables, independently of the browser's own queries."""
        images = f"read_parquet('{self.root}/images/*/*.parquet', hive_partitioning = true)"
        words = f"read_parquet('{self.root}/words/*/*.parquet', hive_partitioning = true)"
        query = sql.format(images=images, words=words)
        return duckdb.connect().execute(query, list(params)).fetchall()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    from airflow.dag_processing.dagbag import DagBag

    from include.sample_data import generate

    base = tmp_path_factory.mktemp("browser-lake")
    generate(str(base / "photos" / DT_STAGED), count=3, seed=11)
    (base / "photos" / DT_STAGED / "not-a-photo.jpg").write_bytes(b"this is not a JPEG")
    generate(str(base / "photos" / DT_FUSED), count=2, seed=12)
    bag = DagBag(dag_folder=str(ROOT / "dags" / "wildocr_nightly.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("wildocr_nightly")
    run_ids = {}
    for dt, mode in ((DT_STAGED, "staged"), (DT_FUSED, "fused")):
        conf = {
            "dt": dt,
            "mode": mode,
            "source_prefix": f"{base}/photos/{{{{ ds }}}}/",
            "output_root": str(base / "ocr"),
        }
        # Distinct logical dates: dag.test() first deletes the DAG's runs with the same logical date.
        year, month, day = map(int, dt.split("-"))
        run = dag.test(logical_date=pendulum.datetime(year, month, day, 2, tz="UTC"), run_conf=conf)
        states = {(ti.task_id, ti.map_index): ti.state for ti in run.get_task_instances()}
        assert run.state == "success", states
        run_ids[dt] = run.run_id
    return Lake(root=base / "ocr", run_ids=run_ids)


# --- a real api-server ----------------------------------------------------------------------------------


@dataclass
class Server:
    url: str

    def get(self, path: str, token: str | None = None, accept: str = "*/*") -> tuple[int, bytes, dict]:
        headers = {"Accept": accept}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(self.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def token(self) -> str:
        body = json.dumps({"username": USER, "password": PASSWORD}).encode()
        request = urllib.request.Request(
            self.url + "/auth/token", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read())["access_token"]


@pytest.fixture(scope="module")
def server(lake: Lake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`airflow api-server` on a free loopback port, over this session's SQLite DB; stopped by its PID."""
    home = tmp_path_factory.mktemp("browser-server")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    with socket.socket() as probe:  # a free loopback port, chosen by the kernel
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "AIRFLOW__CORE__AUTH_MANAGER": (
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW_VAR_WILDOCR_OUTPUT_ROOT": str(lake.root),  # what the browser shows
    }
    log = (home / "api-server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stopped below with everything it started
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"api-server exited with {process.returncode}:\n{_tail(home / 'api-server.log')}")
            try:
                with urllib.request.urlopen(url + "/api/v2/monitor/health", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"api-server not up after {SERVER_START_SECONDS}s:\n{_tail(home / 'api-server.log')}"
                    )
                time.sleep(1)
        yield Server(url)
    finally:
        _stop(process)
        log.close()


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


# --- auth and input checks (no browser needed) ----------------------------------------------------------

ROUTES = [
    "/wildocr/",
    f"/wildocr/dt/{DT_STAGED}",
    "/wildocr/search?q=open",
    f"/wildocr/dt/{DT_STAGED}/image/0123456789abcdef",
    f"/wildocr/dt/{DT_STAGED}/image/0123456789abcdef/thumb.jpg",
    f"/wildocr/dt/{DT_STAGED}/image/0123456789abcdef/overlay.jpg",
    "/wildocr/run?dag_id=wildocr_nightly&run_id=x",
]


def test_every_route_requires_airflow_auth(server: Server) -> None:
    for route in ROUTES:
        status, body, _ = server.get(route)
        assert status == 401, (route, status, body[:200])
        status, body, _ = server.get(route, token="not.a.jwt")
        assert status == 403, (route, status, body[:200])
    # A browser without a session gets a page that links to Airflow's login, and nothing about the data.
    status, body, _ = server.get("/wildocr/", accept="text/html")
    assert status == 401 and b"/auth/login?next=" in body
    assert DT_STAGED.encode() not in body and b"browser-lake" not in body
    # Nothing of the app is reachable unauthenticated, not even a schema.
    for path in ("/wildocr/docs", "/wildocr/openapi.json"):
        assert server.get(path)[0] in (401, 404)


def test_bad_dt_and_path_traversal_are_refused(server: Server, lake: Lake) -> None:
    token = server.token()
    refused = [
        "/wildocr/dt/2026-02-30",  # not a calendar date
        "/wildocr/dt/latest",
        "/wildocr/dt/..",
        "/wildocr/dt/%2e%2e",
        "/wildocr/dt/..%2F..%2F..%2Fetc",
        "/wildocr/dt/2026-05-01%2F..%2F..%2F..",
        "/wildocr/dt/" + quote("../../../../etc/passwd", safe=""),
        f"/wildocr/dt/{DT_STAGED}/image/..%2F..%2Fetc%2Fpasswd/thumb.jpg",
        f"/wildocr/dt/{DT_STAGED}/image/" + quote("/etc/passwd", safe="") + "/overlay.jpg",
        f"/wildocr/dt/{DT_STAGED}/image/NOT-A-KEY",
        "/wildocr/search?q=a&dt=" + quote("../../etc", safe=""),
        f"/wildocr/dt/{DT_STAGED}?shard=-1",
        f"/wildocr/dt/{DT_STAGED}/image/0123456789abcdef/thumb.jpg?shard=../../x",
    ]
    for route in refused:
        status, body, _ = server.get(route, token=token)
        assert status in (400, 404, 422), (route, status, body[:200])
        assert b"root:" not in body
    # A well-formed key that is not in the partition: 404, nothing read.
    assert server.get(f"/wildocr/dt/{DT_STAGED}/image/0123456789abcdef/thumb.jpg", token=token)[0] == 404
    # A date that is valid but has no partition: 404.
    assert server.get("/wildocr/dt/1999-01-01", token=token)[0] == 404
    # The same requests with a real key work, so the refusals above are not a broken app.
    (uri,) = lake.rows("SELECT image_uri FROM {images} WHERE dt = ? AND status = 'ok' LIMIT 1", DT_STAGED)[0]
    from wildocr.storage.query import image_key

    status, body, headers = server.get(
        f"/wildocr/dt/{DT_STAGED}/image/{image_key(uri)}/thumb.jpg", token=token
    )
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert "private" in headers["cache-control"] and headers["etag"]


def test_publish_extra_link_points_at_its_partition(server: Server, lake: Lake) -> None:
    token = server.token()
    run_id = quote(lake.run_ids[DT_STAGED], safe="")
    path = f"/api/v2/dags/wildocr_nightly/dagRuns/{run_id}/taskInstances/ocr.publish/links?map_index=0"
    status, body, _ = server.get(path, token=token)
    assert status == 200, body
    links = json.loads(body)["extra_links"]
    assert (links.get("OCR results") or "").endswith(f"/wildocr/dt/{DT_STAGED}?shard=0"), links


# --- the real browser -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(server: Server) -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="wildocr-chromium-")  # a fresh --user-data-dir
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 860},
        )
        try:
            yield context.new_page()
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def _loaded_images(page: Any, selector: str) -> list[dict]:
    """Every matching <img>, scrolled into view and waited for: its natural size (0 when broken)."""
    page.wait_for_load_state("networkidle")
    for img in page.locator(selector).all():
        img.scroll_into_view_if_needed()
    page.wait_for_function(
        "s => [...document.querySelectorAll(s)].every(i => i.complete)", arg=selector, timeout=60_000
    )
    return page.eval_on_selector_all(
        selector, "els => els.map(i => ({src: i.src, w: i.naturalWidth, h: i.naturalHeight}))"
    )


def test_browse_a_partition_open_an_overlay_and_search(page: Any, server: Server, lake: Lake) -> None:
    # Log in through Airflow's own login page, which sends the user back to the browser.
    page.goto(f"{server.url}/wildocr/")
    assert "Log in" in page.inner_text("main")
    page.click("#login")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/wildocr/", timeout=60_000)

    # The partitions with their counts, as DuckDB counts them.
    expected = lake.rows(
        "SELECT dt::VARCHAR, count(*), count(*) FILTER (status <> 'ok'), sum(n_words) FROM {images} "
        "GROUP BY ALL ORDER BY 1 DESC"
    )
    shown = page.eval_on_selector_all(
        "#partitions tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )
    assert [(r[0], int(r[1]), int(r[3]), int(r[4])) for r in shown] == [
        (dt, n, errors, words) for dt, n, errors, words in expected
    ]

    # A partition: one tile per image, the error row with its message, every thumbnail loaded and small.
    page.click(f"text={DT_STAGED}")
    page.wait_for_url(f"**/wildocr/dt/{DT_STAGED}")
    images = lake.rows(
        "SELECT image_uri, status, error, width, height FROM {images} WHERE dt = ? ORDER BY image_uri",
        DT_STAGED,
    )
    tiles = page.locator("#images .tile")
    assert tiles.count() == len(images)
    errors = [row for row in images if row[1] != "ok"]
    assert len(errors) == 1 and "not an image" in errors[0][2]
    assert page.locator(".tile.error").count() == 1
    assert errors[0][2] in page.inner_text(".tile.error")
    thumbs = _loaded_images(page, "#images img")
    assert len(thumbs) == len(images) - 1
    for thumb in thumbs:
        assert 0 < thumb["w"] <= 200 and 0 < thumb["h"] <= 200, thumb
    page.screenshot(path=str(ARTIFACTS / "partition.png"), full_page=True)

    # One image: the overlay loads at the photo's size (capped at 1600 px) and every word is listed.
    uri, _, _, width, height = next(row for row in images if row[1] == "ok")
    (n_words,) = lake.rows("SELECT count(*) FROM {words} WHERE image_uri = ? AND dt = ?", uri, DT_STAGED)[0]
    assert n_words > 0
    page.click(".tile:not(.error) a >> nth=0")
    page.wait_for_selector("#overlay")
    (overlay,) = _loaded_images(page, "#overlay")
    scale = min(1.0, 1600 / max(width, height))
    assert (overlay["w"], overlay["h"]) == (round(width * scale), round(height * scale)), overlay
    assert page.locator("#words tbody tr").count() == n_words
    page.screenshot(path=str(ARTIFACTS / "overlay.png"), full_page=True)

    # Search a word read in the other partition: found there, case-insensitively, through the header form.
    word, hit_uri = lake.rows(
        "SELECT text, image_uri FROM {words} WHERE dt = ? AND length(text) >= 4 "
        "AND regexp_full_match(text, '[A-Za-z]+') ORDER BY confidence DESC, text LIMIT 1",
        DT_FUSED,
    )[0]
    page.fill("header input[name=q]", word.swapcase())
    page.press("header input[name=q]", "Enter")
    page.wait_for_url("**/wildocr/search?q=*")
    expected_hits = lake.rows(
        "SELECT count(DISTINCT (dt, image_uri)) FROM {words} WHERE text ILIKE ?", f"%{word}%"
    )[0][0]
    hits = page.locator("#hits .tile")
    assert hits.count() == expected_hits >= 1
    from wildocr.storage.query import image_key

    assert page.locator(f'#hits .tile[data-key="{image_key(hit_uri)}"]').count() == 1
    assert all(t["w"] > 0 for t in _loaded_images(page, "#hits img"))
    page.screenshot(path=str(ARTIFACTS / "search.png"), full_page=True)


def test_inside_the_airflow_ui(page: Any, server: Server, lake: Lake) -> None:
    """The navigation entry and the DAG-run tab embed the browser; the extra link opens the shard."""
    page.goto(f"{server.url}/wildocr/")  # logged in by the previous test, or log in now
    if page.locator("#login").count():
        page.click("#login")
        page.fill("input[name=username]", USER)
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{server.url}/wildocr/", timeout=60_000)

    page.goto(f"{server.url}/plugin/wildocr")
    frame = page.frame_locator("iframe[title='OCR results']")
    frame.locator("#partitions").wait_for(timeout=60_000)
    assert DT_STAGED in frame.locator("#partitions").inner_text()
    page.screenshot(path=str(ARTIFACTS / "airflow-nav.png"))
    # Inside the UI's frame, on to a partition: the picture docs/browser.png was taken from.
    frame.locator(f"#partitions a:text-is('{DT_STAGED}')").click()
    frame.locator("#images .tile").first.wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    frame.locator("#images img").last.evaluate("i => i.decode()")
    page.screenshot(path=str(ARTIFACTS / "airflow-partition.png"))

    run_id = lake.run_ids[DT_FUSED]
    page.goto(f"{server.url}/dags/wildocr_nightly/runs/{quote(run_id, safe='')}/plugin/wildocr_run")
    frame = page.frame_locator("iframe[title='OCR results']")
    frame.locator("#run-partitions").wait_for(timeout=60_000)
    assert DT_FUSED in frame.locator("#run-partitions").inner_text()
    assert DT_STAGED not in frame.locator("#run-partitions").inner_text()

    link = json.loads(
        server.get(
            f"/api/v2/dags/wildocr_nightly/dagRuns/{quote(lake.run_ids[DT_STAGED], safe='')}"
            "/taskInstances/ocr.publish/links?map_index=0",
            token=server.token(),
        )[1]
    )["extra_links"]["OCR results"]
    page.goto(link if link.startswith("http") else server.url + link)
    assert "Shard 0 only" in page.inner_text("main")
    assert (
        page.locator("#images .tile").count()
        == lake.rows("SELECT count(*) FROM {images} WHERE dt = ? AND shard = 0", DT_STAGED)[0][0]
    )
