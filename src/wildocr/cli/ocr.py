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
    """Files stay as given (size unknown: the loader asks, and says why one cannot be read) unless their
    name is not UTF-8 (then their `file://` URL, percent-encoded); folders and
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
        elif objectstore.valid_text(item) == item:
            objects.append(ObjectInfo(item, -1, ""))
        else:  # a path that is not UTF-8 cannot be a JSON string as it is: its file:// URL can
            objects.append(ObjectInfo(objectstore.canonical(item, storage_options), -1, ""))
    return objects, unreadable


def overlay_name(uri: str, page: int = 1) -> str:
    """The overlay file of an input: its name, made safe, plus a hash of its full URI, so that inputs of
    the same name in different folders never share an overlay, and `.overlay.png` marks it as one. Page 2
    and later of a document add `.pN` (page 1, like a photo, has none)."""
    stem = os.path.splitext(uri.rsplit("/", 1)[-1])[0]
    safe = re.sub(r"[^\w.-]+", "_", stem)[:80] or "image"
    suffix = f".p{page}" if page > 1 else ""
    return f"{safe}.{hashlib.sha256(uri.encode()).hexdigest()[:10]}{suffix}.overlay.png"


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
    cli_args.engine_options(args)  # bad options and a broken model folder stop before any listing
    cli_args.model_dir(args)
    objects, unreadable = expand_inputs(args.inputs, storage_options)
    if not objects:
        print("no images found", file=sys.stderr)
        return 1
    if args.render and (problem := render_dir_problem(args.render, args.inputs, objects, storage_options)):
        print(f"refused: {problem}", file=sys.stderr)
        return 2
    engine = cli_args.engine(args)  # ONNX Runtime: loaded once the arguments are known to be good
    if args.render:
        os.makedirs(args.render, exist_ok=True)
    out = open(args.out, "w", encoding="utf-8") if args.out != "-" else sys.stdout  # noqa: SIM115
    errors = pages = 0
    start = time.perf_counter()
    total = len(objects)
    try:
        progress = _progress(total)
        results = outcome.read_objects(engine, objects, storage_options, keep_pixels=bool(args.render))
        for result, image in results:
            record = outcome.to_json(result)
            pages += 1
            if result.error is not None:
                errors += 1
                log.warning("%s page %d: %s", result.obj.uri, result.page, result.error)
            if args.render and image is not None:
                record["overlay"] = os.path.join(args.render, overlay_name(result.obj.uri, result.page))
                _, png = cv2.imencode(".png", render_overlay(image, [] if result.error else result.words))
                with open(record["overlay"], "wb") as fh:
                    fh.write(png.tobytes())
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
            if result.page == 1:
                progress.update(1)
        progress.close()
    finally:
        if out is not sys.stdout:
            out.close()
    seconds = time.perf_counter() - start
    folders = f", {unreadable} folder(s) that could not be listed" if unreadable else ""
    in_pages = f", {pages} pages" if pages != total else ""
    print(
        f"{total} images ({errors} errors{in_pages}{folders}) in {seconds:.1f} s, "
        f"{total / seconds:.2f} images/s on {engine.provider}",
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
        help="write a PNG overlay per image into DIR (NAME.<hash>.overlay.png, page N>1 of a document "
        "NAME.<hash>.pN.overlay.png; not a folder being read)",
    )
    options.add_engine_arguments(p)
    options.add_storage_arguments(p)
    p.set_defaults(func=cmd_ocr)
