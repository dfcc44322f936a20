"""`wildocr ocr PATH_OR_URL...`: images in, one JSON line per image out (and overlays with --render).

The same image path as the tables (`pipeline.outcome`): a file that cannot be read, a link that leads
nowhere, an image the engine fails on or one over the time limit gets an error line, and the others go on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import sys
import time
from typing import Any

import cv2

from wildocr.cli import args as cli_args
from wildocr.pipeline import options, outcome
from wildocr.render import render_overlay
from wildocr.storage import objectstore
from wildocr.storage.objectstore import ObjectInfo, StorageOptions

log = logging.getLogger("wildocr")


def expand_inputs(inputs: list[str], storage_options: StorageOptions) -> tuple[list[ObjectInfo], int]:
    """Files stay as given (size unknown: the loader asks, and says why one cannot be read); folders and
    prefixes become the image objects under them, sorted, links followed. Also returns how many
    sub-folders could not be listed."""
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


def overlay_name(uri: str) -> str:
    """The overlay file of an input: its name, made safe, plus a hash of its full URI, so that inputs of
    the same name in different folders never share an overlay, and `.overlay.png` marks it as one."""
    stem = os.path.splitext(uri.rsplit("/", 1)[-1])[0]
    safe = re.sub(r"[^\w.-]+", "_", stem)[:80] or "image"
    return f"{safe}.{hashlib.sha256(uri.encode()).hexdigest()[:10]}.overlay.png"


def render_dir_problem(
    render: str, inputs: list[str], objects: list[ObjectInfo], storage_options: StorageOptions
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


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int) -> Any:
    """A tqdm bar on a terminal for 10 images or more; otherwise nothing (and tqdm is never imported)."""
    if total < 10 or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="img")


def cmd_ocr(args: argparse.Namespace) -> int:
    storage_options = cli_args.storage_options(args)
    engine_options = cli_args.engine_options(args)
    objects, unreadable = expand_inputs(args.inputs, storage_options)
    if not objects:
        print("no images found", file=sys.stderr)
        return 1
    if args.render and (problem := render_dir_problem(args.render, args.inputs, objects, storage_options)):
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    from wildocr.engine import OCREngine  # ONNX Runtime: loaded once the arguments are known to be good

    engine = OCREngine(options.engine_config(engine_options))
    if args.render:
        os.makedirs(args.render, exist_ok=True)
    out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout  # noqa: SIM115
    errors = 0
    start = time.perf_counter()
    total = len(objects)
    try:
        progress = _progress(total)
        results = outcome.read_objects(engine, objects, storage_options, keep_pixels=bool(args.render))
        for result, image in results:
            record = outcome.to_json(result)
            if result.error is not None:
                errors += 1
                log.warning("%s: %s", result.obj.uri, result.error)
            if args.render and image is not None:
                record["overlay"] = os.path.join(args.render, overlay_name(result.obj.uri))
                _, png = cv2.imencode(".png", render_overlay(image, [] if result.error else result.words))
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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ocr", help="read images (files, folders, fsspec URLs) into JSON lines")
    p.add_argument("inputs", nargs="+", metavar="PATH_OR_URL")
    p.add_argument("--out", default="-", help="JSON lines output file (default: stdout)")
    p.add_argument(
        "--render",
        metavar="DIR",
        help="write a PNG overlay per image into DIR (NAME.<hash>.overlay.png; not a folder being read)",
    )
    options.add_engine_arguments(p)
    options.add_storage_arguments(p)
    p.set_defaults(func=cmd_ocr)
