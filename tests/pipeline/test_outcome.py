"""Bad inputs through the real shard processing: every odd object gives correct OCR or one clear error row.

The corpus is generated here (small): broken bytes, every pixel format Pillow hands us, extreme sizes, a
decompression bomb, EXIF orientation, object keys with spaces, unicode and `..`. It is uploaded to the moto
S3 server and run through `process_shard` with the real engine, like a nightly run would. The test prints
the per-case table that docs/operations.md carries (`pytest -rP` shows it).

Also here: secrets never reach the Parquet files or the logs, output paths never come from object keys,
the per-image time limit, and one image the engine fails on costing its own row rather than the shard.
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import pytest
from PIL import Image

from include.sample_data import generate
from tests.helpers import png_header, read_rows, stable
from wildocr.pipeline import fused, outcome, run, staged
from wildocr.pipeline.outputs import ShardSummary
from wildocr.storage import manifest, objectstore

DT = "2026-11-24"
SEED = 2  # image 0 of this seed: 1024x768, 11 words on signs
MIN_RECALL = 0.7  # share of the drawn words read with the right text at the right place


# The corpus -------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One object of the corpus and what wildocr must make of it."""

    key: str  # under the source prefix
    data: bytes
    what: str  # for the report
    # "words": reads the sample's words at their place | "strip": reads `OPEN 24` along a strip | "ok" |
    # "error" | "skipped"
    expect: str
    error: str = ""  # regex the error message must match
    size: tuple[int, int] | None = None  # (width, height) the ok row must report
    vanish: bool = False  # deleted between listing and reading
    outcome: str = field(default="", init=False)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **options)
    return buf.getvalue()


def _tiny(width: int, height: int, value: int = 128) -> bytes:
    return _encode(Image.fromarray(np.full((height, width, 3), value, np.uint8)), "JPEG", quality=95)


_STRIP_REPEATS = 33


def _strip(width: int, height: int) -> bytes:
    """A 20000x40 (or 40x20000) white strip with `OPEN 24` written along it 33 times."""
    long, short = max(width, height), min(width, height)
    canvas = np.full((short, long, 3), 255, np.uint8)
    for x in range(10, 600 * _STRIP_REPEATS, 600):
        cv2.putText(canvas, "OPEN 24", (x, short - 8), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 0), 2)
    if height > width:
        canvas = np.ascontiguousarray(np.rot90(canvas, -1))
    return cv2.imencode(".png", canvas)[1].tobytes()


def _with_exif_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(image, "JPEG", quality=92, exif=exif.tobytes())


def _with_corrupt_exif(jpeg: bytes) -> bytes:
    junk = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08" + b"\xff\x13" * 40
    return jpeg[:2] + b"\xff\xe1" + (len(junk) + 2).to_bytes(2, "big") + junk + jpeg[2:]


def _corrupt_png(png: bytes) -> bytes:
    start = png.index(b"IDAT") + 4 + 64  # inside the compressed pixels, CRC left stale
    return png[:start] + bytes(b ^ 0x5A for b in png[start : start + 512]) + png[start + 512 :]


