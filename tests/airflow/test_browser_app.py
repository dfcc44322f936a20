"""The results browser without a web browser: its queries, and the app inside Airflow's real API app on S3.

- `wildocr.storage.query` over hand-built part files: counts, paging, search escaping, a newer schema
  with extra columns beside an older one, stray folders that are not partitions.
- Airflow's own API app (`airflow.api_fastapi.app.create_app`, the one `airflow api-server` serves,
  in-process through Starlette's TestClient) with SimpleAuthManager, over tables that the shard pipeline
  wrote to a moto S3 server; photos on S3 too. The browser reaches them only through the `wildocr_s3`
  connection and the `wildocr_output_root` Variable (both from the environment), like the DAGs.

The chromium-driven test of the same app in a real `airflow api-server` is tests/e2e/test_browser.py.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from PIL import Image

from wildocr.storage import objectstore, tables
from wildocr.storage.query import TableReader, image_key

DT_A, DT_B = "2026-06-01", "2026-06-02"
USER, PASSWORD = "bob", "s3-browser-password"


# --- wildocr.storage.query on hand-built files ----------------------------------------------------------


def _image_rows(names: list[str], shard: int, errors: set[str] = frozenset()) -> list[dict[str, Any]]:
    now = tables.utc_now()
    return [
        tables.image_row(
            image_uri=f"s3://photos/{name}",
            etag=f"e-{name}",
            size=100,
            run_id="r1",
            shard=shard,
            processed_at=now,
            model_info={},
            width=None if name in errors else 640,
            height=None if name in errors else 480,
            error="not an image (unrecognised format)" if name in errors else None,
            n_words=0 if name in errors else 2,
        )
        for name in names
    ]


def _word_rows(name: str, texts: list[str], shard: int) -> list[dict[str, Any]]:
    from wildocr.engine.types import Word

    words = [
        Word(t, 0.9, 0.8, 0, ((10.0 * i, 5.0), (10.0 * i + 8, 5.0), (10.0 * i + 8, 15.0), (10.0 * i, 15.0)),
             (10.0 * i, 5.0, 10.0 * i + 8, 15.0))
        for i, t in enumerate(texts)
    ]  # fmt: skip
    return tables.word_rows(f"s3://photos/{name}", words, shard)


def _write(root: Path, table: str, dt: str, shard: int, table_data) -> None:
    url = tables.part_url(str(root), table, dt, shard)
    objectstore.write_bytes_atomic(url, tables.parquet_bytes(table_data))


@pytest.fixture
def local_lake(tmp_path: Path) -> Path:
    root = tmp_path / "ocr"
    _write(root, "images", DT_A, 0, tables.to_table(tables.IMAGES, _image_rows(["a.jpg", "b.jpg"], 0)))
    _write(
        root,
        "images",
        DT_A,
        1,
        tables.to_table(tables.IMAGES, _image_rows(["c.jpg", "bad.jpg"], 1, {"bad.jpg"})),
    )
    words = _word_rows("a.jpg", ["OPEN", "100%_off"], 0) + _word_rows("b.jpg", ["reopened", "Cafe"], 0)
    _write(root, "words", DT_A, 0, tables.to_table(tables.WORDS, words))
    _write(root, "words", DT_A, 1, tables.to_table(tables.WORDS, _word_rows("c.jpg", ["open", "x"], 1)))
    # dt B was written by a newer wildocr: one more column in both tables (read by name, ignored here).
    newer = tables.to_table(tables.IMAGES, _image_rows(["d.jpg"], 0))
    newer = newer.append_column("sha256", newer.column("etag"))
    _write(root, "images", DT_B, 0, newer)
    words_b = tables.to_table(tables.WORDS, _word_rows("d.jpg", ["Open", "late"], 0))
    _write(root, "words", DT_B, 0, words_b.append_column("script", words_b.column("text")))
    # Not partitions: a stray folder, staging, a temp file of an interrupted write.
    (root / "images" / "dt=latest").mkdir()
    (root / "images" / "dt=latest" / "part-00000.parquet").write_bytes(b"junk")
    (root / "_staging" / DT_A).mkdir(parents=True)
    (root / "images" / f"dt={DT_A}" / ".part-00002.parquet.abc.tmp").write_bytes(b"partial")
    return root


def test_partitions_images_and_words(local_lake: Path) -> None:
    reader = TableReader(str(local_lake))
    summaries = reader.partitions()
    assert [(p.dt, p.images, p.ok, p.errors, p.words, p.shards) for p in summaries] == [
        (DT_B, 1, 1, 0, 2, 1),
        (DT_A, 4, 3, 1, 6, 2),
    ]
    assert reader.partition(DT_A) == summaries[1] and reader.partition("2026-01-01") is None

    page, total = reader.images(DT_A, limit=3)
    assert total == 4 and [i.name for i in page] == ["a.jpg", "b.jpg", "bad.jpg"]
    assert [i.name for i in reader.images(DT_A, limit=3, offset=3)[0]] == ["c.jpg"]
    errors, n_errors = reader.images(DT_A, errors_only=True)
    assert n_errors == 1 and errors[0].error.startswith("not an image") and not errors[0].ok
    assert [i.name for i in reader.images(DT_A, shard=1)[0]] == ["bad.jpg", "c.jpg"]

    entry = reader.image(DT_A, image_key("s3://photos/b.jpg"))
    assert entry is not None and entry.image_uri == "s3://photos/b.jpg" and entry.shard == 0
    assert reader.image(DT_B, image_key("s3://photos/b.jpg")) is None  # keys are looked up per partition
    # The shard hint reads one part file; a wrong hint (shards changed since the link) still finds it.
    assert reader.image(DT_A, image_key("s3://photos/c.jpg"), shard=1).image_uri == "s3://photos/c.jpg"
    assert reader.image(DT_A, image_key("s3://photos/c.jpg"), shard=0).image_uri == "s3://photos/c.jpg"
    assert reader.image(DT_A, image_key("s3://photos/c.jpg"), shard=7).shard == 1
    with pytest.raises(ValueError):
        reader.image(DT_A, image_key("s3://photos/c.jpg"), shard=-1)
    assert [w.text for w in reader.words(DT_A, "s3://photos/c.jpg", shard=1)] == ["open", "x"]
    words = reader.words(DT_A, "s3://photos/b.jpg")
    assert [w.text for w in words] == ["reopened", "Cafe"]
    assert words[1].poly[0] == (10.0, 5.0) and words[1].bbox == (10.0, 5.0, 18.0, 15.0)
    assert reader.image(DT_B, image_key("s3://photos/d.jpg")).width == 640  # newer schema reads fine


def test_search_is_case_insensitive_exact_first_and_escaped(local_lake: Path) -> None:
    reader = TableReader(str(local_lake))
    hits = reader.search("open")
    # c.jpg ("open") and d.jpg ("Open") match exactly and come first (newest dt first), then a.jpg
    # ("OPEN" is exact too) ... every image with a word containing "open", once.
    assert {(h.dt, h.image_uri.rsplit("/", 1)[1], h.exact) for h in hits} == {
        (DT_A, "a.jpg", True),
        (DT_A, "b.jpg", False),
        (DT_A, "c.jpg", True),
        (DT_B, "d.jpg", True),
    }
    assert [h.exact for h in hits] == sorted((h.exact for h in hits), reverse=True)
    assert [h.image_uri for h in reader.search("OPEN", dt=DT_B)] == ["s3://photos/d.jpg"]
    # LIKE wildcards in the query are literal characters.
    assert [h.words for h in reader.search("%_")] == [("100%_off",)]
    assert reader.search("_") and not reader.search("%x%") and not reader.search("  ")
    assert reader.search("x'); DROP TABLE words; --") == []


def test_bad_input_is_refused_before_any_read(local_lake: Path) -> None:
    reader = TableReader(str(local_lake))
    for bad in ("2026-02-30", "../..", "2026-06-01/../..", "", "latest"):
        with pytest.raises(ValueError):
            reader.images(bad)
        with pytest.raises(ValueError):
            reader.partition(bad)
    for bad_key in ("../../etc/passwd", "0123", "0123456789ABCDEF", "0123456789abcdeg"):
        with pytest.raises(ValueError):
            reader.image(DT_A, bad_key)
    assert TableReader(str(local_lake / "nothing-here")).partitions() == []


# --- Airflow's API app, S3 through the wildocr_s3 connection ---------------------------------------------


@dataclass
class S3Lake:
    root: str
    options: dict[str, Any]
    photos: dict[str, list[str]]  # dt -> photo URIs

    def rows(self, sql: str, *params: Any) -> list[tuple]:
        import s3fs

        con = duckdb.connect()
        con.register_filesystem(s3fs.S3FileSystem(skip_instance_cache=True, **self.options))
        query = sql.format(
            images=f"read_parquet('{self.root}/images/*/*.parquet', hive_partitioning = true)",
            words=f"read_parquet('{self.root}/words/*/*.parquet', hive_partitioning = true)",
        )
        return con.execute(query, list(params)).fetchall()


@pytest.fixture(scope="module")
def s3_lake(s3_server, ocr_engine) -> S3Lake:
    """Photos and tables on S3, written by the pipeline's shard functions with the real engine."""
    from include.sample_data import generate
    from wildocr.pipeline import fused, run

    bucket = s3_server.create_bucket()
    options = s3_server.storage_options
    output = f"s3://{bucket}/ocr"
    engine = ocr_engine
    photos = {}
    for dt, count, seed in ((DT_A, 2, 21), (DT_B, 1, 22)):
        source = f"s3://{bucket}/photos/{dt}/"
        generate(source, count=count, seed=seed, storage_options=options)
        if dt == DT_A:
            objectstore.write_bytes_atomic(f"{source}broken.png", b"\x89PNG but not really", options)
        else:  # a 2-page document: a row, a tile and a picture per page
            from tests.helpers import pdf_bytes, sample_pages

            objectstore.write_bytes_atomic(
                f"{source}letter.pdf", pdf_bytes(sample_pages(2, seed=44)[0]), options
            )
        staging = run.staging_root(output, dt, f"test-{dt}")
        manifest_url = run.manifest_url(staging)
        for number in run.build_manifest(source, manifest_url, shard_size=8, storage_options=options, dt=dt):
            fused.process_shard(
                manifest_url, number, output_root=output, dt=dt, run_id=f"test-{dt}", engine=engine,
                storage_options=options,
            )  # fmt: skip
        run.remove_staging(staging, options)
        photos[dt] = [o.uri for o in objectstore.list_images(source, options).images]
    return S3Lake(root=output, options=options, photos=photos)


