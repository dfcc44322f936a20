"""wildocr: OCR in the wild as an Apache Airflow data pipeline."""

__version__ = "0.1.0"
