"""The two tables as Airflow Assets, and what an asset-triggered consumer reads from their events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from wildocr.airflow import settings

if TYPE_CHECKING:
    from airflow.sdk import Context

IMAGES_ASSET = Asset(name="wildocr_images", uri=settings.IMAGES_ASSET_URI, group="wildocr")
WORDS_ASSET = Asset(name="wildocr_words", uri=settings.WORDS_ASSET_URI, group="wildocr")


def triggering_partition(context: Context, asset: Asset = WORDS_ASSET) -> tuple[str | None, dict[str, Any]]:
    """The partition key (dt) of an asset-triggered run and the extra of the event that carried it.

    A run created by `PartitionedAssetTimetable` has `context["partition_key"]`; its consumed events
    carry the same key. A manual run has neither: (None, {}).
    """
    key = context.get("partition_key")
    by_asset: Any = context.get("triggering_asset_events") or {}
    events = list(by_asset.get(asset, []) or [])
    matching = [e for e in events if getattr(e, "partition_key", None) == key] if key else []
    extra = dict((matching or events)[-1].extra or {}) if (matching or events) else {}
    return key, extra
