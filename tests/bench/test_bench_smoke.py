"""Smoke test of the benchmark scripts' code paths on two generated images (never on ../shared).

The real ONNX models run; only the evaluation data, the scorer and the peer (all in ../shared) are absent,
which is exactly the situation the scripts must handle on a fresh clone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import accuracy  # noqa: E402
import common  # noqa: E402
import finetune  # noqa: E402
import fit_verifier  # noqa: E402
import gpu  # noqa: E402
import throughput  # noqa: E402

from wildocr.train.data import TrainDataError  # noqa: E402


@pytest.fixture
def no_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the scripts at a shared/ folder that does not exist, whatever the machine has."""
    monkeypatch.setenv("WILDOCR_SHARED", str(tmp_path / "absent"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench-data")
    common.write_synthetic_set(root, 2)
    return root


def test_ground_truth_and_text_rules(tmp_path: Path) -> None:
    gt = tmp_path / "gt_img_9.txt"
    gt.write_text("\ufeff1,2,30,2,30,20,1,20,Hello, world\n5,5,9,5,9,9,5,9,###\n\n", encoding="utf-8")
    words = common.read_icdar_gt(gt)
    assert [w.text for w in words] == ["Hello, world", "###"]
    assert words[0].quad.shape == (4, 2) and words[0].quad[2].tolist() == [30.0, 20.0]
    assert [w.ignore for w in words] == [False, True]
    gt.write_text("1,2,30,2,30,20,1,20,ok\nbroken line\n", encoding="utf-8")
    with pytest.raises(TrainDataError, match=r"gt_img_9.txt:2"):
        common.read_icdar_gt(gt)
    assert common.clean_text('("Exit!")') == "EXIT"
    assert (
        common.in_dictionary("Theatre's")
        and not common.in_dictionary("I2R")
        and not common.in_dictionary("ab")
    )
    names = [p.name for p in common.list_images(_images(tmp_path, ["img_10.jpg", "img_2.jpg", "img_1.jpg"]))]
    assert names == ["img_1.jpg", "img_2.jpg", "img_10.jpg"]


def _images(folder: Path, names: list[str]) -> Path:
    for name in names:
        (folder / name).write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_generated_docs_section_keeps_prose(tmp_path: Path) -> None:
    doc = tmp_path / "perf.md"
    common.replace_generated_section(doc, "throughput", "x.py", "TABLE ONE", "Performance")
    text = doc.read_text()
    assert text.startswith("# Performance") and "TABLE ONE" in text
    doc.write_text("# Performance\n\nLead's prose above.\n\n" + text.split("\n\n", 1)[1] + "\nProse below.\n")
    common.replace_generated_section(doc, "throughput", "x.py", "TABLE TWO", "Performance")
    common.replace_generated_section(doc, "memory-soak", "x.py", "SOAK", "Performance")
    text = doc.read_text()
    assert "TABLE ONE" not in text and "TABLE TWO" in text and "SOAK" in text
    assert "Lead's prose above." in text and "Prose below." in text
    assert text.index("TABLE TWO") < text.index("Prose below.") < text.index("SOAK")


def test_every_named_setting_is_a_valid_engine_config() -> None:
    from wildocr.engine import EngineConfig

    def value(config: EngineConfig, key: str) -> object:
        if key.startswith("det_"):
            return getattr(config.detector, key[4:])
        if key.startswith("rec_"):
            return getattr(config.recognizer, key[4:])
        return getattr(config, key)

    for name, options in accuracy.SETTINGS.items():
        config = EngineConfig().with_options(**options)  # a renamed engine field raises here
        assert {k: value(config, k) for k in options} == options, name
    assert accuracy.parse_option("big:det_limit_side=1280,device=cpu") == (
        "big",
        {"det_limit_side": 1280, "device": "cpu"},
    )


def test_accuracy_skips_without_data(no_shared: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.main([]) == 0
    assert "SKIP accuracy" in capsys.readouterr().err


def test_finetune_skips_without_data(no_shared: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert finetune.main([]) == 0
    assert "SKIP finetune" in capsys.readouterr().err


def test_finetune_trains_on_the_tune_half_only(tmp_path: Path) -> None:
    data = tmp_path / "ic15"
    for sub in ("images", "gts"):
        (data / sub).mkdir(parents=True)
    for n in (1, 500, 501, 1000):
        (data / "images" / f"img_{n}.jpg").write_bytes(b"jpeg")
        (data / "gts" / f"gt_img_{n}.txt").write_text("1,1,9,1,9,9,1,9,A\n")
    tune = finetune.tune_half(data, tmp_path / "work")
    assert sorted(p.name for p in (tune / "images").iterdir()) == ["img_1.jpg", "img_500.jpg"]
    assert sorted(p.name for p in (tune / "gts").iterdir()) == ["gt_img_1.txt", "gt_img_500.txt"]


def test_finetune_recipe_gets_its_tune_half_from_the_bench(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/finetune_recipe.sh trains on the folder `--tune-half-only` prints, and nothing else is done."""
    data = tmp_path / "ic15"
    for sub in ("images", "gts"):
        (data / sub).mkdir(parents=True)
    for n in (7, 700):
        (data / "images" / f"img_{n}.jpg").write_bytes(b"jpeg")
        (data / "gts" / f"gt_img_{n}.txt").write_text("1,1,9,1,9,9,1,9,A\n")
    work = tmp_path / "work"
    assert finetune.main(["--data", str(data), "--work", str(work), "--tune-half-only"]) == 0
    printed = Path(capsys.readouterr().out.strip())
    assert printed == work / "tune-half" and [p.name for p in (printed / "images").iterdir()] == ["img_7.jpg"]
    assert sorted(p.name for p in work.iterdir()) == ["tune-half"]
    assert "--tune-half-only" in (Path(finetune.__file__).parent / "finetune_recipe.sh").read_text()


def test_finetune_scores_a_model_folder_beside_the_default_with_its_guards(
    no_shared: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--model-dir` scores the check half, the generated photos and the GT boxes for both weights in one
    invocation; `--option` reaches the tuned run only. (No ../shared: no scorer, peer or crops.)"""
    from tests.helpers import model_folder

    data = tmp_path / "ic15"
    common.write_synthetic_set(data, 1)
    (data / "images" / "img_1.jpg").rename(data / "images" / "img_501.jpg")  # a check-half photo
    (data / "gts" / "gt_img_1.txt").rename(data / "gts" / "gt_img_501.txt")
    folder = model_folder(tmp_path / "folder", det=False, rec=True)
    report, doc = tmp_path / "finetune.json", tmp_path / "accuracy.md"
    monkeypatch.setattr(finetune, "DOC", doc)
    rc = finetune.main(
        ["--data", str(data), "--model-dir", str(folder), "--option", "det_thresh=0.35", "--generated", "2",
         "--work", str(tmp_path / "work"), "--json", str(report), "--write-docs"]
    )  # fmt: skip
    assert rc == 0
    payload = json.loads(report.read_text())
    default, tuned = payload["default"], payload["tuned"]
    assert default["options"] == {} and tuned["options"] == {"det_thresh": 0.35}
    assert "peer" not in payload and default["crops"] == {}
    assert default["rec_only"] == tuned["rec_only"] == {"check": 1.0}  # byte copy of the stock recognizer
    assert len(list((tmp_path / "work" / "generated" / "gts").iterdir())) == 2
    assert 0.0 < default["generated"]["rec_only"] == tuned["generated"]["rec_only"]
    block = doc.read_text()
    assert "<!-- bench:begin finetune" in block and "Command: `python bench/finetune.py --data" in block
    assert "Model folder `" in block and "| tuned |" in block


def test_accuracy_runs_reads_gt_boxes_and_dumps(no_shared: None, dataset: Path, tmp_path: Path) -> None:
    out, dump, report = tmp_path / "out", tmp_path / "dump", tmp_path / "acc.json"
    rc = accuracy.main(
        ["--data", str(dataset), "--settings", "default", "--option", "small:det_limit_side=480",
         "--out", str(out), "--dump", str(dump), "--dump-count", "2", "--json", str(report)]
    )  # fmt: skip
    assert rc == 0
    payload = json.loads(report.read_text())
    assert [s["name"] for s in payload["settings"]] == ["default", "small"]
    assert payload["settings"][1]["options"] == {"det_limit_side": 480}
    default = payload["settings"][0]
    assert default["images_per_s"] > 0 and not default["scores"] and payload["peer"] is None
    assert payload["groups"] == {"tune": ["img_1.jpg", "img_2.jpg"]}  # img_1..img_500: the tune half
    lines = [json.loads(line) for line in (out / "default.jsonl").read_text().splitlines()]
    assert [line["image"] for line in lines] == ["img_1.jpg", "img_2.jpg"]
    read = {common.clean_text(w["text"]) for line in lines for w in line["words"]}
    assert {"HELLO", "WORLD"} & read, read
    rec = default["rec_only"]["tune"]
    assert rec["words"] == 4 and rec["dict_words"] == 4  # two words an image, the '###' box skipped
    assert rec["accuracy"] >= 0.75, rec["errors"]
    overlays = sorted(p.name for p in dump.glob("*.png"))
    assert overlays == ["default_img_1.png", "default_img_2.png"]


@pytest.mark.slow  # a benchmark run: 11 s measured with the suite on 2 shared cores
def test_throughput_and_memory_soak(no_shared: None, dataset: Path, tmp_path: Path) -> None:
    report, plot = tmp_path / "tp.json", tmp_path / "tp.png"
    rc = throughput.main(
        ["--stages", "--images", str(dataset / "images"), "--limit", "2", "--devices", "cpu",
         "--batch-sizes", "1", "--sweep-crops", "6", "--json", str(report), "--plot", str(plot)]
    )  # fmt: skip
    assert rc == 0
    results = json.loads(report.read_text())
    cpu = results["devices"][0]
    assert cpu["device"] == "cpu" and cpu["provider"] == "CPUExecutionProvider"
    assert cpu["end_to_end"]["images"] == 2 and cpu["end_to_end"]["images_per_s"] > 0
    assert cpu["staged"]["crops"] >= 4 and set(cpu["staged"]["stages"]) == set(throughput.STAGES)
    assert cpu["staged"]["stages"]["detect"]["cpu_ms_per_image"] > 0  # CPU per stage, not only wall
    assert [r["batch_size"] for r in cpu["batch_sweep"]] == [1, cpu["default_batch_size"]]
    assert all(r["crops"] == 6 for r in cpu["batch_sweep"])
    assert cpu["batched_vs_per_box"] > 0 and cpu["peak_rss_mb"] > 0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = throughput.docs_body(["bench/throughput.py"], results, None)
    assert "| cpu |" in body and "recognition crops/s" in body

    soak_report = tmp_path / "soak.json"
    rc = throughput.main(
        ["--images", str(dataset / "images"), "--devices", "cpu", "--memory-soak", "5", "--soak-every", "2",
         "--chunk", "2", "--json", str(soak_report)]
    )  # fmt: skip
    assert rc == 0
    soak = json.loads(soak_report.read_text())["memory_soak"]
    assert [p["images"] for p in soak["points"]] == [0, 2, 4, 5]
    assert soak["rss_end_mb"] > 0 and isinstance(soak["flat_within_10pct"], bool)


def test_fixed_split_tune_and_check_halves() -> None:
    names = [Path(f"img_{n}.jpg") for n in (1, 2, 500, 501, 777, 1000, 1001)]
    both = accuracy.split_images(names, "all")
    assert [p.name for p in both["tune"]] == ["img_1.jpg", "img_2.jpg", "img_500.jpg"]
    assert [p.name for p in both["check"]] == ["img_501.jpg", "img_777.jpg", "img_1000.jpg"]
    assert list(accuracy.split_images(names, "check", limit=2)) == ["check"]
    assert [p.name for p in accuracy.split_images(names, "check", limit=2)["check"]] == [
        "img_501.jpg",
        "img_777.jpg",
    ]
    other = [Path("street.jpg"), Path("shop.png")]  # another data set: one group
    assert accuracy.split_images(other, "all") == {"all": other}
    assert accuracy.split_images(other, "check") == {}


def test_whole_process_table(no_shared: None, dataset: Path, tmp_path: Path, capsys) -> None:
    """`wildocr ocr` as a user runs it, measured from outside (no peer without ../shared)."""
    report = tmp_path / "wp.json"
    rc = throughput.main(
        ["--images", str(dataset / "images"), "--limit", "2", "--pairs", "1", "--json", str(report)]
    )
    assert rc == 0
    result = json.loads(report.read_text())["whole_process"]
    ours = result["medians"]["wildocr"]
    assert result["images"] == 2 and "stock" not in result["medians"]
    assert ours["words"] >= 4 and ours["cpu_s"] > 0 and ours["peak_rss_mb"] > 50
    assert "| wildocr |" in capsys.readouterr().out
    machine = result["machine"]  # the environment is recorded with every figure
    assert machine["cpu_info"]["model_name"] and isinstance(machine["cpu_info"]["flags"], list)
    assert {"onnxruntime", "numpy", "rapidocr"} <= set(machine["libraries"])
    assert machine["engine_threads"]["workers"] >= 1 and "python" in machine


def test_header_names_processor_threads_and_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    line = next(h for h in common.header_lines(["bench/x.py"]) if h.startswith("Machine:"))
    assert "family" in line and "OMP_NUM_THREADS=3" in line and "numpy" in line and "det_threads" in line


def test_variant_parsing_splits_env_from_arguments() -> None:
    label, args, env = throughput.parse_variant("ort=--backend onnxruntime OMP_NUM_THREADS=1 --option x=1")
    assert (label, args, env) == (
        "ort",
        ["--backend", "onnxruntime", "--option", "x=1"],
        {"OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow  # the CPU dry run at batch 32/128/256: 283 s measured with the suite on 2 shared cores
def test_gpu_bench_without_a_gpu_says_so_and_exits_0(no_shared: None, tmp_path: Path, capsys) -> None:
    if gpu.gpu_present()[0]:
        pytest.skip("a GPU is present: the real run is `make bench-gpu`")
    report = tmp_path / "gpu.json"
    rc = gpu.main(["--photos", "2", "--photos-dir", str(tmp_path / "photos"), "--json", str(report)])
    assert rc == 0
    assert "NO GPU PRESENT" in capsys.readouterr().out
    result = json.loads(report.read_text())
    assert result["gpu"] is False and result["dry_run_cpu"]["end_to_end"]["photos"] == 2
    assert [r["batch_size"] for r in result["dry_run_cpu"]["recognition"]] == list(gpu.BATCHES)
    assert len(common.list_images(tmp_path / "photos")) == 2  # generated: no ../shared here


def test_fit_verifier_runs_on_a_set(dataset: Path, capsys) -> None:
    """(The fit itself is tests/train/test_verifier.py's.)"""
    assert fit_verifier.main(["--data", str(dataset)]) == 0
    out = capsys.readouterr().out
    assert "TEXT_MODEL = LogisticModel(" in out and "READING_MODEL = LogisticModel(" in out
    assert "# 2 tune photos" in out


@pytest.mark.slow  # the detector run once at 736x1312 with no graph optimisation
def test_flops_counts_the_networks_macs(tmp_path: Path) -> None:
    """MACs from the real ONNX graphs: the detector's grow with its input, the recogniser's with the crop."""
    import flops

    small = flops.count_macs(_model("DET_MODEL"), (1, 3, 64, 128))
    large = flops.count_macs(_model("DET_MODEL"), (1, 3, 128, 256))
    assert small["Conv"] > 0 and 3.5 < sum(large.values()) / sum(small.values()) < 4.5
    rec = flops.count_macs(_model("REC_MODEL"), (1, 3, 48, 160))
    assert rec["Conv"] > 0 and rec.get("MatMul", 0) > 0
    assert flops.peak_gflops(2, 2500.0, ["avx512_vnni"]) == {"fp32": 160.0, "int8": 640.0}
    report = tmp_path / "flops.json"
    assert flops.main(
        ["--width", "320", "--height", "180", "--crops", "1", "--profile", "1", "--json", str(report)]
    ) == 0  # fmt: skip
    result = json.loads(report.read_text())
    assert result["detector_input"] == [736, 1312] and result["gmacs_per_photo"]["detector"] > 1
    profile = result["detector_profile"]  # the int8 file the engine runs: its convolutions are int8 kernels
    assert profile["ms_by_op"]["QLinearConv"] > 0 and "Conv" not in profile["ms_by_op"]
    assert "| QLinearConv |" in flops.docs_body(["bench/flops.py"], result)


def _model(name: str) -> Path:
    from wildocr.engine import models

    return models.model_path(getattr(models, name))
