"""`wildocr` command line: `ocr` reads images into JSON lines; `shard`/`run` write Parquet tables."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

import cv2
from tqdm import tqdm

from wildocr.engine import EngineConfig, ImageResult, OCREngine
from wildocr.engine.imageio import DEFAULT_MAX_PIXELS
from wildocr.pipeline import cli as pipeline_cli
from wildocr.pipeline.loader import chunked, iter_loaded
from wildocr.pipeline.shard import DEFAULT_CHUNK_SIZE, DEFAULT_PREFETCH
from wildocr.render import render_overlay
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo

log = logging.getLogger("wildocr")


def expand_inputs(inputs: list[str], storage_options: dict[str, Any] | None) -> tuple[list[ObjectInfo], int]:
    """Files stay as given (size unknown: the loader asks); folders and prefixes become the image objects
    under them, sorted, links followed. Also returns how many sub-folders could not be listed."""
    objects: list[ObjectInfo] = []
    unreadable = 0
    for item in inputs:
        fs, path = objectstore.url_to_fs(item, storage_options)
        if fs.isdir(path):
            listing = objectstore.list_images(item, storage_options)
            objects.extend(listing.images)
            unreadable += len(listing.unreadable)
        else:
            text = objectstore.valid_text(item)
            objects.append(ObjectInfo(text, -1, "", None if text == item else objectstore.NAME_NOT_UTF8))
    return objects, unreadable


def read_images(
    engine: OCREngine,
    objects: list[ObjectInfo],
    storage_options: dict[str, Any] | None,
    chunk: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[tuple[str, Any, ImageResult]]:
    """(uri, image or None, result) in input order, through the same loader as the shard pipeline."""
    loaded = iter_loaded(objects, storage_options, prefetch=DEFAULT_PREFETCH, max_pixels=DEFAULT_MAX_PIXELS)
    for batch in chunked(loaded, chunk):
        results = iter(engine.read([item.image for item in batch if item.error is None]))
        for item in batch:
            result = ImageResult(error=item.error) if item.error is not None else next(results)
            yield item.obj.uri, item.image, result


def overlay_name(uri: str) -> str:
    """The overlay file of an input: its name, made safe, plus a hash of its full URI, so that inputs of
    the same name in different folders never share an overlay, and `.overlay.png` marks it as one."""
    stem = os.path.splitext(uri.rsplit("/", 1)[-1])[0]
    safe = re.sub(r"[^\w.-]+", "_", stem)[:80] or "image"
    return f"{safe}.{hashlib.sha256(uri.encode()).hexdigest()[:10]}.overlay.png"


def render_dir_problem(
    render: str, inputs: list[str], objects: list[ObjectInfo], storage_options: dict[str, Any] | None
) -> str | None:
    """Why `render` must not receive overlays, or None. Overlays never go into (or under) a folder being
    read, nor beside a file being read: they would be read as photos by the next run, and an overlay
    named like an input would replace it."""
    target = os.path.realpath(render)
    for item in inputs:
        fs, path = objectstore.url_to_fs(item, storage_options)
        if not objectstore.is_local(fs):
            continue
        real = os.path.realpath(path)
        folder = real if os.path.isdir(real) else os.path.dirname(real)
        if target == folder or target.startswith(folder.rstrip(os.sep) + os.sep):
            return f"--render {render} is in or under {item}, which is being read: use a folder of its own"
    uris = {o.uri for o in objects}
    if len({overlay_name(uri) for uri in uris}) != len(uris):
        return "two inputs would get the same overlay name"
    return None


def cmd_ocr(args: argparse.Namespace) -> int:
    storage_options = json.loads(args.storage_options) if args.storage_options else None
    objects, unreadable = expand_inputs(args.inputs, storage_options)
    if not objects:
        print("no images found", file=sys.stderr)
        return 1
    if args.render and (problem := render_dir_problem(args.render, args.inputs, objects, storage_options)):
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    options = {"det_limit_side": args.det_limit_side, "rec_batch_size": args.batch_size, **dict(args.option)}
    try:
        config = EngineConfig(device=args.device, backend=args.backend).with_options(**options)
    except TypeError as exc:  # an --option KEY that EngineConfig does not have
        print(f"wildocr ocr: bad --option: {exc}", file=sys.stderr)
        return 2
    engine = OCREngine(config)
    if args.render:
        os.makedirs(args.render, exist_ok=True)
    out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout  # noqa: SIM115
    errors = 0
    start = time.perf_counter()
    try:
        total = len(objects)
        progress = tqdm(total=total, unit="img", disable=total < 10 or not sys.stderr.isatty())
        for uri, image, result in read_images(engine, objects, storage_options):
            record: dict[str, Any] = {"image": uri.rsplit("/", 1)[-1], "uri": uri}
            if result.ok:
                record.update(
                    width=result.width, height=result.height, words=[w.to_json() for w in result.words]
                )
            else:
                errors += 1
                record.update(error=result.error, words=[])
                log.warning("%s: %s", uri, result.error)
            if args.render and image is not None:
                record["overlay"] = os.path.join(args.render, overlay_name(uri))
                _, png = cv2.imencode(".png", render_overlay(image, result))
                with open(record["overlay"], "wb") as fh:
                    fh.write(png.tobytes())
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            progress.update(1)
        progress.close()
    finally:
        if out is not sys.stdout:
            out.close()
    seconds = time.perf_counter() - start
    folders = f", {unreadable} folder(s) that could not be listed" if unreadable else ""
    print(
        f"{total} images ({errors} errors{folders}) in {seconds:.1f} s, {total / seconds:.2f} images/s "
        f"on {engine.provider}",
        file=sys.stderr,
    )
    return 0


def _engine_option(text: str) -> tuple[str, Any]:
    """'KEY=VALUE' with VALUE as JSON when it parses (1, true, "x"), else as the plain string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildocr", description="OCR in the wild: photos in, words out.")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    p_ocr = sub.add_parser("ocr", help="read images (files, folders, fsspec URLs) into JSON lines")
    p_ocr.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
    p_ocr.add_argument("--out", default="-", help="JSON lines output file (default: stdout)")
    p_ocr.add_argument(
        "--render",
        metavar="DIR",
        help="write a PNG overlay per image into DIR (NAME.<hash>.overlay.png; not a folder being read)",
    )
    p_ocr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p_ocr.add_argument(
        "--backend",
        default=EngineConfig().backend,
        choices=["auto", "onnxruntime", "openvino"],
        help="inference backend (auto: OpenVINO on CPU when installed; default %(default)s)",
    )
    p_ocr.add_argument("--batch-size", type=int, default=EngineConfig().recognizer.batch_size)
    p_ocr.add_argument(
        "--option",
        type=_engine_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any flat EngineConfig option (workers=1, det_precision=fp32, ...); repeatable",
    )
    p_ocr.add_argument("--det-limit-side", type=int, default=EngineConfig().detector.limit_side)
    p_ocr.add_argument("--storage-options", help="JSON dict passed to fsspec (e.g. S3 endpoint_url)")
    p_ocr.set_defaults(func=cmd_ocr)
    pipeline_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
