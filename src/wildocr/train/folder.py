"""Writing a model folder (`wildocr-model-folder/1`): `manifest.json` and the ONNX files it names.

The engine reads and checks these folders (`--model-dir`); this module only writes them. A folder
trained from another one (`--base`) keeps that folder's other role, so `train det` then
`train rec --base` builds one folder holding both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

FORMAT = "wildocr-model-folder/1"
MANIFEST = "manifest.json"
ROLE_FILES = {"det": "det.onnx", "rec": "rec.onnx"}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a base folder (the engine checks folders it loads; training only needs to know
    which file each role has)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--base {folder}: cannot read {MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"--base {folder}: {MANIFEST} is not a {FORMAT} manifest")
    return manifest


def write_model_folder(
    out: Path,
    role: str,
    model: bytes,
    base_file: Path,
    *,
    name: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
    base_folder: Path | None = None,
) -> Path:
    """Write `model` as `role`'s file of the folder `out` (with the base folder's other roles), atomically
    per file: the manifest is written last, so a folder is never announced with a half-written file."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_manifest(base_folder) if base_folder is not None else None
    models: dict[str, Any] = {}
    old_training: dict[str, Any] = {}
    old_metrics: dict[str, Any] = {}
    if previous is not None and base_folder is not None:
        old_training = dict(previous.get("training") or {})
        old_metrics = dict(previous.get("metrics") or {})
        for other, entry in (previous.get("models") or {}).items():
            if other == role:
                continue
            source = base_folder / entry["file"]
            target = out / ROLE_FILES[other]
            if source.resolve() != target.resolve():
                shutil.copyfile(source, target)
            models[other] = {**entry, "file": target.name}
    target = out / ROLE_FILES[role]
    _write_atomic(target, model)
    models[role] = {
        "file": target.name,
        "sha256": sha256(target),
        "base": {"file": base_file.name, "sha256": sha256(base_file)},
    }
    data = [d for d in old_training.get("data", []) if d.get("role") != role] + training["data"]
    settings = {**(old_training.get("settings") or {}), role: training["settings"]}
    seconds = float(old_training.get("seconds", 0.0) or 0.0) if old_training else 0.0
    manifest = {
        "format": FORMAT,
        "name": name,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": dict(sorted(models.items())),
        "training": {
            "data": data,
            "settings": settings,
            "seconds": round(seconds + training["seconds"], 1),
            "device": training["device"],
        },
        "metrics": {**old_metrics, **metrics},
        "license": (
            "base weights: PP-OCRv6 small (PaddleOCR, Apache-2.0, shipped in the rapidocr wheel); "
            "fine-tuned on the data listed under training.data, under that data's own terms"
        ),
    }
    _write_atomic(out / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
