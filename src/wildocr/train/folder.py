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

from wildocr.engine.models import (
    MANIFEST_NAME,
    MODEL_FOLDER_FORMAT,
    VERIFIER_KEY,
    ModelFileError,
    ModelFolder,
    load_model_folder,
)
from wildocr.engine.verify import Verifier

FORMAT = MODEL_FOLDER_FORMAT
MANIFEST = MANIFEST_NAME
ROLE_FILES = {"det": "det.onnx", "rec": "rec.onnx"}
VERIFIER_FILE = "verifier.json"


def sha256(path: Path) -> str:
    """Hash of the file as it is now (not `engine.models.file_sha256`, cached per path: a folder rewritten
    in place with `--base DIR --out DIR` must get its new hash)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_base(folder: Path) -> ModelFolder:
    """A base folder, checked by the engine's own loader (files, hashes, graphs, charset)."""
    try:
        return load_model_folder(folder)
    except ModelFileError as exc:
        raise ValueError(f"--base: {exc}") from None


def write_model_folder(
    out: Path,
    role: str,
    model: bytes,
    base_file: Path,
    *,
    limit_side: int | None = None,
    name: str,
    training: dict[str, Any],
    metrics: dict[str, Any],
    base_folder: Path | None = None,
) -> Path:
    """Write `model` as `role`'s file of the folder `out` (with the base folder's other roles), atomically
    per file: the manifest is written last, so a folder is never announced with a half-written file.

    A base folder's own verifier is not carried over: it was fitted to the readings of the weights this
    training replaces (`wildocr train verifier` fits one to the new folder). `limit_side` is the input
    size a detector was trained and validated at: the engine reads with it at that size."""
    out.mkdir(parents=True, exist_ok=True)
    previous = read_base(base_folder).manifest if base_folder is not None else None
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
        **({"limit_side": limit_side} if limit_side is not None else {}),
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
    _write_manifest(out, manifest)
    stale = out / VERIFIER_FILE
    if stale.is_file():
        stale.unlink()
    return out


def add_verifier(folder: Path, verifier: Verifier, fitted: dict[str, Any]) -> Path:
    """Write `verifier` into the model folder as `verifier.json` and name it in the manifest (last)."""
    try:
        manifest = dict(load_model_folder(folder).manifest)
    except ModelFileError as exc:
        raise ValueError(str(exc)) from None
    target = folder / VERIFIER_FILE
    _write_atomic(target, verifier.to_bytes())
    manifest[VERIFIER_KEY] = {"file": target.name, "sha256": sha256(target), "fitted_on": fitted}
    _write_manifest(folder, manifest)
    return target


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    _write_atomic(folder / MANIFEST, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())


def _write_atomic(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix=".part") as tmp:
        tmp.write(data)
    os.replace(tmp.name, path)
