"""What every `wildocr` command parses the same way (`cli/args.py`): engine flags and storage options on
`wildocr ocr` and `wildocr run` alike, a bad one stopping the command before anything is read or written;
and bad input paths, an error line each."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from include.sample_data import generate
from wildocr.cli import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photo")
    generate(str(folder), count=1, seed=11)
    return next(folder.glob("sample_*"))


def _links(folder: Path, photo: Path) -> list[Path]:
    folder.mkdir()
    os.symlink("loop.jpg", folder / "loop.jpg")  # a link to itself: ELOOP on open
    os.symlink("missing.jpg", folder / "broken.jpg")
    shutil.copy(photo, folder / "good.jpg")
    return [folder / "loop.jpg", folder / "broken.jpg", folder / "good.jpg"]


def _lines(path: Path) -> dict[str, dict]:
    return {r["image"]: r for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


@pytest.mark.parametrize("as_folder", [False, True], ids=["files", "folder"])
def test_ocr_gives_an_error_line_for_each_bad_path_and_reads_the_good_one(tmp_path, photo, as_folder, capsys):
    paths = _links(tmp_path / "in", photo)
    out = tmp_path / "out.jsonl"
    inputs = [str(tmp_path / "in")] if as_folder else [str(p) for p in paths]
    assert main(["ocr", *inputs, "--out", str(out)]) == 0
    lines = _lines(out)
    assert set(lines) == {"loop.jpg", "broken.jpg", "good.jpg"}
    assert "symbolic link" in lines["loop.jpg"]["error"] and lines["loop.jpg"]["words"] == []
    assert lines["broken.jpg"]["error"] and lines["broken.jpg"]["words"] == []
    assert "error" not in lines["good.jpg"] and lines["good.jpg"]["words"]
    assert "3 images (2 errors)" in capsys.readouterr().err


def test_ocr_and_run_take_the_same_engine_and_storage_options(tmp_path, photo):
    (tmp_path / "in").mkdir()
    shutil.copy(photo, tmp_path / "in" / "good.jpg")
    options_file = tmp_path / "storage.json"
    options_file.write_text("{}")
    out = tmp_path / "ocr.jsonl"
    common = [
        "--option",
        "verify_words=false",
        "--backend",
        "onnxruntime",
        "--storage-options",
        f"@{options_file}",
    ]
    assert main(["ocr", str(tmp_path / "in"), "--out", str(out), *common]) == 0
    floor_only = _lines(out)["good.jpg"]["words"]
    assert main(["ocr", str(tmp_path / "in"), "--out", str(out)]) == 0
    verified = _lines(out)["good.jpg"]["words"]
    assert len(floor_only) >= len(verified) > 0  # the verifier only ever drops words

    root = tmp_path / "tables"
    argv = ["run", str(tmp_path / "in"), "--output", str(root), "--dt", "2026-03-01", *common]
    assert main(argv) == 0
    import duckdb

    words = (
        duckdb.connect()
        .execute(f"SELECT count(*) FROM read_parquet('{root}/words/dt=2026-03-01/*.parquet')")
        .fetchone()
    )
    assert words == (len(floor_only),)


def _refused_with_nothing_written(tmp_path, photo, command: str, argv: list[str]) -> None:
    """`wildocr ocr` / `run` with `argv` exits 2 and leaves neither its JSON lines nor its tables."""
    root = tmp_path / "tables"
    target = (
        ["--out", str(tmp_path / "x.jsonl")]
        if command == "ocr"
        else ["--output", str(root), "--dt", "2026-03-01"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main([command, str(photo), *target, *argv])
    assert exit_info.value.code == 2
    assert not root.exists() and not (tmp_path / "x.jsonl").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--option", "verify_word=false"], "unknown engine option 'verify_word'"),
        (["--option", "det_limit_side=big"], "expected int"),
        (["--storage-options", "@/nonexistent/s3.json"], "cannot read storage options"),
        (["--storage-options", "[1]"], "must be a JSON object"),
    ],
)
@pytest.mark.parametrize("command", ["ocr", "run"])
def test_a_bad_option_stops_before_anything_is_read_or_written(
    tmp_path, photo, command, argv, message, capsys
):
    _refused_with_nothing_written(tmp_path, photo, command, argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("broken", ["no manifest", "sha256 mismatch"])
@pytest.mark.parametrize("command", ["ocr", "run"])
def test_a_broken_model_folder_stops_before_anything_is_read_or_written(
    tmp_path, photo, command, broken, capsys
):
    from tests.helpers import model_folder

    folder = model_folder(tmp_path / "ft")
    if broken == "no manifest":
        (folder / "manifest.json").unlink()
    else:
        with open(folder / "det.onnx", "ab") as fh:
            fh.write(b"\0")
    _refused_with_nothing_written(tmp_path, photo, command, ["--model-dir", str(folder)])
    message = "no manifest.json in it" if broken == "no manifest" else "det.onnx has SHA-256"
    assert f"wildocr {command}: model folder {folder}: {message}" in capsys.readouterr().err


def test_model_dir_is_not_an_option_key(tmp_path, photo, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["ocr", str(photo), "--option", f"model_dir={tmp_path}"])
    assert exit_info.value.code == 2
    assert "model_dir is not an engine option: give the folder with --model-dir" in capsys.readouterr().err
