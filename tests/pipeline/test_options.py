"""Engine and storage options as users give them (`wildocr.pipeline.options`): one parser for every entry."""

from __future__ import annotations

import json

import pytest

from wildocr.pipeline import options


def test_engine_options_are_checked_against_the_engine_config():
    checked = options.validate_engine_options(
        {"verify_words": False, "det_limit_side": 960, "min_confidence": 1, "rec_width_buckets": [160, 320]}
    )
    assert checked == {
        "verify_words": False,
        "det_limit_side": 960,
        "min_confidence": 1.0,
        "rec_width_buckets": (160, 320),
    }
    config = options.engine_config(checked)
    assert config.verify_words is False and config.detector.limit_side == 960
    assert config.recognizer.width_buckets == (160, 320)
    assert options.validate_engine_options(None) == {}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"verify_word": False}, "unknown engine option 'verify_word'"),
        ({"det_limit": 960}, "unknown engine option 'det_limit'"),
        ({"verify_words": "false"}, "expected bool"),
        ({"det_limit_side": 9.5}, "expected int"),
        ({"det_limit_side": True}, "expected int"),
        ({"rec_width_buckets": [160, "x"]}, "rec_width_buckets"),
        (["verify_words"], "must be an object"),
    ],
)
def test_a_bad_engine_option_is_a_clear_error(given, message):
    with pytest.raises(ValueError, match=message):
        options.validate_engine_options(given)


def test_every_flat_option_of_the_config_is_known():
    known = options.engine_option_types()
    for name in ("verify_words", "device", "backend", "det_thresh", "rec_batch_size", "workers"):
        assert name in known
    assert "detector" not in known and "recognizer" not in known


def test_storage_options_come_as_json_or_from_a_file(tmp_path):
    assert options.parse_storage_options(None) is None
    assert options.parse_storage_options('{"anon": true}') == {"anon": True}
    secret = tmp_path / "s3.json"
    secret.write_text(json.dumps({"key": "k", "secret": "s"}))
    assert options.parse_storage_options(f"@{secret}") == {"key": "k", "secret": "s"}
    with pytest.raises(ValueError, match="not JSON"):
        options.parse_storage_options("{anon: true}")
    with pytest.raises(ValueError, match="JSON object"):
        options.parse_storage_options("[1, 2]")
    with pytest.raises(ValueError, match="cannot read storage options"):
        options.parse_storage_options(f"@{tmp_path / 'missing.json'}")


def test_the_command_line_gives_the_same_options():
    import argparse

    parser = argparse.ArgumentParser()
    options.add_engine_arguments(parser)
    args = parser.parse_args(
        ["--backend", "onnxruntime", "--option", "verify_words=false", "--option", "rec_width_buckets=[160]"]
    )
    assert options.engine_options_from(args) == {
        "verify_words": False,
        "rec_width_buckets": (160,),
        "backend": "onnxruntime",
    }
    with pytest.raises(SystemExit):
        parser.parse_args(["--option", "no-equals-sign"])


def test_the_model_folder_is_a_flag_of_its_own_checked_in_one_place(tmp_path):
    """`--model-dir`, never `--option model_dir=` (one way); a broken folder is a ValueError before any
    engine exists, a good one comes back as an absolute path."""
    import argparse

    from tests.helpers import model_folder

    assert "model_dir" not in options.engine_option_types()
    with pytest.raises(
        ValueError, match="model_dir is not an engine option: give the folder with --model-dir"
    ):
        options.validate_engine_options({"model_dir": str(tmp_path)})
    parser = argparse.ArgumentParser()
    options.add_engine_arguments(parser)
    assert options.model_dir_from(parser.parse_args([])) is None
    with pytest.raises(ValueError, match=r"no manifest\.json in it"):
        options.model_dir_from(parser.parse_args(["--model-dir", str(tmp_path)]))
    folder = model_folder(tmp_path / "ft")
    relative = parser.parse_args(["--model-dir", "ft"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert options.model_dir_from(relative) == str(folder)
    assert options.validate_model_dir("") is None and options.validate_model_dir(None) is None
    assert options.engine_config(model_dir=str(folder)).model_dir == str(folder)


def test_the_shared_engine_is_one_per_model_folder(tmp_path):
    from tests.helpers import model_folder

    folder = str(model_folder(tmp_path / "ft", det=False, rec=True))
    tuned = options.shared_engine({"device": "cpu"}, model_dir=folder)
    assert options.shared_engine({"device": "cpu"}, model_dir=folder) is tuned
    stock = options.shared_engine({"device": "cpu"})
    assert stock is not tuned and stock.config.model_dir is None
    assert tuned.model_info["rec_model"] == "ft/rec.onnx"
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        options.shared_engine({"device": "cpu"}, model_dir=str(tmp_path))
