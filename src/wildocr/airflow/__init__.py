"""The Airflow layer: thin operators (`operators`), the shared task graph (`pipeline`), connection ->
storage_options (`hooks`), names and the embedded default (`settings`) and the macros plugin (`plugin`).

Nothing is imported here, so `import wildocr.airflow.settings` stays free of Airflow.
"""
