"""Multiply-accumulates per photo, counted from the ONNX graphs, against the cores' peak.

    python bench/flops.py [--width 1280 --height 720] [--limit-side PX] [--crops 5.5] [--crop-width 320]
                          [--json OUT] [--profile RUNS] [--write-docs]

Counts the MACs of every Conv, ConvTranspose, MatMul and Gemm of the three PP-OCR networks at the input
sizes the engine uses (the detector at `resize_for_detection` of the photo, at the stock input size or
`--limit-side`, the recogniser and the 0/180°
classifier per crop at one width bucket), from the shapes ONNX shape inference gives. Element-wise ops,
pooling and resizes are left out (memory-bound, a few % of the arithmetic). The peak is an assumption
written beside the result: cores × FMA lanes × 2 FLOP × the clock /proc/cpuinfo reports.
`--profile RUNS` also runs the detector the engine runs on CPU (the cached int8 file) RUNS times on one
input of that size with ONNX Runtime's profiler, at the engine's detection threads, and gives each op
type's share of the kernel time: where the time goes that the MAC count does not see.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, cpu_description, header_lines, markdown_table, replace_generated_section

MAC_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def count_macs(model_path: Path, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs per op type of `model_path` run on one input of `input_shape`.

    The shapes come from running the network once on zeros with every MAC op's input and output exposed
    as graph outputs (ONNX shape inference loses them behind the recogniser's dynamic reshapes).
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(model_path))
    graph = model.graph
    weights = {i.name: list(numpy_helper.to_array(i).shape) for i in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in MAC_OPS]
    wanted = {name for n in nodes for name in (n.input[0], n.input[1], n.output[0]) if name not in weights}
    known = {o.name for o in graph.output} | {i.name for i in graph.input}
    graph.output.extend(onnx.ValueInfoProto(name=name) for name in sorted(wanted - known))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the nodes as written
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feed = {graph.input[0].name: np.zeros(input_shape, np.float32)}
    shapes = {n: list(v.shape) for n, v in zip(names, session.run(names, feed), strict=True)}
    shapes[graph.input[0].name] = list(input_shape)
    shapes.update(weights)
    macs: dict[str, int] = {}
    for node in nodes:
        inp, weight, out = (shapes[name] for name in (node.input[0], node.input[1], node.output[0]))
        if node.op_type == "Conv":  # out N*Cout*H*W, each (Cin/group)*kh*kw
            n = int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":  # every input pixel scatters (Cout/group)*kh*kw
            n = int(np.prod(inp)) * int(np.prod(weight[1:]))
        else:  # MatMul / Gemm: each output element is a dot product over the shared axis
            n = int(np.prod(out)) * inp[-1]
        macs[node.op_type] = macs.get(node.op_type, 0) + n
    return macs


def profile_ops(model_path: Path, input_shape: tuple[int, ...], runs: int, threads: int) -> dict[str, float]:
    """Kernel milliseconds per run by op type (ONNX Runtime's profiler; one warm-up run not counted)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as the engine runs it
    so.intra_op_num_threads = threads
    so.enable_profiling = True
    so.profile_file_prefix = str(Path(os.environ.get("TMPDIR", "/tmp")) / "wildocr-flops-profile")
    session = ort.InferenceSession(str(model_path), so, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.random.default_rng(0).random(input_shape, np.float32)}
    session.run(None, feed)  # warm-up (its events are dropped below: only the last `runs` are kept)
    for _ in range(runs):
        session.run(None, feed)
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    kernels = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(kernels) // (runs + 1)
    ms: dict[str, float] = {}
    for event in kernels[per_run:]:
        op = event["args"]["op_name"]
        ms[op] = ms.get(op, 0.0) + event["dur"] / 1000.0 / runs
    return dict(sorted(((k, round(v, 2)) for k, v in ms.items()), key=lambda kv: -kv[1]))


def peak_gflops(cores: int, mhz: float, flags: list[str]) -> dict[str, float]:
    """Assumed fp32 peak: 2 FMA pipes of 256 bits per core (16 lanes; Zen 3 and Zen 4 alike, Zen 4 runs
    AVX-512 as two 256-bit halves), 2 FLOP per FMA. int8 with VNNI: 4x the fp32 lanes (vpdpbusd)."""
    fp32 = cores * 16 * 2 * mhz / 1000.0
    return {"fp32": round(fp32, 1), "int8": round(fp32 * (4 if "avx512_vnni" in flags else 2), 1)}


def main(argv: list[str] | None = None) -> int:
    from wildocr.engine import models
    from wildocr.engine.detection import STOCK_LIMIT_SIDE, DetectorConfig, resize_for_detection
    from wildocr.engine.recognition import REC_HEIGHT

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument(
        "--limit-side", type=int, default=0, help="detector input short side (default: the stock detector's)"
    )
    ap.add_argument("--crops", type=float, default=5.5, help="crops per photo (bench/throughput.py --stages)")
    ap.add_argument("--crop-width", type=int, default=320, help="recogniser bucket width of a crop")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--profile", type=int, default=0, metavar="RUNS", help="profile the int8 detector RUNS times"
    )
    ap.add_argument("--write-docs", action="store_true", help="rewrite the flops block of docs/benchmarks.md")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)

    limit_side = args.limit_side or STOCK_LIMIT_SIDE
    h, w = resize_for_detection(args.height, args.width, DetectorConfig(limit_side=limit_side))
    det = count_macs(models.model_path(models.DET_MODEL), (1, 3, h, w))
    rec = count_macs(models.model_path(models.REC_MODEL), (1, 3, REC_HEIGHT, args.crop_width))
    cls = count_macs(models.model_path(models.CLS_MODEL), (1, 3, 48, 192))
    per_photo = {
        "detector": sum(det.values()),
        "recognizer": round(sum(rec.values()) * args.crops),
        "classifier": round(sum(cls.values()) * args.crops),
    }
    cpu = cpu_description()
    cores = os.cpu_count() or 1
    peak = peak_gflops(cores, float(cpu["mhz"] or 0), cpu["flags"])
    result = {
        "photo": [args.width, args.height],
        "detector_input": [h, w],
        "crops_per_photo": args.crops,
        "crop_width": args.crop_width,
        "macs_by_op": {"detector": det, "recognizer_per_crop": rec, "classifier_per_crop": cls},
        "gmacs_per_photo": {k: round(v / 1e9, 3) for k, v in per_photo.items()},
        "gflop_per_photo": round(2 * sum(per_photo.values()) / 1e9, 2),
        "cpu": cpu,
        "cores": cores,
        "assumed_peak_gflops": peak,
        "floor_seconds_per_photo_fp32": round(2 * sum(per_photo.values()) / 1e9 / peak["fp32"], 4)
        if peak["fp32"]
        else None,
    }
    if args.profile > 0:
        from wildocr.engine import EngineConfig
        from wildocr.engine.predictor import thread_plan
        from wildocr.engine.quantize import int8_detector

        threads = thread_plan(EngineConfig(device="cpu"), on_gpu=False)["det_threads"]
        result["detector_profile"] = {
            "model": "int8",
            "threads": threads,
            "runs": args.profile,
            "ms_by_op": profile_ops(
                int8_detector(models.model_path(models.DET_MODEL)), (1, 3, h, w), args.profile, threads
            ),
        }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.write_docs:
        argv_shown = ["bench/flops.py", *(sys.argv[1:] if argv is None else argv)]
        replace_generated_section(
            REPO / "docs" / "benchmarks.md",
            "flops",
            "bench/flops.py",
            docs_body(argv_shown, result),
            "Benchmarks",
        )
    return 0


