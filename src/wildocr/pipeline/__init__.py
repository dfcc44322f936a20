"""The pipeline layer between storage and Airflow: images loaded, read by the engine, written as tables.

Imports the engine and storage layers, never Airflow. The Airflow operators call `wildocr.pipeline.shard`.
"""
