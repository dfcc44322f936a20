"""Hostile inputs, round two (issue 13): no file can stop a run, run a program, or vanish without a row.

A local tree of hostile objects (PostScript named .jpg/.png, corrupt JPEG scans, a name that is not UTF-8,
links to photos and to folders, broken and looping links, a pipe named .jpg, a sparse oversized file, an
unreadable sub-folder) goes through `wildocr run` and `wildocr ocr` as real subprocesses, with a fake `gs`
first on PATH that leaves a marker if anything ever starts it. Then the single cases: S3 keys with
`?versionId=`, a missing prefix on every store, the byte limit and the header read first, `--render`
never writing over an input, and a Param that tries to print a Variable (real `dag.test()`).

`pytest tests/e2e/test_hostile_inputs.py -rP` prints the case table that docs/operations.md carries.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from include.sample_data import generate
from tests.helpers import DOS_EPS, EPS, _jpeg, corrupt_scans, png_header, read_rows
from wildocr.pipeline import loader, run, staged
from wildocr.storage import objectstore, tables

ROOT = Path(__file__).resolve().parents[2]
DT = "2026-11-24"
SEED = 2  # image 0: 1024x768 with 11 words
HUGE = 300 * 2**20  # a sparse file over the 256 MiB default byte limit


@dataclass
class Case:
    """One object of the hostile tree and the row wildocr must give it."""

    key: str  # relative to the source prefix, as its URI spells it
    what: str
    expect: str  # "ok" | "error"
    error: str = ""  # regex for the error message
    size: tuple[int, int] | None = None
    outcome: str = field(default="", init=False)


@dataclass
class Tree:
    source: Path
    cases: list[Case]
    fake_bin: Path
    marker: Path


def build_tree(base: Path) -> Tree:
    """The hostile tree under `base/src` (plus the targets of its links under `base/elsewhere`)."""
    src, elsewhere = base / "src", base / "elsewhere"
    for folder in ("formats", "corrupt", "names", "links", "sizes"):
        (src / folder).mkdir(parents=True, exist_ok=True)
    photo_dir = base / "photo"
    truth = generate(str(photo_dir), count=1, seed=SEED)[0]
    photo = (photo_dir / truth["image"]).read_bytes()
    zeros, stray_eoi = corrupt_scans(photo)
    (elsewhere / "folder").mkdir(parents=True)
    (elsewhere / "real.jpg").write_bytes(_jpeg(21, 13))
    (elsewhere / "folder" / "inside.jpg").write_bytes(_jpeg(23, 11))

    files = {
        "formats/photo.jpg": photo,
        "formats/eps.jpg": EPS,
        "formats/eps.png": DOS_EPS,
        "corrupt/zeros-in-scan.jpg": zeros,
        "corrupt/stray-eoi.jpg": stray_eoi,
        "names/ok.jpg": _jpeg(9, 7),
        "names/50%41 off é.jpg": _jpeg(15, 3),
    }
    for key, data in files.items():
        (src / key).write_bytes(data)
    with open(os.fsencode(src / "names") + b"/caf\xe9.jpg", "wb") as fh:  # latin-1 name, not UTF-8
        fh.write(_jpeg(11, 5))
    os.symlink(elsewhere / "real.jpg", src / "links" / "to-photo.jpg")
    os.symlink(elsewhere / "folder", src / "links" / "folder")
    os.symlink(base / "nowhere.jpg", src / "links" / "broken.jpg")
    os.symlink("..", src / "links" / "loop")  # back to src/: must not be walked forever
    os.mkfifo(src / "formats" / "pipe.jpg")  # reading it would block forever
    with open(src / "sizes" / "huge.png", "wb") as fh:  # sparse: no disk, no memory
        fh.write(png_header(64, 64))
        fh.truncate(HUGE)

    fake_bin = base / "bin"
    fake_bin.mkdir()
    marker = base / "GHOSTSCRIPT_RAN"
    (fake_bin / "gs").write_text(f'#!/bin/sh\necho "$@" > {marker}\nexit 1\n')
    (fake_bin / "gs").chmod(0o755)

    limit = loader.DEFAULT_MAX_BYTES
    cases = [
        Case("formats/photo.jpg", "baseline JPEG photo", "ok", size=(1024, 768)),
        Case("formats/eps.jpg", "EPS (PostScript) named .jpg", "error", r"^unsupported format: EPS$"),
        Case("formats/eps.png", "DOS EPS binary named .png", "error", r"^unsupported format: EPS$"),
        Case(
            "corrupt/zeros-in-scan.jpg",
            "2 KB of zeros inside the JPEG scan",
            "error",
            r"^corrupt JPEG data: premature end of data segment$",
        ),
        Case(
            "corrupt/stray-eoi.jpg",
            "stray end-of-image marker mid-scan",
            "error",
            r"^corrupt JPEG data: premature end of data segment$",
        ),
        Case("names/ok.jpg", "neighbour of the bad name", "ok", size=(9, 7)),
        Case("names/caf%E9.jpg", "file name not valid UTF-8 (latin-1 `é`)", "ok", size=(11, 5)),
        Case("names/50%2541 off é.jpg", "`%41`, a space and `é` in a UTF-8 name", "ok", size=(15, 3)),
        Case("links/to-photo.jpg", "symbolic link to a photo outside the prefix", "ok", size=(21, 13)),
        Case("links/folder/inside.jpg", "photo in a linked folder", "ok", size=(23, 11)),
        Case(
            "links/broken.jpg",
            "broken symbolic link",
            "error",
            r"^broken symbolic link: No such file or directory$",
        ),
        Case("formats/pipe.jpg", "named pipe (FIFO) named .jpg", "error", r"^not a regular file$"),
        Case(
            "sizes/huge.png",
            "300 MiB sparse file (a PNG header, then zeros)",
            "error",
            rf"^refused: {HUGE} bytes is over the limit of {limit} bytes$",
        ),
    ]
    return Tree(src, cases, fake_bin, marker)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Tree:
    return build_tree(tmp_path_factory.mktemp("hostile"))


def _env(tree: Tree) -> dict[str, str]:
    return {**os.environ, "PATH": f"{tree.fake_bin}{os.pathsep}{os.environ['PATH']}"}


def _wildocr(*args: str, env: dict[str, str] | None = None, check: bool = True, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "wildocr.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        errors="backslashreplace",
        check=check,
        timeout=600,
        **kwargs,
    )


def _check(case: Case, row: dict | None) -> str:
    assert row is not None, "no row"
    if case.expect == "error":
        assert row["status"] == "error", f"status {row['status']}"
        assert re.search(case.error, row["error"]), row["error"]
        return f"error row: `{row['error']}`"
    assert row["status"] == "ok", row["error"]
    if case.size is not None:
        assert (row["width"], row["height"]) == case.size, (row["width"], row["height"])
    return f"ok, {row['width']}x{row['height']}"


def test_wildocr_run_gives_every_hostile_object_its_row_and_never_starts_a_program(tree, tmp_path):
    out = tmp_path / "lake"
    done = _wildocr("run", str(tree.source), "--output", str(out), "--dt", DT, env=_env(tree))
    summary = json.loads(done.stdout)
    rows = {r["image_uri"].split("/src/", 1)[1]: r for r in read_rows(str(out), "images")}
    failures = []
    for case in tree.cases:
        try:
            case.outcome = _check(case, rows.get(case.key))
        except AssertionError as exc:
            case.outcome = f"FAILED: {exc}"
            failures.append(f"{case.key}: {exc}")
    handled = sum(not c.outcome.startswith("FAILED") for c in tree.cases)
    print(
        "\n".join(
            [
                f"cases tried: {len(tree.cases)}, handled: {handled}",
                "| object | what | outcome |",
                "|---|---|---|",
                *(f"| `{c.key}` | {c.what} | {c.outcome} |" for c in tree.cases),
            ]
        )
    )
    assert not failures, "\n".join(failures)
    assert not tree.marker.exists(), f"Ghostscript was started: {tree.marker.read_text()}"
    # every URI in the table is text that opens its object again (the same bytes)
    for row in rows.values():
        if row["sha256"] is not None:
            assert hashlib.sha256(objectstore.read_bytes(row["image_uri"])).hexdigest() == row["sha256"]
    # one row per object, nothing else (the `loop` link back to src/ was not walked again)
    assert sorted(rows) == sorted(c.key for c in tree.cases)
    assert summary["images"] == len(tree.cases) and summary["errors"] == sum(
        c.expect == "error" for c in tree.cases
    )
    assert "not following" in done.stderr and "links/loop" in done.stderr
    assert not any(tree.source.rglob("*.overlay.png"))


def test_wildocr_ocr_reads_links_and_writes_valid_json_for_every_object(tree, tmp_path):
    out = tmp_path / "out.jsonl"
    _wildocr("ocr", str(tree.source), "--out", str(out), "--device", "cpu", env=_env(tree))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]  # strict UTF-8
    by_key = {line["uri"].split("/src/", 1)[1]: line for line in lines}
    assert sorted(by_key) == sorted(c.key for c in tree.cases)
    for case in tree.cases:
        line = by_key[case.key]
        if case.expect == "error":
            assert re.search(case.error, line["error"]), (case.key, line["error"])
        else:
            assert "error" not in line and (line["width"], line["height"]) == case.size
    assert not tree.marker.exists()
    # the same name given on the command line (argv holds the raw bytes) and a broken link as a file
    bad_name = os.fsdecode(os.fsencode(tree.source / "names") + b"/caf\xe9.jpg")
    out1 = tmp_path / "one.jsonl"
    _wildocr("ocr", bad_name, str(tree.source / "links" / "broken.jpg"), "--out", str(out1))
    first, second = map(json.loads, out1.read_text(encoding="utf-8").splitlines())
    assert first["uri"].endswith("/names/caf%E9.jpg") and first["uri"].startswith("file:///")
    assert (first["width"], first["height"]) == (11, 5) and second["error"].startswith("read failed: ")
    # ... and that URI, given back, opens the same file
    out3 = tmp_path / "again.jsonl"
    _wildocr("ocr", first["uri"], "--out", str(out3))
    assert json.loads(out3.read_text(encoding="utf-8"))["sha256"] == first["sha256"]
    # a folder made only of links is read too (it used to say "No images found")
    links_only = tmp_path / "links-only"
    links_only.mkdir()
    os.symlink(tree.source / "names" / "ok.jpg", links_only / "a.jpg")
    os.symlink(tree.source / "links" / "folder", links_only / "dataset")
    out2 = tmp_path / "links.jsonl"
    _wildocr("ocr", str(links_only), "--out", str(out2), "--device", "cpu")
    sizes = sorted((j["width"], j["height"]) for j in map(json.loads, out2.read_text().splitlines()))
    assert sizes == [(9, 7), (23, 11)]


# Unreadable sub-folder ----------------------------------------------------------------------------------


def _setpriv_without_dac() -> list[str] | None:
    """A command prefix that runs a program as this user but subject to file permissions (root drops
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH), or None when that cannot be had here."""
    if os.geteuid() != 0:
        return []  # an ordinary user is already subject to permissions
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]


def test_an_unreadable_sub_folder_is_counted_and_named_not_silently_dropped():
    prefix = _setpriv_without_dac()
    if prefix is None:
        pytest.skip("running as root without setpriv: no way to make a folder unreadable to us")
    base = Path(tempfile.mkdtemp(prefix="wildocr-perm-"))
    try:
        src = base / "src"
        (src / "open").mkdir(parents=True)
        (src / "locked").mkdir()
        (src / "open" / "a.jpg").write_bytes(_jpeg(8, 8))
        (src / "locked" / "b.jpg").write_bytes(_jpeg(8, 8))
        (src / "locked").chmod(0)
        probe = subprocess.run([*prefix, "ls", str(src / "locked")], capture_output=True)
        if probe.returncode == 0:
            pytest.skip("file permissions are not enforced for this process here (no way to test)")
        done = subprocess.run(
            [*prefix, sys.executable, "-m", "wildocr.cli", "shard", "plan", str(src), "--manifest",
             str(base / "manifest.parquet")],
            capture_output=True, text=True, check=True, timeout=300,
        )  # fmt: skip
        info = json.loads(done.stdout)
        assert (info["n_images"], info["unreadable_folders"]) == (1, 1), info
        assert f"cannot list the folder file://{src}/locked" in done.stderr
        assert "1 folder(s) under the source could not be listed" in done.stderr
    finally:
        (base / "src" / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# S3 keys are keys -------------------------------------------------------------------------------------


def test_s3_keys_with_version_id_like_queries_are_read_as_keys(s3_bucket, tmp_path, capsys):
    import boto3

    options = s3_bucket.storage_options
    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id=options["key"],
        aws_secret_access_key=options["secret"],
        region_name="us-east-1",
    )
    keys = {"in/x?versionId=abc.jpg": (13, 9), "in/y?versionId=.jpg": (15, 5), "in/plain.jpg": (7, 3)}
    for key, (width, height) in keys.items():
        client.put_object(Bucket=s3_bucket.name, Key=key, Body=_jpeg(width, height))
    options_file = tmp_path / "s3.json"
    options_file.write_text(json.dumps(options))
    out = s3_bucket.url("ocr")
    from wildocr.cli import main

    code = main(
        ["run", s3_bucket.url("in/"), "--output", out, "--dt", DT, "--device", "cpu",
         "--storage-options", f"@{options_file}"]
    )  # fmt: skip
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ok"] == 3
    rows = {r["image_uri"]: r for r in read_rows(out, "images", options, tmp_path)}
    assert {uri: (r["width"], r["height"]) for uri, r in rows.items()} == {
        s3_bucket.url(key): size for key, size in keys.items()
    }
    # the loader's own calls: size and a ranged read go to the key itself too
    uri = s3_bucket.url("in/x?versionId=abc.jpg")
    assert objectstore.object_size(uri, options) == len(_jpeg(13, 9))
    assert objectstore.read_bytes(uri, options, start=0, end=2) == b"\xff\xd8"


def test_a_mistyped_prefix_on_a_rerun_keeps_the_published_partition(tmp_path):
    photos = tmp_path / "photos" / DT
    photos.mkdir(parents=True)
    (photos / "a.jpg").write_bytes(_jpeg(9, 7))
    lake = tmp_path / "lake"
    _wildocr("run", str(photos), "--output", str(lake), "--dt", DT, "--device", "cpu")
    published = sorted(p.name for p in (lake / "images" / f"dt={DT}").iterdir())
    assert published == ["part-00000.parquet"]
    typo = _wildocr(
        "run", str(tmp_path / "photo" / DT), "--output", str(lake), "--dt", DT, "--device", "cpu", check=False
    )
    assert typo.returncode != 0 and "no such folder or file" in typo.stderr
    assert sorted(p.name for p in (lake / "images" / f"dt={DT}").iterdir()) == published
    assert len(read_rows(str(lake), "images")) == 1
    assert not (lake / "_staging" / DT / "_lease.json").exists()  # the failed run gave its lease back


# --render ------------------------------------------------------------------------------------------------


def test_render_never_writes_over_an_input_and_same_names_get_their_own_overlays(tmp_path):
    for folder, size in (("a", (9, 7)), ("b", (13, 5))):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "same.jpg").write_bytes(_jpeg(*size))
    originals = {p: p.read_bytes() for p in tmp_path.rglob("*.jpg")}
    for render in (tmp_path / "a", tmp_path / "a" / "overlays"):
        refused = _wildocr("ocr", str(tmp_path / "a"), "--render", str(render), check=False)
        assert refused.returncode == 2 and "is in or under" in refused.stderr, refused.stderr
    refused = _wildocr("ocr", str(tmp_path / "b" / "same.jpg"), "--render", str(tmp_path / "b"), check=False)
    assert refused.returncode == 2
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.jpg")} == originals
    assert not list(tmp_path.rglob("*.png"))

    out = tmp_path / "out.jsonl"
    _wildocr(
        "ocr", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--render", str(tmp_path / "r")
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    overlays = sorted(Path(line["overlay"]) for line in lines)
    assert len(set(overlays)) == 2 and sorted((tmp_path / "r").iterdir()) == overlays
    assert all(re.fullmatch(r"same\.[0-9a-f]{10}\.overlay\.png", p.name) for p in overlays)
    sizes = sorted(Image.open(p).size for p in overlays)
    assert sizes == [(9, 7), (13, 5)]  # one overlay per input, neither written over the other
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.jpg")} == originals


# A Param cannot print a Variable ------------------------------------------------------------------------

PARTNER_SECRET = "hunter2-partner-s3cr3t-0451"


@pytest.mark.slow
@pytest.mark.usefixtures("airflow_db")
def test_a_param_cannot_render_a_variable_into_the_prefix_or_the_log(tmp_path, monkeypatch, capfd):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("AIRFLOW_VAR_PARTNER_PASSWORD", PARTNER_SECRET)
    (tmp_path / "photos" / PARTNER_SECRET).mkdir(parents=True)  # where the leaking prefix would point
    (tmp_path / "photos" / PARTNER_SECRET / "a.jpg").write_bytes(_jpeg(9, 7))
    dag = DagBag(dag_folder=str(ROOT / "dags" / "wildocr_backfill.py")).get_dag("wildocr_backfill")
    lake = tmp_path / "lake"
    conf = {
        "source_prefix": f"{tmp_path}/photos/{{{{ var.value.partner_password }}}}/",
        "dt": DT,
        "output_root": str(lake),
        "mode": "fused",
    }
    dr = dag.test(logical_date=None, run_conf=conf)
    states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
    output = capfd.readouterr()
    assert dr.state == "failed" and states["manifest"] == "failed", states
    assert "source prefix template: 'var' is undefined" in output.out + output.err
    assert PARTNER_SECRET not in output.out + output.err
    assert not lake.exists()

    # what a prefix needs still renders: date parts and Params
    conf["source_prefix"] = (
        f"{tmp_path}/photos/{{{{ params.mode }}}}/{{{{ year }}}}/{{{{ month }}}}-{{{{ day }}}}/"
    )
    day = tmp_path / "photos" / "fused" / "2026" / "11-24"
    day.mkdir(parents=True)
    (day / "b.jpg").write_bytes(_jpeg(13, 5))
    dr = dag.test(logical_date=None, run_conf=conf)
    assert dr.state == "success"
    rows = read_rows(str(lake), "images")
    assert [r["image_uri"] for r in rows] == [f"file://{day}/b.jpg"]
    assert rows[0]["dt"] is not None and str(rows[0]["dt"])[:10] == DT


def test_manifest_carries_listing_errors_to_the_staged_path(tree, tmp_path, ocr_engine):
    """Listing-time errors (bad name, broken link, pipe) travel in the manifest to the staged tasks too."""
    manifest_url = run.manifest_url(run.staging_root(str(tmp_path / "lake"), DT, "r"))
    run.build_manifest(str(tree.source / "links"), manifest_url, shard_size=50, dt=DT)
    staging = run.staging_root(str(tmp_path / "lake"), DT, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.publish_shard(
        manifest_url,
        0,
        staging_root=staging,
        output_root=str(tmp_path / "lake"),
        dt=DT,
        run_id="r",
        engine=ocr_engine,
    )
    rows = {r["image_uri"].rsplit("/links/", 1)[1]: r for r in read_rows(str(tmp_path / "lake"), "images")}
    assert rows["broken.jpg"]["error"] == "broken symbolic link: No such file or directory"
    assert rows["to-photo.jpg"]["status"] == rows["folder/inside.jpg"]["status"] == tables.STATUS_OK


def test_documents_staged_and_fused_give_each_page_its_row_and_bad_ones_their_error(tmp_path, ocr_engine):
    """Documents through both task paths with a page limit of 2: a 3-page PDF (2 pages read, one error row
    for page 3), a 2-page TIFF, an encrypted PDF, a truncated PDF and a PDF named .jpg. The staged tasks
    (detect, crop again from the bytes, recognize, publish) write exactly the fused rows."""
    from tests.helpers import encrypted_pdf, pdf_bytes, sample_pages, tiff_bytes
    from wildocr.pipeline import fused

    pages, _ = sample_pages(3, seed=43)
    src = tmp_path / "docs"
    src.mkdir()
    letter = pdf_bytes(pages)
    (src / "a_letter.pdf").write_bytes(letter)
    (src / "b_scan.tiff").write_bytes(tiff_bytes(pages[1:]))
    (src / "c_locked.pdf").write_bytes(encrypted_pdf())
    (src / "d_cut.pdf").write_bytes(letter[: len(letter) // 2])
    (src / "e_named.jpg").write_bytes(pdf_bytes(pages[:1]))
    lake = tmp_path / "lake"
    manifest_url = run.manifest_url(run.staging_root(str(lake), DT, "r"))
    run.build_manifest(str(src), manifest_url, shard_size=50, dt=DT)
    staging = run.staging_root(str(lake), DT, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine, max_pages=2)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine, max_pages=2)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    summary = staged.publish_shard(
        manifest_url, 0, staging_root=staging, output_root=str(lake), dt=DT, run_id="r", engine=ocr_engine
    )
    fused_lake = tmp_path / "fused"
    fused.process_shard(
        manifest_url, 0, output_root=str(fused_lake), dt=DT, run_id="r", engine=ocr_engine, max_pages=2
    )

    def rows(root: Path, table: str) -> list[dict]:
        out = read_rows(str(root), table)
        for row in out:
            for key in ("processed_at", "det_seconds", "rec_seconds"):
                row.pop(key, None)
        return sorted(out, key=lambda r: (r["image_uri"], r["page"], r.get("word_index", 0)))

    images = rows(lake, "images")
    assert [(r["image_uri"].rsplit("/", 1)[1], r["page"], r["error"]) for r in images] == [
        ("a_letter.pdf", 1, None),
        ("a_letter.pdf", 2, None),
        ("a_letter.pdf", 3, "refused: the document has 3 pages, over the page limit of 2: page 3 not read"),
        ("b_scan.tiff", 1, None),
        ("b_scan.tiff", 2, None),
        ("c_locked.pdf", 1, "PDF is encrypted: it needs a password to be read"),
        ("d_cut.pdf", 1, "PDF is damaged: Failed to load document (PDFium: Data format error)."),
        ("e_named.jpg", 1, None),
    ]
    assert all(r["n_words"] > 0 for r in images if r["error"] is None)
    assert (summary.images, summary.objects, summary.errors) == (8, 5, 3)
    for table in ("images", "words"):
        assert rows(lake, table) == rows(fused_lake, table), table
