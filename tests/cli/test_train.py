"""`wildocr train det|rec` (`cli/train.py`): arguments, clear errors, and a model folder written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from wildocr.cli import main


def test_bad_training_data_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "gts").mkdir()
    (tmp_path / "data" / "images" / "a.jpg").write_bytes(b"x")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "det", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "wildocr train:" in err and "a.jpg: no ground truth" in err
    assert not (tmp_path / "out").exists()


def test_broken_base_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "labels.tsv").write_text("a.png\tA\n")
    (tmp_path / "base").mkdir()
    args = ["train", "rec", "--data", str(tmp_path / "words"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--base", str(tmp_path / "base")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--base: model folder" in err and "no manifest.json" in err


def test_missing_train_extra_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "rec", "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "install the 'train' extra" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-minutes", "0"),
        ("--device", "tpu"),
        ("--epochs", "0"),
        ("--val-fraction", "1.5"),
        ("--blend-base", "1"),
        ("--blend-base", "-0.5"),
        ("--ema", "1"),
        ("--ema", "-0.1"),
        ("--select-by", "hmean"),  # a detector's score: rec has no photos read whole
        ("--limit-side", "640"),  # the detector's input size: rec crops have their own
        ("--limit-side", "0"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before any data is read (the folder is empty), with the setting named."""
    pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "rec", "--data", str(tmp_path), "--out", str(tmp_path / "o"), flag, value])
    assert exit_info.value.code == 2
    name = flag.lstrip("-")
    assert name in capsys.readouterr().err.replace("_", "-")


@pytest.mark.slow
def test_train_rec_writes_a_model_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("torch", reason="the 'train' extra (PyTorch) is not installed")
    import cv2

    from wildocr.engine.crop import crop_quad
    from wildocr.samples import render_sample

    sample = render_sample(9, 0)
    (tmp_path / "words" / "crops").mkdir(parents=True)
    labels = []
    for i, word in enumerate(sample.words[:6]):
        cv2.imwrite(
            str(tmp_path / "words" / "crops" / f"{i}.png"), crop_quad(sample.rgb[:, :, ::-1], word["poly"])
        )
        labels.append(f"{i}.png\t{word['text']}")
    (tmp_path / "words" / "labels.tsv").write_text("\n".join(labels) + "\n")
    out = tmp_path / "model"
    args = ["train", "rec", "--data", str(tmp_path / "words"), "--out", str(out), "--epochs", "1"]
    assert main([*args, "--steps-per-epoch", "1", "--device", "cpu", "--name", "tiny"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["out"] == str(out) and summary["steps"] == 1
    assert "epoch 1: train loss" in caplog.text  # progress shows without --verbose
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tiny" and set(manifest["models"]) == {"rec"}
    assert manifest["training"]["settings"]["rec"]["max_steps"] == 1


def test_verifier_needs_enough_labelled_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`wildocr train verifier` reads with the folder --out; two photos are too few to fit it on."""
    pytest.importorskip("shapely", reason="the 'train' extra (shapely) is not installed")
    from wildocr.samples import generate
    from wildocr.train.folder import FORMAT

    generate(str(tmp_path / "photos"), count=2, seed=1)
    folder = tmp_path / "stock"
    folder.mkdir()
    manifest = json.dumps({"format": FORMAT, "name": "stock", "models": {}})
    (folder / "manifest.json").write_text(manifest)
    args = [
        "train",
        "verifier",
        "--data",
        str(tmp_path / "photos" / "ground_truth.jsonl"),
        "--out",
        str(folder),
    ]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--base", str(folder)])
    assert exit_info.value.code == 2 and "--base and --val do not apply" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert (
        "labelled words were read from the photos; the verifier needs 100 or more" in capsys.readouterr().err
    )
    assert (folder / "manifest.json").read_text() == manifest and not (folder / "verifier.json").exists()