def docs_body(argv: list[str], result: dict) -> str:
    """The MACs table and the floor they imply at the assumed peak."""
    peak = result["assumed_peak_gflops"]
    rows = [
        [
            name,
            f"{gmacs:.2f}",
            f"{2 * gmacs / peak['fp32'] * 1000:.0f}",
            f"{2 * gmacs / peak['int8'] * 1000:.0f}",
        ]
        for name, gmacs in result["gmacs_per_photo"].items()
    ]
    h, w = result["detector_input"]
    return "\n".join(
        [
            *header_lines(argv),
            "",
            f"One {result['photo'][0]}x{result['photo'][1]} photo: the detector at {w}x{h}, "
            f"{result['crops_per_photo']} crops at the {result['crop_width']}-px bucket.",
            "",
            markdown_table(["network", "GMAC per photo", "ms at the fp32 peak", "ms at the int8 peak"], rows),
            "",
            f"Assumed peak of the {result['cores']} cores: {peak['fp32']:.0f} GFLOP/s fp32 (16 FMA lanes "
            f"per core per cycle x 2 FLOP x {result['cpu']['mhz']} MHz), {peak['int8']:.0f} GOP/s int8 "
            "(VNNI: 4x the fp32 lanes; 2x without VNNI). Only Conv, ConvTranspose, MatMul and Gemm are "
            "counted.",
            *profile_lines(result.get("detector_profile")),
        ]
    )


def profile_lines(profile: dict | None) -> list[str]:
    """The detector's kernel time by op type (`--profile`), the ops above 1% of it."""
    if not profile:
        return []
    total = sum(profile["ms_by_op"].values())
    rows = [
        [op, f"{ms:.1f}", f"{100 * ms / total:.1f}%"]
        for op, ms in profile["ms_by_op"].items()
        if ms >= 0.01 * total
    ]
    return [
        "",
        f"The int8 detector at {profile['threads']} thread(s), ONNX Runtime's profiler, mean of "
        f"{profile['runs']} runs: {total:.0f} ms of kernel time per photo.",
        "",
        markdown_table(["op type", "ms per photo", "share"], rows),
    ]


if __name__ == "__main__":
    sys.exit(main())