def build_corpus(photo: bytes) -> list[Case]:
    """The corpus, from one generated photo (JPEG bytes) whose drawn words are known."""
    rgb_image = Image.open(io.BytesIO(photo)).convert("RGB")
    rgb = np.asarray(rgb_image)
    width, height = rgb_image.size
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    grey = rgb_image.convert("L")
    rgba = rgb_image.convert("RGBA")
    alpha = np.full((height, width), 255, np.uint8)
    alpha[:16], alpha[-16:], alpha[:, :16], alpha[:, -16:] = 0, 0, 0, 0  # a transparent frame
    rgba.putalpha(Image.fromarray(alpha))
    gif_frames = [rgb_image.quantize(256), Image.new("RGB", (width, height), "white").quantize(2)]
    gif = io.BytesIO()
    gif_frames[0].save(gif, format="GIF", save_all=True, append_images=gif_frames[1:], duration=500, loop=0)
    png = _encode(rgb_image, "PNG")
    # stored turned 90° counter-clockwise; EXIF 6 says "turn 90° clockwise to view": upright = the photo
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(rgb, 1)))
    upright = (width, height)
    w = "words"
    return [
        Case("formats/photo.jpg", photo, "baseline JPEG photo", w, size=upright),
        Case("formats/grey.jpg", _encode(grey, "JPEG", quality=92), "greyscale JPEG (mode L)", w),
        Case(
            "formats/grey16.png",
            cv2.imencode(".png", np.asarray(grey).astype(np.uint16) * 257)[1].tobytes(),
            "16-bit greyscale PNG",
            w,
        ),
        Case(
            "formats/rgb48.png",
            cv2.imencode(".png", bgr.astype(np.uint16) * 257)[1].tobytes(),
            "16-bit-per-channel RGB PNG",
            w,
        ),
        Case("formats/rgba.png", _encode(rgba, "PNG"), "RGBA PNG, transparent frame (on white)", w),
        Case("formats/palette.png", _encode(rgb_image.quantize(256), "PNG"), "palette PNG (mode P)", w),
        Case("formats/cmyk.jpg", _encode(rgb_image.convert("CMYK"), "JPEG", quality=92), "CMYK JPEG", w),
        Case("formats/animated.gif", gif.getvalue(), "animated GIF named .gif", "skipped"),
        Case("formats/animated-gif.png", gif.getvalue(), "animated GIF named .png (first frame)", w),
        Case("formats/photo.webp", _encode(rgb_image, "WEBP", quality=90), "WebP", w),
        Case("formats/photo.tif", _encode(rgb_image, "TIFF", compression="tiff_lzw"), "TIFF (LZW)", w),
        Case("formats/photo.bmp", _encode(rgb_image, "BMP"), "BMP", w),
        Case("formats/jpeg-named.png", photo, "JPEG bytes named .png", w),
        Case("formats/notes.txt", b"not listed", "a .txt object", "skipped"),
        Case("exif/rotated.jpg", _with_exif_orientation(turned, 6), "EXIF orientation 6", w, size=upright),
        Case(
            "exif/corrupt-exif.jpg",
            _with_corrupt_exif(_tiny(64, 48)),
            "corrupt EXIF block",
            "ok",
            size=(64, 48),
        ),
        Case(
            "exif/orientation-9.jpg",
            _with_exif_orientation(Image.new("RGB", (64, 48)), 9),
            "invalid EXIF orientation (9)",
            "ok",
            size=(64, 48),
        ),
        Case(
            "sizes/one-pixel.png",
            cv2.imencode(".png", bgr[:1, :1])[1].tobytes(),
            "1x1 image",
            "ok",
            size=(1, 1),
        ),
        Case("sizes/wide.png", _strip(20000, 40), "20000x40 strip, `OPEN 24` x33", "strip", size=(20000, 40)),
        Case("sizes/tall.png", _strip(40, 20000), "40x20000 strip, `OPEN 24` x33", "strip", size=(40, 20000)),
        Case("formats/broken-empty.jpg", b"", "0-byte file", "error", error=r"^empty file \(0 bytes\)$"),
        Case(
            "formats/broken-text.jpg",
            b"Hello, I am a text file.\n" * 20,
            "text file named .jpg",
            "error",
            error=r"^not an image \(unrecognised format\)$",
        ),
        Case(
            "formats/broken-truncated.jpg",
            photo[: len(photo) * 2 // 5],
            "JPEG cut at 40%",
            "error",
            error=r"^truncated or corrupt JPEG data: image file is truncated",
        ),
        Case(
            "formats/broken-corrupt.png",
            _corrupt_png(png),
            "PNG with garbled pixel data",
            "error",
            error=r"^truncated or corrupt PNG data: ",
        ),
        Case(
            "formats/broken-truncated.png",
            png[: len(png) // 2],
            "PNG cut in half",
            "error",
            error=r"^truncated or corrupt PNG data: ",
        ),
        Case(
            "sizes/broken-bomb.png",
            png_header(100_000, 100_000),
            "bomb: header declares 100000x100000",
            "error",
            error=r"^refused: decompression bomb: Image size \(10000000000 pixels\)",
        ),
        Case(
            "sizes/broken-100mp.png",
            png_header(10_000, 10_000),
            "header declares 10000x10000 (Pillow only warns)",
            "error",
            error=r"^refused: 10000x10000 = 100000000 pixels is over the limit of 80000000$",
        ),
        Case(
            "sizes/broken-over-limit.png",
            png_header(9_500, 8_500),
            "header declares 9500x8500 (80.75 MP)",
            "error",
            error=r"^refused: 9500x8500 = 80750000 pixels is over the limit of 80000000$",
        ),
        Case(
            "keys/broken-vanished.jpg",
            photo,
            "deleted between listing and reading",
            "error",
            error=r"^read failed: FileNotFoundError: ",
            vanish=True,
        ),
        Case("keys/with space/photo one.jpg", _tiny(11, 7), "key with spaces", "ok", size=(11, 7)),
        Case("keys/unicode/café 写真 ü.jpg", _tiny(13, 9), "key with unicode", "ok", size=(13, 9)),
        Case("keys/odd/100% off #1?+&=.jpg", _tiny(15, 5), "key with % # ? + & =", "ok", size=(15, 5)),
        Case("keys/dots/../../escape.jpg", _tiny(17, 3), "key with `..` segments", "ok", size=(17, 3)),
        Case("escape.jpg", _tiny(19, 11), "decoy at the key `..` would resolve to", "ok", size=(19, 11)),
    ]


def recall(words: list[dict], truth: list[dict]) -> float:
    """Share of drawn words read with the same text, centred inside the drawn box (8 px slack)."""
    found = 0
    for gt in truth:
        xs, ys = [p[0] for p in gt["poly"]], [p[1] for p in gt["poly"]]
        found += any(
            w["text"] == gt["text"]
            and min(xs) - 8 <= (w["x_min"] + w["x_max"]) / 2 <= max(xs) + 8
            and min(ys) - 8 <= (w["y_min"] + w["y_max"]) / 2 <= max(ys) + 8
            for w in words
        )
    return found / len(truth)


@dataclass
class CorpusRun:
    cases: list[Case]
    truth: list[dict]
    source: str
    output: str
    options: dict
    bucket: str
    info: manifest.ManifestInfo
    summaries: list[ShardSummary]
    images: dict[str, dict]  # key -> images row
    words: dict[str, list[dict]]  # key -> its words rows


@pytest.fixture(scope="module")
def corpus_run(s3_server, ocr_engine, tmp_path_factory) -> CorpusRun:
    """The corpus uploaded to S3, listed into shards of 6 and run through the fused shard processing."""
    local = tmp_path_factory.mktemp("sample")
    truth = generate(str(local), count=1, seed=SEED)[0]
    cases = build_corpus((local / truth["image"]).read_bytes())
    bucket = s3_server.create_bucket()
    options = s3_server.storage_options
    fs = s3_server.fs
    source = f"s3://{bucket}/incoming/{DT}/"
    for case in cases:
        fs.pipe_file(f"{bucket}/incoming/{DT}/{case.key}", case.data)
    output = f"s3://{bucket}/ocr"
    staging = run.staging_root(output, DT, "reliability-corpus")
    manifest_url = run.manifest_url(staging)
    shards = run.build_manifest(source, manifest_url, shard_size=6, storage_options=options, dt=DT)
    for case in cases:
        if case.vanish:
            fs.rm_file(f"{bucket}/incoming/{DT}/{case.key}")
    summaries = [
        fused.process_shard(
            manifest_url,
            n,
            output_root=output,
            dt=DT,
            run_id="corpus",
            engine=ocr_engine,
            storage_options=options,
        )
        for n in shards
    ]
    info = manifest.read_manifest(manifest_url, options)[1]
    run.remove_staging(staging, options)
    download = tmp_path_factory.mktemp("download")
    images = {r["image_uri"][len(source) :]: r for r in read_rows(output, "images", options, download)}
    words: dict[str, list[dict]] = {}
    for row in read_rows(output, "words", options, download):
        words.setdefault(row["image_uri"][len(source) :], []).append(row)
    return CorpusRun(cases, truth["words"], source, output, options, bucket, info, summaries, images, words)


def _check(case: Case, corpus: CorpusRun) -> str:
    """The case's outcome in words; AssertionError when it is not what the case expects."""
    if case.expect == "skipped":
        assert case.key not in corpus.images, "a non-image extension must not be listed"
        return "skipped at listing (counted in `skipped_other`)"
    row = corpus.images.get(case.key)
    assert row is not None, "no images row"
    mine = corpus.words.get(case.key, [])
    assert row["n_words"] == len(mine), "n_words disagrees with the words table"
    if case.expect == "error":
        assert row["status"] == "error" and row["n_words"] == 0 and not mine
        assert re.search(case.error, row["error"]), row["error"]
        return f"error row: `{row['error'][:90]}`"
    assert row["status"] == "ok", row["error"]
    if case.size is not None:
        assert (row["width"], row["height"]) == case.size
    if case.expect == "words":
        found = recall(mine, corpus.truth)
        assert found >= MIN_RECALL, f"only {found:.0%} of the drawn words read at their place"
        return f"ok, {len(mine)} words, {found:.0%} of the drawn words at their place"
    if case.expect == "strip":
        right = sum(w["text"] in ("OPEN", "24") for w in mine)
        assert right >= 0.8 * 2 * _STRIP_REPEATS, f"{right} of {2 * _STRIP_REPEATS} words read"
        return f"ok, {row['width']}x{row['height']}, {right} of the {2 * _STRIP_REPEATS} words read"
    return f"ok, {row['width']}x{row['height']}, {len(mine)} words"


def test_every_bad_input_gives_correct_ocr_or_one_clear_error_row(corpus_run):
    corpus = corpus_run
    listed = [c for c in corpus.cases if c.expect != "skipped"]
    assert corpus.info.n_images == len(listed) and corpus.info.skipped_other == len(corpus.cases) - len(
        listed
    )
    assert sorted(corpus.images) == sorted(c.key for c in listed)  # one row per object, none twice
    assert sum(s.images for s in corpus.summaries) == len(listed)
    failures = []
    for case in corpus.cases:
        try:
            case.outcome = _check(case, corpus)
        except AssertionError as exc:
            case.outcome = f"FAILED: {exc}"
            failures.append(f"{case.key}: {exc}")
    handled = sum(not c.outcome.startswith("FAILED") for c in corpus.cases)
    lines = [
        f"cases tried: {len(corpus.cases)}, handled: {handled}",
        "| object | what | outcome |",
        "|---|---|---|",
        *(f"| `{c.key}` | {c.what} | {c.outcome} |" for c in corpus.cases),
    ]
    print("\n".join(lines))
    assert not failures, "\n".join(failures)


def test_shards_mix_good_and_bad_objects_and_all_finish(corpus_run):
    """Each shard held good and bad objects; every shard wrote its rows (bad ones never failed a shard)."""
    by_shard: dict[int, set[str]] = {}
    for row in corpus_run.images.values():
        by_shard.setdefault(row["shard"], set()).add(row["status"])
    assert len(by_shard) == len(corpus_run.summaries) >= 5
    assert sum(statuses == {"ok", "error"} for statuses in by_shard.values()) >= 3


def test_exif_orientation_is_applied_so_boxes_match_the_upright_view(corpus_run):
    row = corpus_run.images["exif/rotated.jpg"]
    assert (row["width"], row["height"]) == (1024, 768)  # stored 768x1024, turned upright by EXIF
    assert recall(corpus_run.words["exif/rotated.jpg"], corpus_run.truth) >= MIN_RECALL


def test_keys_with_dots_spaces_and_unicode_are_read_exactly_and_never_shape_output_paths(corpus_run):
    corpus = corpus_run
    # the `..` key and the key it would collapse to are two objects, each read as itself
    assert (corpus.images["keys/dots/../../escape.jpg"]["width"], corpus.images["escape.jpg"]["width"]) == (
        17,
        19,
    )
    fs = objectstore.url_to_fs(corpus.output, corpus.options)[0]
    fs.invalidate_cache()
    written = [
        k[len(corpus.bucket) + 1 :]
        for k in fs.find(corpus.bucket)
        if not k.startswith(f"{corpus.bucket}/incoming/")
    ]
    allowed = re.compile(r"^ocr/(images|words)/dt=2026-11-24/part-\d{5}\.parquet$")
    assert written and all(allowed.match(k) for k in written), written


# Secrets ----------------------------------------------------------------------------------------------

KEY_ID = "AKIAWILDOCRTESTKEY42"
SECRET = "wildocr-s3cr3t/DO+NOT+LOG/0123456789abcdefXYZ"


def test_no_secret_in_tables_staging_logs_or_summaries(s3_server, ocr_engine, tmp_path, caplog):
    """A run over S3 with credentials in storage_options: the secret appears nowhere it writes or logs."""
    caplog.set_level(logging.DEBUG)
    bucket = s3_server.create_bucket()
    options = {**s3_server.storage_options, "key": KEY_ID, "secret": SECRET}  # moto takes any pair
    source = f"s3://{bucket}/in/"
    generate(source, count=1, seed=SEED, storage_options=options)
    objectstore.write_bytes_atomic(f"{source}broken.jpg", b"\xff\xd8\xff\xe0 broken", options)
    objectstore.write_bytes_atomic(f"{source}gone.jpg", b"x", options)
    output = f"s3://{bucket}/ocr"
    secret_run = run.staging_root(output, DT, "secret-run")
    assert run.build_manifest(
        source, run.manifest_url(secret_run), shard_size=10, storage_options=options
    ) == [0]
    objectstore.remove([f"{source}gone.jpg"], options)  # its error row carries an s3fs message
    results = [
        fused.process_shard(
            run.manifest_url(secret_run),
            0,
            output_root=output,
            dt=DT,
            run_id="r",
            engine=ocr_engine,
            storage_options=options,
        )
    ]
    staged_root = run.staging_root(f"s3://{bucket}/staged", DT, "secret-run")
    results.append(
        staged.detect_shard(
            run.manifest_url(secret_run),
            0,
            staging_root=staged_root,
            engine=ocr_engine,
            storage_options=options,
        )
    )
    results.append(
        staged.crop_shard(
            run.manifest_url(secret_run),
            0,
            staging_root=staged_root,
            engine=ocr_engine,
            storage_options=options,
        )
    )
    results.append(
        staged.recognize_shard(
            run.manifest_url(secret_run),
            0,
            staging_root=staged_root,
            engine=ocr_engine,
            storage_options=options,
        )
    )
    fs = s3_server.fs
    fs.invalidate_cache()
    written = {k: fs.cat_file(k) for k in fs.find(bucket) if not k.startswith(f"{bucket}/in/")}
    assert any("/_staging/" in k for k in written) and any("/_lease.json" in k for k in written)
    assert any(k.endswith("part-00000.parquet") and "/images/" in k for k in written)
    for key, data in written.items():
        assert SECRET.encode() not in data and KEY_ID.encode() not in data, key
    assert results[0].errors == 2
    assert SECRET not in json.dumps([results[0].to_xcom(), *results[1:]])
    assert len(caplog.records) > 10  # botocore/s3fs debug logging was on
    assert SECRET not in caplog.text and SECRET not in "".join(str(r.args) for r in caplog.records)


# Resources --------------------------------------------------------------------------------------------


def test_per_image_time_limit_gives_error_rows_in_both_paths(tmp_path, ocr_engine):
    """A limit every image exceeds: each becomes an error row with its size and no words (fused and staged
    agree), while a broken object keeps its own error."""
    src = tmp_path / "src"
    generate(str(src), count=1, seed=SEED)
    (src / "broken.jpg").write_bytes(b"nope")
    manifest_url = str(tmp_path / "manifest.parquet")
    assert run.build_manifest(str(src), manifest_url, shard_size=10) == [0]
    out = str(tmp_path / "fused")
    summary = fused.process_shard(
        manifest_url, 0, output_root=out, dt=DT, run_id="r", engine=ocr_engine, max_seconds_per_image=1e-6
    )
    assert (summary.ok, summary.errors, summary.words) == (0, 2, 0)
    rows = {r["image_uri"].rsplit("/", 1)[1]: r for r in read_rows(out, "images")}
    assert rows["broken.jpg"]["error"] == "not an image (unrecognised format)"
    limited = rows["sample_0000.jpg"]
    pattern = r"refused: decoding and detection took \d+\.\d{3} s, over the per-image limit of 1e-06 s"
    assert re.fullmatch(pattern, limited["error"])
    assert (limited["width"], limited["height"], limited["n_words"]) == (1024, 768, 0)

    staged_out = str(tmp_path / "staged")
    staging = run.staging_root(staged_out, DT, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine, max_seconds_per_image=1e-6)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=ocr_engine)
    staged.publish_shard(
        manifest_url, 0, staging_root=staging, output_root=staged_out, dt=DT, run_id="r", engine=ocr_engine
    )
    staged_rows = read_rows(staged_out, "images")
    assert stable([{k: v for k, v in r.items() if k != "error"} for r in staged_rows]) == stable(
        [{k: v for k, v in r.items() if k != "error"} for r in rows.values()]
    )
    assert all(r["error"].startswith(("refused: decoding", "not an image")) for r in staged_rows)


class PoisonedEngine:
    """The real engine, except that detection raises on images `poisoned` picks (an engine bug one input
    triggers), or on everything when `broken` (a dead GPU): fault injection at the engine's interface."""

    def __init__(self, engine, poisoned: Callable[[np.ndarray], bool], broken: bool = False) -> None:
        self._engine = engine
        self._poisoned = poisoned
        self.broken = broken

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def detect(self, image):
        if self.broken or self._poisoned(image):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._engine.detect(image)


def test_an_image_the_engine_fails_on_costs_its_row_not_the_shard(tmp_path, ocr_engine):
    src = tmp_path / "src"
    generate(str(src), count=1, seed=SEED)
    (src / "poison.png").write_bytes(cv2.imencode(".png", np.full((33, 77, 3), 255, np.uint8))[1].tobytes())
    manifest_url = str(tmp_path / "manifest.parquet")
    run.build_manifest(str(src), manifest_url, shard_size=10)
    engine = PoisonedEngine(ocr_engine, lambda image: image.shape[:2] == (33, 77))
    out = str(tmp_path / "ocr")
    summary = fused.process_shard(manifest_url, 0, output_root=out, dt=DT, run_id="r", engine=engine)
    assert (summary.ok, summary.errors) == (1, 1) and summary.words > 0
    rows = {r["image_uri"].rsplit("/", 1)[1]: r for r in read_rows(out, "images")}
    assert rows["poison.png"]["error"] == (
        "engine failed on this image: RuntimeError: CUDA error: an illegal memory access was encountered"
    )
    staging = run.staging_root(str(tmp_path / "staged"), DT, "r")
    staged.detect_shard(manifest_url, 0, staging_root=staging, engine=engine)
    staged.crop_shard(manifest_url, 0, staging_root=staging, engine=engine)
    staged.recognize_shard(manifest_url, 0, staging_root=staging, engine=engine)
    published = staged.publish_shard(
        manifest_url,
        0,
        staging_root=staging,
        output_root=str(tmp_path / "staged"),
        dt=DT,
        run_id="r",
        engine=engine,
    )
    assert (published.ok, published.errors, published.words) == (1, 1, summary.words)

    # an engine that fails even on a blank probe is broken: the shard fails (and is retried), no rows
    engine.broken = True
    broken_out = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="illegal memory access"):
        fused.process_shard(manifest_url, 0, output_root=str(broken_out), dt=DT, run_id="r", engine=engine)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        staged.detect_shard(manifest_url, 0, staging_root=str(tmp_path / "staged-broken"), engine=engine)
    assert not broken_out.exists()


