"""The pipeline layer between storage and Airflow: images loaded, read by the engine, written as tables.

Imports the engine and storage layers, never Airflow. `outcome` is the one image path; `fused` and `staged`
run it for a shard; `run` plans a run and ends it; `outputs` writes a shard's part files; `options` parses
engine and storage options for the CLI and the DAGs.
"""
