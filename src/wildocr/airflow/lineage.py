"""OpenLineage datasets and facets for the wildocr operators (built only when the provider asks for them).

The operators' `get_openlineage_facets_on_complete` import this module inside the method, so neither the
OpenLineage client nor pyarrow is imported at DAG-parse time, and nothing here runs unless the
`apache-airflow-providers-openlineage` listener is enabled. Everything is derived from what `execute`
already knew (the source prefixes, the shard summary) and from the pyarrow schemas in
`wildocr.storage.tables`, so a new column appears in the schema facet without touching this file.

Dataset names follow OpenLineage's naming spec (`openlineage.client.naming`): `s3://bucket` + key for S3
(`s3a://`, `s3n://` too), `file` + absolute path for local paths (`file://host` when the URL names a host),
the same rule Airflow's own file and S3 Assets use, so the graphs join.

Which task says what:
- `manifest`: inputs = the source prefix of each date (one dataset per prefix, not one per photo).
- the task that wrote a shard's part files (`ocr.publish`; `ocr.detect` in fused mode): input = the
  source prefix, outputs = the `images` and `words` tables with schema, storage (parquet), output
  statistics of this shard's files (rows, files, bytes), the `dt` partition (subset facet) and data
  quality metrics (error rows, words). Summing the statistics over a run's shard tasks gives the run's.
- the other shard steps and `finalize` write only staging files (or none): no datasets.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base_subset_dataset import (
    OutputSubsetOutputDatasetFacet,
    Partition,
    PartitionSubsetCondition,
)
from openlineage.client.generated.data_quality_metrics_dataset import (
    ColumnMetrics,
    DataQualityMetricsDatasetFacet,
)
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from openlineage.client.generated.storage_dataset import StorageDatasetFacet

from wildocr.pipeline.outputs import ShardSummary
from wildocr.storage import tables
from wildocr.storage.objectstore import S3_SCHEMES


def dataset_name(url: str) -> tuple[str, str]:
    """(namespace, name) of a storage URL by OpenLineage's naming spec."""
    if "://" not in url:
        return "file", url  # a plain absolute path
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in S3_SCHEMES:
        return f"s3://{parts.netloc}", parts.path.lstrip("/") or "/"
    if scheme == "file":
        return (f"file://{parts.netloc}" if parts.netloc else "file"), parts.path
    return f"{scheme}://{parts.netloc}", parts.path or "/"


def source_dataset(prefix: str) -> InputDataset:
    """The photos under a source prefix as one dataset (Airflow's object lineage stops at 100 objects)."""
    namespace, name = dataset_name(prefix)
    return InputDataset(namespace=namespace, name=name)


def source_datasets(prefixes: Iterable[str]) -> list[InputDataset]:
    return [source_dataset(p) for p in dict.fromkeys(prefixes)]


def schema_facet(table: str) -> SchemaDatasetFacet:
    """The table's columns from its pyarrow schema, plus `dt`, which lives in the directory names."""
    fields = [
        SchemaDatasetFacetFields(name=field.name, type=str(field.type))
        for field in tables.OUTPUT_SCHEMAS[table]
    ]
    partition = "hive partition (directory name): dt=YYYY-MM-DD"
    fields.append(SchemaDatasetFacetFields(name="dt", type="string", description=partition))
    return SchemaDatasetFacet(fields=fields)


def _rows_and_bytes(table: str, summary: ShardSummary) -> tuple[int, int]:
    if table == "images":
        return summary.images, summary.images_bytes
    return summary.words, summary.words_bytes


def _quality(table: str, summary: ShardSummary) -> DataQualityMetricsDatasetFacet:
    if table == "images":
        columns = {
            # `error` is null on ok rows: its non-null count is the error rows
            "error": ColumnMetrics(nullCount=summary.ok, count=summary.errors),
            "n_words": ColumnMetrics(sum=summary.words),
            # one row per page: the distinct URIs are the objects (photos and documents) read
            "image_uri": ColumnMetrics(nullCount=0, count=summary.images, distinctCount=summary.objects),
        }
    else:
        columns = {"text": ColumnMetrics(nullCount=0, count=summary.words)}
    rows, size = _rows_and_bytes(table, summary)
    return DataQualityMetricsDatasetFacet(columnMetrics=columns, rowCount=rows, bytes=size, fileCount=1)


def shard_outputs(output_root: str, summary: ShardSummary) -> list[OutputDataset]:
    """The `images` and `words` tables as written by one shard task (its summary from the pipeline)."""
    dt = summary.dt
    outputs = []
    for table in tables.TABLES:
        namespace, name = dataset_name(f"{output_root.rstrip('/')}/{table}")
        partition = Partition(dimensions={"dt": dt}, identifier=f"dt={dt}")
        outputs.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                facets={
                    "schema": schema_facet(table),
                    "storage": StorageDatasetFacet(storageLayer="parquet", fileFormat="parquet"),
                    "dataQualityMetrics": _quality(table, summary),
                },
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(
                        rowCount=_rows_and_bytes(table, summary)[0],
                        size=_rows_and_bytes(table, summary)[1],
                        fileCount=1,
                    ),
                    "subset": OutputSubsetOutputDatasetFacet(
                        outputCondition=PartitionSubsetCondition(partitions=[partition])
                    ),
                },
            )
        )
    return outputs
