"""The demo's results in the Airflow UI: `make ui` after `make demo`.

    python include/ui.py [--port 8080] [--host 127.0.0.1]

Starts `airflow api-server` on the demo's Airflow home (./airflow_home, SQLite) and tables (./data/ocr),
waits until it answers, then prints the URL and the login and keeps running until Ctrl-C, which stops the
api-server and everything it started. Login: Airflow 3's default SimpleAuthManager with one user, `admin`
(role admin), whose password Airflow generates once into
./airflow_home/simple_auth_manager_passwords.json.generated; this script prints it. Nothing else runs:
no scheduler, so nothing is scheduled or executed; the UI shows the runs `make demo` made.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / "airflow_home"
USER = "admin"
START_SECONDS = 180


def _environment() -> dict[str, str]:
    """The same Airflow and wildocr homes as include/demo.py, and a SimpleAuthManager with one admin."""
    env = dict(os.environ)
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)  # default: the demo's SQLite in AIRFLOW_HOME
    env.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "WILDOCR_HOME": str(ROOT / "data"),  # the results browser reads $WILDOCR_HOME/ocr
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__WORKERS": "1",
        }
    )
    env.pop("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", None)  # the generated file in AIRFLOW_HOME
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the api-server's own process group (it and its uvicorn worker), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("WILDOCR_UI_PORT", "8080")))
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    args = parser.parse_args(argv)

    if not (HOME / "airflow.db").exists():
        print("no demo yet: run `make demo` first (it creates airflow_home/ and data/)", file=sys.stderr)
        return 1
    if not _port_free(args.host, args.port):
        print(f"port {args.port} is in use: `make ui PORT=8090` (or --port) picks another", file=sys.stderr)
        return 1
    env = _environment()
    airflow = [sys.executable, "-m", "airflow"]

    # The demo ran wildocr_nightly with dag.test(); this stores every DAG of dags/ in the metadata DB too
    # (what a dag-processor would do), so the UI lists all three. Parsing imports no OCR code.
    print("1/2 storing the DAGs of dags/ in the demo's metadata DB (airflow dags reserialize)")
    subprocess.run([*airflow, "dags", "reserialize"], env=env, check=False, capture_output=True)

    log_path = HOME / "logs" / "api-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    url = f"http://{'localhost' if args.host in ('127.0.0.1', '0.0.0.0') else args.host}:{args.port}"
    print(f"2/2 starting airflow api-server on {url} (log: {log_path.relative_to(ROOT)})")
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*airflow, "api-server", "--host", args.host, "--port", str(args.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with everything it started
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill PID` stops the server too (finally below)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                print(f"api-server exited with {process.returncode}; see {log_path}", file=sys.stderr)
                return 1
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/api/v2/monitor/health", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    print(f"api-server not up after {START_SECONDS} s; see {log_path}", file=sys.stderr)
                    return 1
                time.sleep(1)
        passwords_file = HOME / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords_file.read_text()).get(USER, "?")
        print(
            "\n"
            f"  Airflow UI      {url}/\n"
            f"  OCR results     {url}/wildocr/   (also 'OCR results' in the navigation and on each run)\n"
            f"  demo DAG runs   {url}/dags/wildocr_nightly/runs\n"
            f"  login           user: {USER}   password: {password}\n"
            f"                  (generated once, kept in {passwords_file.relative_to(ROOT)})\n"
            "\n"
            "Ctrl-C stops the api-server.",
            flush=True,
        )
        process.wait()
        return process.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(process)


if __name__ == "__main__":
    sys.exit(main())
