"""The `wildocr` command: `ocr` reads images into JSON lines; `run` and `shard ...` write the tables;
`train det|rec` fine-tunes the models into a model folder (extra `train`).

Every command that reads images takes the same engine flags (`--device`, `--backend`, `--option`) and
every command the same `--storage-options` (JSON or @file), parsed by `wildocr.pipeline.options`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from wildocr.cli import ocr, tables, train
from wildocr.cli.args import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wildocr", description="OCR in the wild: photos in, words out.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO) on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    ocr.register(sub)
    tables.register(sub)
    train.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UsageError as exc:
        parser.exit(2, f"wildocr {args.command}: {exc}\n")


if __name__ == "__main__":
    sys.exit(main())
