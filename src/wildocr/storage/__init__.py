"""Object storage in, hive-partitioned Parquet out: the layer between the OCR engine and Airflow.

Knows fsspec URLs and pyarrow tables; never imports Airflow. The Airflow layer calls the functions of
`wildocr.storage.shard` (see docs/tables.md for the tables these write).
"""
