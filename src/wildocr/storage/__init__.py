"""Object storage and tables: fsspec URLs, manifests, pyarrow schemas, atomic Parquet writes, leases.

Knows fsspec and pyarrow; never imports Airflow or the pipeline above it (see docs/tables.md).
"""