@pytest.fixture(scope="module")
def client(s3_lake: S3Lake, s3_server, tmp_path_factory: pytest.TempPathFactory, airflow_db) -> Iterator[Any]:
    """Airflow's whole API app in-process, with the browser plugin mounted, and a logged-in user's token."""
    from fastapi.testclient import TestClient

    from wildocr.airflow.browser import app as browser

    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AIRFLOW_CONN_WILDOCR_S3", s3_server.airflow_conn_json())
        env.setenv("AIRFLOW_VAR_WILDOCR_OUTPUT_ROOT", s3_lake.root)
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{USER}:viewer")
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        env.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        env.setenv(
            "AIRFLOW__API_AUTH__JWT_SECRET", "browser-app-test-secret-" + "x" * 48
        )  # the api-server makes one
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)  # only the connection may lead to the bucket
        browser.clear_settings_cache()
        from airflow.api_fastapi.app import create_app

        with TestClient(create_app(), base_url="http://testserver") as test_client:
            response = test_client.post("/auth/token", json={"username": USER, "password": PASSWORD})
            assert response.status_code in (200, 201), response.text
            test_client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
            yield test_client
        browser.clear_settings_cache()


def test_s3_tables_and_photos_through_the_connection(client: Any, s3_lake: S3Lake) -> None:
    expected = s3_lake.rows(
        "SELECT dt::VARCHAR, count(*), count(*) FILTER (status <> 'ok') FROM {images} GROUP BY ALL ORDER BY 1"
    )
    assert [dt for dt, _, _ in expected] == [DT_A, DT_B]
    index = client.get("/wildocr/")
    assert index.status_code == 200 and s3_lake.root in index.text
    for dt, _, _ in expected:
        assert f"/wildocr/dt/{dt}" in index.text

    page = client.get(f"/wildocr/dt/{DT_A}")
    assert page.status_code == 200
    (n_images, n_errors) = expected[0][1:]
    assert page.text.count('class="tile') == n_images == len(s3_lake.photos[DT_A])
    assert page.text.count('class="tile error"') == n_errors == 1

    uri = next(u for u in s3_lake.photos[DT_A] if not u.endswith("broken.png"))
    key = image_key(uri)
    thumb = client.get(f"/wildocr/dt/{DT_A}/image/{key}/thumb.jpg")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 200
    assert client.get(thumb.request.url, headers={"If-None-Match": thumb.headers["etag"]}).status_code == 304

    (width, height, n_words) = s3_lake.rows(
        "SELECT width, height, n_words FROM {images} WHERE image_uri = ?", uri
    )[0]
    overlay = client.get(f"/wildocr/dt/{DT_A}/image/{key}/overlay.jpg")
    assert overlay.status_code == 200 and Image.open(io.BytesIO(overlay.content)).size == (width, height)
    detail = client.get(f"/wildocr/dt/{DT_A}/image/{key}")
    assert detail.status_code == 200 and detail.text.count("<tr>") == n_words + 1  # + the header row

    broken_key = image_key(next(u for u in s3_lake.photos[DT_A] if u.endswith("broken.png")))
    assert client.get(f"/wildocr/dt/{DT_A}/image/{broken_key}/thumb.jpg").status_code == 404

    (word, hit_uri) = s3_lake.rows(
        "SELECT text, image_uri FROM {words} WHERE dt = ? AND length(text) >= 4 ORDER BY text LIMIT 1", DT_B
    )[0]
    found = client.get("/wildocr/search", params={"q": word.upper()})
    assert found.status_code == 200 and image_key(hit_uri) in found.text