class OverlapProbe:
    """The real engine (one image per chunk), noting whether recognition call k sees detection k+1 start
    while it runs, on which thread."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self._detections = 0
        self._changed = threading.Condition()
        self.overlapped: list[bool] = []
        self.recognize_threads: set[str] = set()

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def detect(self, image):
        with self._changed:
            self._detections += 1
            self._changed.notify_all()
        return self._engine.detect(image)

    def recognize(self, crops):
        self.recognize_threads.add(threading.current_thread().name)
        k = len(self.overlapped)
        readings = self._engine.recognize(crops)
        with self._changed:  # stages one after the other never detect image k+1 before this returns
            self.overlapped.append(self._changed.wait_for(lambda: self._detections >= k + 2, timeout=2.0))
        return readings


def test_next_chunk_is_detected_while_this_one_is_recognised(tmp_path, ocr_engine):
    """read_objects keeps both cores busy with one detector: chunk k's recognition runs on another thread
    while chunk k+1 is detected, and the outcomes still come out in input order with the same words."""
    src = tmp_path / "src"
    generate(str(src), count=3, seed=SEED)
    listing = objectstore.list_images(str(src), None).images
    probe = OverlapProbe(ocr_engine)
    pipelined = [o for o, _ in outcome.read_objects(probe, listing, None, chunk_size=1)]
    assert [o.obj.uri for o in pipelined] == [o.uri for o in listing]
    assert probe.overlapped[:2] == [True, True]  # the last chunk has no next one to overlap with
    assert threading.current_thread().name not in probe.recognize_threads
    one_by_one = [
        o for chunk in ([x] for x in listing) for o, _ in outcome.read_objects(ocr_engine, chunk, None)
    ]
    assert [o.words for o in pipelined] == [o.words for o in one_by_one]
    assert sum(len(o.words) for o in pipelined) > 0
