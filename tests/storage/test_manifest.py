"""`storage/manifest.py`: deterministic shard assignment, the manifest round trip, incremental manifests."""

from __future__ import annotations

import random

import pytest

from tests.helpers import IMAGE_NAMES, MODELS, _fill_local
from wildocr.pipeline import outputs, run
from wildocr.storage import manifest, objectstore, tables
from wildocr.storage.objectstore import ObjectInfo


def _objects(n: int) -> list[ObjectInfo]:
    return [ObjectInfo(uri=f"s3://b/img_{i:03d}.jpg", size=i, etag=f"e{i}") for i in range(n)]


def test_shard_assignment_is_deterministic():
    objects = _objects(11)
    shuffled = objects[:]
    random.Random(7).shuffle(shuffled)
    a = manifest.assign_shards(objects, 4)
    assert a.equals(manifest.assign_shards(shuffled, 4))
    assert a["shard"].to_pylist() == [0] * 4 + [1] * 4 + [2] * 3
    assert a["image_uri"].to_pylist() == sorted(o.uri for o in objects)
    for bad in (0, -1, True, 2.5):
        with pytest.raises(ValueError):
            manifest.assign_shards(objects, bad)


def test_manifest_roundtrip_and_shards(tmp_path):
    src = tmp_path / "src"
    _fill_local(src)
    url = str(tmp_path / "run" / "manifest.parquet")
    assert run.build_manifest(str(src), url, shard_size=4) == [0, 1]
    objects, info = manifest.shard_objects(url, 1)
    assert info.n_images == 6 and info.skipped_other == 2 and info.n_shards == 2
    assert [o.uri for o in objects] == sorted(f"file://{src}/{n}" for n in IMAGE_NAMES)[4:]
    with pytest.raises(ValueError):
        manifest.shard_objects(url, 2)
    # a retried shard reads the frozen manifest, not the (changed) prefix
    (src / "zzz_new.jpg").write_bytes(b"new")
    assert manifest.shard_objects(url, 1)[0] == objects


def test_empty_prefix_gives_no_shards(tmp_path):
    url = str(tmp_path / "manifest.parquet")
    (tmp_path / "empty").mkdir()
    assert run.build_manifest(str(tmp_path / "empty"), url, shard_size=4) == []
    assert manifest.read_manifest(url)[1].n_images == 0


def test_incremental_manifest_skips_ok_rows_of_other_partitions(tmp_path):
    src = tmp_path / "src"
    _fill_local(src)
    listing = objectstore.list_images(str(src)).images
    root = str(tmp_path / "ocr")
    now = tables.utc_now()

    def row(obj: objectstore.ObjectInfo, **fields: object) -> dict:
        fields = {"image_uri": obj.uri, "etag": obj.etag, **fields}
        return tables.image_row(size=1, run_id="r", shard=0, processed_at=now, model_info=MODELS, **fields)

    rows = [
        row(listing[0]),
        row(listing[1], etag="an-older-version"),
        row(listing[2], error="truncated"),
        # a two-page document whose second page failed: not done, the rerun reads it again
        row(listing[3], page=1),
        row(listing[3], page=2, error="page 2: cannot decode"),
    ]
    words = tables.to_table(tables.WORDS, [])
    outputs.write_outputs(root, "2026-11-23", 0, tables.to_table(tables.IMAGES, rows), words, n_shards=1)
    url = str(tmp_path / "m.parquet")

    run.build_manifest(str(src), url, shard_size=10, skip_done_root=root, dt="2026-11-24")
    table, info = manifest.read_manifest(url)
    assert info.skipped_done == 1  # only the object whose every row is ok, with the same ETag
    assert listing[0].uri not in table["image_uri"].to_pylist() and table.num_rows == 5

    # rewriting the partition that holds the ok row: its files get replaced, so nothing may be skipped
    run.build_manifest(str(src), url, shard_size=10, skip_done_root=root, dt="2026-11-23")
    assert manifest.read_manifest(url)[1].skipped_done == 0
    with pytest.raises(ValueError, match="dt"):
        run.build_manifest(str(src), url, shard_size=10, skip_done_root=root)