def test_in_process_app_refuses_without_auth(client: Any) -> None:
    token = client.headers.pop("Authorization")
    try:
        assert client.get("/wildocr/").status_code == 401
        assert client.get(f"/wildocr/dt/{DT_A}", headers={"Authorization": "Bearer x.y.z"}).status_code == 403
    finally:
        client.headers["Authorization"] = token
    assert client.get("/wildocr/dt/2026-13-01").status_code == 400


# --- pictures ---------------------------------------------------------------------------------------------


def test_thumbnails_decode_big_jpegs_at_reduced_scale_and_keep_orientation(tmp_path: Path) -> None:
    from wildocr.engine.imageio import decode_image
    from wildocr.engine.types import Word
    from wildocr.pipeline.preview import overlay_jpeg, thumbnail_jpeg

    photo = Image.new("RGB", (4000, 3000), (200, 30, 30))
    exif = photo.getexif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90° clockwise: portrait
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", exif=exif, quality=90)
    path = tmp_path / "phone.jpg"
    path.write_bytes(buffer.getvalue())

    full = decode_image(buffer.getvalue())
    draft = decode_image(buffer.getvalue(), preview_side=200)
    assert full.shape[:2] == (4000, 3000)  # upright: height 4000
    assert draft.shape[0] < full.shape[0] and max(draft.shape[:2]) >= 200  # decoded smaller, never too small
    assert draft.shape[0] > draft.shape[1]  # still upright

    thumb = Image.open(io.BytesIO(thumbnail_jpeg(str(path))))
    assert thumb.size == (150, 200)
    word = Word("hi", 0.9, 0.9, 0, ((1000.0, 1000.0), (2000.0, 1000.0), (2000.0, 1500.0), (1000.0, 1500.0)),
                (1000.0, 1000.0, 2000.0, 1500.0))  # fmt: skip
    drawn = np.asarray(Image.open(io.BytesIO(overlay_jpeg(str(path), [word], max_side=800))), dtype=float)
    plain = np.asarray(Image.open(io.BytesIO(overlay_jpeg(str(path), [], max_side=800))), dtype=float)
    assert drawn.shape == plain.shape == (800, 600, 3)
    # At 1/5 scale the box's left edge runs along x=200, y=200..300; far from it nothing was drawn.
    edge = np.abs(drawn[210:290, 197:204] - plain[210:290, 197:204]).sum(axis=2)
    assert (edge.max(axis=1) > 60).all()  # every row of the edge shows the line
    assert np.abs(drawn[600:700, 400:500] - plain[600:700, 400:500]).mean() < 2


