"""The results browser: a small web app inside the Airflow api-server to look at what the OCR read.

- `links.py`: its URL shapes and the operator extra link (light: imported by the operators at parse time).
- `app.py`: the FastAPI app (server-rendered HTML, Airflow's own auth on every route), mounted at
  `/wildocr` by `WildOcrPlugin` and shown in the UI as a navigation entry and a tab of each DAG run.

Queries live in `wildocr.storage.query`, pictures in `wildocr.pipeline.preview`: nothing here is needed
to use the tables without Airflow.
"""
