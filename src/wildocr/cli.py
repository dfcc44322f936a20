"""`wildocr` command line: `ocr` reads images into JSON lines; `shard`/`run` write Parquet tables."""

from __future__ import annotations

import argparse
import json
import logging
import os
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


def expand_inputs(inputs: list[str], storage_options: dict[str, Any] | None) -> list[str]:
    """Files stay as given; folders and prefixes become the image objects under them, sorted."""
    uris: list[str] = []
    for item in inputs:
        fs, path = objectstore.url_to_fs(item, storage_options)
        if fs.isdir(path):
            uris.extend(o.uri for o in objectstore.list_images(item, storage_options).images)
        else:
            uris.append(item)
    return uris


def read_images(
    engine: OCREngine,
    uris: list[str],
    storage_options: dict[str, Any] | None,
    chunk: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[tuple[str, Any, ImageResult]]:
    """(uri, image or None, result) in input order, through the same loader as the shard pipeline."""
    objects = [ObjectInfo(uri, -1, "") for uri in uris]
    loaded = iter_loaded(objects, storage_options, prefetch=DEFAULT_PREFETCH, max_pixels=DEFAULT_MAX_PIXELS)
    for batch in chunked(loaded, chunk):
        results = iter(engine.read([item.image for item in batch if item.error is None]))
        for item in batch:
            result = ImageResult(error=item.error) if item.error is not None else next(results)
            yield item.obj.uri, item.image, result


def cmd_ocr(args: argparse.Namespace) -> int:
    storage_options = json.loads(args.storage_options) if args.storage_options else None
    uris = expand_inputs(args.inputs, storage_options)
    if not uris:
        print("no images found", file=sys.stderr)
        return 1
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
        progress = tqdm(total=len(uris), unit="img", disable=len(uris) < 10 or not sys.stderr.isatty())
        for uri, image, result in read_images(engine, uris, storage_options):
            record: dict[str, Any] = {"image": uri.rsplit("/", 1)[-1], "uri": uri}
            if result.ok:
                record.update(
                    width=result.width, height=result.height, words=[w.to_json() for w in result.words]
                )
            else:
                errors += 1
                record.update(error=result.error, words=[])
                log.warning("%s: %s", uri, result.error)
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if args.render and image is not None:
                name = os.path.splitext(record["image"])[0] + ".png"
                cv2.imwrite(os.path.join(args.render, name), render_overlay(image, result))
            progress.update(1)
        progress.close()
    finally:
        if out is not sys.stdout:
            out.close()
    seconds = time.perf_counter() - start
    print(
        f"{len(uris)} images ({errors} errors) in {seconds:.1f} s, {len(uris) / seconds:.2f} images/s "
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
    p_ocr.add_argument("--render", metavar="DIR", help="write a PNG overlay per image into DIR")
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