def test_workers_load_the_plugin_without_the_web_app(tmp_path: Path) -> None:
    """Tasks and the dag-processor load plugins for their macros: that must not import FastAPI or DuckDB."""
    import subprocess
    import sys

    code = (
        "import sys, airflow.plugins_manager as pm; pm.integrate_macros_plugins(); "
        "assert 'wildocr' in [p.name for p in pm._get_plugins()[0]]; "
        "print(sorted(m for m in ('wildocr.airflow.browser.app', 'fastapi', 'duckdb') if m in sys.modules))"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_each_page_of_a_document_has_its_tile_picture_and_words(client: Any, s3_lake: S3Lake) -> None:
    uri = next(u for u in s3_lake.photos[DT_B] if u.endswith("letter.pdf"))
    key = image_key(uri)
    rows = s3_lake.rows(
        "SELECT page, width, height, n_words FROM {images} WHERE image_uri = ? ORDER BY page", uri
    )
    assert [r[0] for r in rows] == [1, 2] and all(r[3] > 0 for r in rows)
    listing = client.get(f"/wildocr/dt/{DT_B}")
    assert listing.status_code == 200 and listing.text.count('class="tile') == 3  # a photo, 2 pages
    assert f"/image/{key}?shard=0&amp;page=2" in listing.text and "letter.pdf · page 2" in listing.text
    for page, width, height, n_words in rows:
        detail = client.get(f"/wildocr/dt/{DT_B}/image/{key}", params={"page": page})
        assert detail.status_code == 200 and detail.text.count("<tr>") == n_words + 1
        overlay = client.get(f"/wildocr/dt/{DT_B}/image/{key}/overlay.jpg", params={"page": page})
        assert overlay.status_code == 200 and Image.open(io.BytesIO(overlay.content)).size == (width, height)
        thumb = client.get(f"/wildocr/dt/{DT_B}/image/{key}/thumb.jpg", params={"page": page})
        assert thumb.status_code == 200
    first, second = (
        client.get(f"/wildocr/dt/{DT_B}/image/{key}/thumb.jpg", params={"page": p}) for p in (1, 2)
    )
    assert first.headers["etag"] != second.headers["etag"] and first.content != second.content
    assert client.get(f"/wildocr/dt/{DT_B}/image/{key}", params={"page": 3}).status_code == 404
    assert client.get(f"/wildocr/dt/{DT_B}/image/{key}", params={"page": 0}).status_code == 422
