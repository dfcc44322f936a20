#!/usr/bin/env bash
# The docker-compose.yaml deployment without Docker: Postgres, Redis, an S3 server (moto) and every Airflow
# component as plain processes of this machine, all on 127.0.0.1, on free ports picked at `up`.
#
#   scripts/stack.sh up                 # start everything; writes $WILDOCR_STACK_DIR/env.sh
#   source .stack/env.sh                # then the Airflow CLI talks to this stack (docs/deployment.md)
#   scripts/stack.sh seed 2026-03-01    # sample photos for that day into s3://wildocr-photos/incoming/<day>/
#   scripts/stack.sh status             # components, PIDs, ports
#   scripts/stack.sh env                # print env.sh
#   scripts/stack.sh start|stop|kill NAME   # one component (kill = SIGKILL of its whole process tree)
#   scripts/stack.sh restart NAME       # stop (graceful) + start on the same port and data (docs/reliability.md)
#   scripts/stack.sh heal               # start every component that is down (compose's `restart: always`)
#   scripts/stack.sh down               # stop everything this script started, by PID
#   scripts/stack.sh clean              # after `down`: delete the state (metadata DB, logs, env.sh)
#
# Needs: the project's venv (`make setup`), Debian's `postgresql` and `redis-server` packages (their server
# binaries are used directly; the system services are not touched). Run as root, Postgres runs as the
# `postgres` user. State lives in $WILDOCR_STACK_DIR (default: .stack/ in the repository); the S3 server
# keeps its objects in memory, so they are gone after `down`.
#
# Settings: every AIRFLOW__* variable set when calling `up` is written into env.sh, so for example
#   AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=45 scripts/stack.sh up
# overrides the compose defaults below. WILDOCR_CPU_WORKER_CONCURRENCY (2) and WILDOCR_GPU_WORKER_CONCURRENCY
# (1) size the two Celery workers. WILDOCR_STACK_TASK_S3_ENDPOINT, when set, is the endpoint the Airflow
# connection (so every task) uses instead of the S3 server's own: the reliability tests put a fault-injecting
# proxy there (tests_stack/test_stack.py).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STACK=${WILDOCR_STACK_DIR:-$REPO/.stack}
VENV=${WILDOCR_VENV:-$REPO/.venv}
RUN=$STACK/run
LOGS=$STACK/logs
ENV_FILE=$STACK/env.sh
# Start order; `down` stops in reverse.
AIRFLOW_COMPONENTS="apiserver scheduler dag-processor triggerer worker worker-gpu"

die() { echo "stack.sh: $*" >&2; exit 1; }
log() { echo "stack.sh: $*"; }

# ------------------------------------------------------------------------------------------- prerequisites
pg_bindir() {
  local d
  d=$(command -v pg_config >/dev/null 2>&1 && pg_config --bindir 2>/dev/null || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
  [ -n "$d" ] && [ -x "$d/initdb" ] && { echo "$d"; return; }
  d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
  [ -x "$d/initdb" ] && { echo "$d"; return; }
  return 1
}

check() {  # exit 3 (and say what is missing) when the stack cannot start here
  local missing=()
  pg_bindir >/dev/null || missing+=("Postgres server (apt-get install postgresql)")
  command -v redis-server >/dev/null || missing+=("redis-server (apt-get install redis-server)")
  [ -x "$VENV/bin/airflow" ] || missing+=("the project venv with Airflow ($VENV; run make setup)")
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then missing+=("a 'postgres' user to run Postgres as"); fi
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'stack.sh: missing: %s\n' "${missing[@]}" >&2
    exit 3
  fi
}

free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ------------------------------------------------------------------------------------------- env.sh
write_env() {
  local pg_port redis_port s3_port api_port health_port overrides
  pg_port=$(free_port); redis_port=$(free_port); s3_port=$(free_port); api_port=$(free_port); health_port=$(free_port)
  task_s3=${WILDOCR_STACK_TASK_S3_ENDPOINT:-http://127.0.0.1:$s3_port}
  # AIRFLOW__* given by the caller win over the defaults below (they are written last).
  overrides=$(env | grep -E '^AIRFLOW__[A-Z0-9_]+=' | grep -vE '^AIRFLOW__(DATABASE__SQL_ALCHEMY_CONN|CORE__DAGS_FOLDER|CORE__LOAD_EXAMPLES|CORE__DAGS_ARE_PAUSED_AT_CREATION|CELERY__BROKER_URL|CELERY__RESULT_BACKEND|CORE__EXECUTION_API_SERVER_URL)=' | sed "s/'/'\\\\''/g; s/^\([^=]*\)=\(.*\)$/export \1='\2'/" || true)
  cat > "$ENV_FILE" <<ENV
# Written by scripts/stack.sh up: the x-airflow-common environment of docker-compose.yaml (with .env.example's
# local defaults), host names replaced by 127.0.0.1 and free ports. Source it to use the Airflow CLI.
export WILDOCR_STACK_DIR='$STACK'
export PATH='$VENV/bin':"\$PATH"
unset WILDOCR_HOME AIRFLOW__CORE__UNIT_TEST_MODE
export STACK_PG_PORT=$pg_port STACK_REDIS_PORT=$redis_port STACK_S3_PORT=$s3_port STACK_API_PORT=$api_port
export STACK_S3_ENDPOINT=http://127.0.0.1:$s3_port
# what the image provides (docker/Dockerfile: PYTHONPATH=/opt/airflow, dags/ and plugins/ baked in)
export AIRFLOW_HOME='$STACK/airflow_home'
export AIRFLOW_CONFIG='$STACK/airflow_home/airflow.cfg'
# plus src/: the processes run this checkout's code even where the venv's editable install is another's
export PYTHONPATH='$REPO/src:$REPO'
export AIRFLOW__CORE__DAGS_FOLDER='$REPO/dags'
export AIRFLOW__CORE__PLUGINS_FOLDER='$REPO/plugins'
# .env.example
export POSTGRES_USER=airflow POSTGRES_PASSWORD=airflow-local POSTGRES_DB=airflow
export MINIO_ROOT_USER=wildocr-local MINIO_ROOT_PASSWORD=wildocr-local-secret
export _AIRFLOW_WWW_USER_USERNAME=airflow _AIRFLOW_WWW_USER_PASSWORD=airflow-local
export WILDOCR_GPU_POOL_SLOTS=\${WILDOCR_GPU_POOL_SLOTS:-1}
# x-airflow-common environment
export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=airflow:admin
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE='$STACK/airflow_home/simple_auth_manager_passwords.json'
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:airflow-local@127.0.0.1:$pg_port/airflow
export AIRFLOW__CELERY__RESULT_BACKEND=db+postgresql+psycopg2://airflow:airflow-local@127.0.0.1:$pg_port/airflow
export AIRFLOW__CELERY__BROKER_URL=redis://:@127.0.0.1:$redis_port/0
export AIRFLOW__CORE__FERNET_KEY=
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=true
export AIRFLOW__CORE__LOAD_EXAMPLES=false
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$api_port/execution/
export AIRFLOW__API_AUTH__JWT_SECRET=wildocr-local-jwt-secret-not-for-production-0123456789abcdef0123456789
export AIRFLOW__API__SECRET_KEY=wildocr-local-api-secret-key-not-for-production
export AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK=true
# failure recovery for long GPU tasks (docs/deployment.md, "When a worker dies")
export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT=120
export AIRFLOW__CELERY__TASK_ACKS_LATE=True
export AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER=1
export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT=86400
# wildocr: the object-store connection and the Variables the DAGs read
export AIRFLOW_CONN_WILDOCR_S3='{"conn_type": "aws", "login": "wildocr-local", "password": "wildocr-local-secret", "extra": {"endpoint_url": "$task_s3", "region_name": "us-east-1", "config_kwargs": {"s3": {"addressing_style": "path"}}}}'
export AIRFLOW_VAR_WILDOCR_SOURCE_PREFIX='s3://wildocr-photos/incoming/{{ ds }}/'
export AIRFLOW_VAR_WILDOCR_OUTPUT_ROOT='s3://wildocr-lake/ocr'
# native only: the scheduler's health server on a free loopback port
export AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST=127.0.0.1
export AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT=$health_port
# overrides given to \`stack.sh up\`
$overrides
ENV
}

load_env() {
  [ -f "$ENV_FILE" ] || die "no $ENV_FILE: run 'scripts/stack.sh up' first"
  # shellcheck disable=SC1090
  source "$ENV_FILE"
}

# ------------------------------------------------------------------------------------------- processes
pid_of() { cat "$RUN/$1.pid" 2>/dev/null || true; }
alive() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

descendants() {  # every descendant PID of $1, each listed before its own children
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$child"; descendants "$child"; done
}

launch() {  # NAME CMD...: in its own session, env.sh loaded, output to logs/NAME.log, PID to run/NAME.pid
  local name=$1; shift
  if alive "$name"; then log "$name already running (pid $(pid_of "$name"))"; return; fi
  ( load_env; cd "$REPO"; exec setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null ) &
  echo $! > "$RUN/$name.pid"
  log "started $name (pid $!)"
}

stop_one() {  # SIGTERM (Celery: warm shutdown) and wait; then SIGKILL what is left of its process tree
  local name=$1 grace=${2:-30} pid tree i
  pid=$(pid_of "$name")
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then rm -f "$RUN/$name.pid"; return; fi
  tree="$pid $(descendants "$pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  for p in $tree; do kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$RUN/$name.pid"
  log "stopped $name (pid $pid)"
}

kill_one() {  # SIGKILL the whole process tree at once: what a crashed machine or `docker kill` does
  local name=$1 pid tree
  pid=$(pid_of "$name")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || die "$name is not running"
  tree="$pid $(descendants "$pid")"
  # shellcheck disable=SC2086
  kill -KILL $tree 2>/dev/null || true
  rm -f "$RUN/$name.pid"
  log "killed $name (pids $tree)"
}

wait_for() {  # SECONDS DESCRIPTION CMD...
  local seconds=$1 what=$2 i; shift 2
  for i in $(seq 1 "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  die "timed out after ${seconds}s waiting for $what (logs: $LOGS)"
}

http_ok() { "$VENV/bin/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1"; }

# ------------------------------------------------------------------------------------------- services
as_postgres() {  # Postgres refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_data_dir() {  # under $STACK, unless the postgres user cannot reach it (e.g. a clone under /root)
  if [ -f "$STACK/postgres.path" ]; then cat "$STACK/postgres.path"; return; fi
  local dir=$STACK/postgres
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$dir"; chown postgres "$dir"
    runuser -u postgres -- test -w "$dir" 2>/dev/null || { rmdir "$dir"; dir=$(mktemp -d /tmp/wildocr-stack-pg.XXXXXX); chown postgres "$dir"; }
  fi
  echo "$dir" > "$STACK/postgres.path"
  echo "$dir"
}

postgres_up() {
  local bin data pwfile
  bin=$(pg_bindir); data=$(pg_data_dir)
  if [ ! -f "$data/PG_VERSION" ]; then
    pwfile=$(mktemp); echo "$POSTGRES_PASSWORD" > "$pwfile"; chmod 644 "$pwfile"
    as_postgres "$bin/initdb" -D "$data" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >>"$LOGS/initdb.log" 2>&1 || { rm -f "$pwfile"; die "initdb failed (see $LOGS/initdb.log)"; }
    rm -f "$pwfile"
  fi
  # TCP on loopback only, no Unix socket (its path could be too long); the port changes with every `up`.
  # The server log stays in the data directory, which the postgres user can always write.
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start \
    -o "-p $STACK_PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200" >/dev/null
  head -1 "$data/postmaster.pid" > "$RUN/postgres.pid"
  PGPASSWORD=$POSTGRES_PASSWORD "$bin/psql" -h 127.0.0.1 -p "$STACK_PG_PORT" -U "$POSTGRES_USER" -d postgres -tAq \
    -c "SELECT 1 FROM pg_database WHERE datname = '$POSTGRES_DB'" | grep -q 1 ||
    PGPASSWORD=$POSTGRES_PASSWORD "$bin/createdb" -h 127.0.0.1 -p "$STACK_PG_PORT" -U "$POSTGRES_USER" "$POSTGRES_DB"
  log "started postgres (pid $(pid_of postgres), port $STACK_PG_PORT, data $data)"
}

postgres_down() {
  local data
  [ -f "$STACK/postgres.path" ] || return 0
  data=$(cat "$STACK/postgres.path")
  if [ -f "$data/postmaster.pid" ]; then
    as_postgres "$(pg_bindir)/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null && log "stopped postgres"
  fi
  rm -f "$RUN/postgres.pid"
}

start_one() {
  case "$1" in
    redis)
      # Redis's default snapshots (as the compose image): a graceful restart keeps the queued Celery messages.
      mkdir -p "$STACK/redis"
      launch redis redis-server --port "$STACK_REDIS_PORT" --bind 127.0.0.1 --dir "$STACK/redis" \
        --save '3600 1 300 100 60 10000' --appendonly no --daemonize no
      wait_for 30 redis "$VENV/bin/python" -c "import redis, sys; redis.Redis(port=int(sys.argv[1])).ping()" "$STACK_REDIS_PORT" ;;
    s3)
      launch s3 moto_server -H 127.0.0.1 -p "$STACK_S3_PORT"
      wait_for 60 "the S3 server" http_ok "$STACK_S3_ENDPOINT/moto-api/" ;;
    apiserver)
      launch apiserver airflow api-server --host 127.0.0.1 --port "$STACK_API_PORT"
      wait_for 180 "the api-server" http_ok "http://127.0.0.1:$STACK_API_PORT/api/v2/monitor/health" ;;
    scheduler)     launch scheduler airflow scheduler --skip-serve-logs ;;
    dag-processor) launch dag-processor airflow dag-processor ;;
    triggerer)     launch triggerer airflow triggerer --skip-serve-logs ;;
    # --skip-serve-logs: the log server has no host setting (it binds every interface on a fixed port);
    # the api-server reads the task logs from the shared $AIRFLOW_HOME/logs instead.
    worker)
      launch worker airflow celery worker --queues default \
        --concurrency "${WILDOCR_CPU_WORKER_CONCURRENCY:-2}" --celery-hostname 'default@%h' --skip-serve-logs ;;
    worker-gpu)
      launch worker-gpu airflow celery worker --queues gpu \
        --concurrency "${WILDOCR_GPU_WORKER_CONCURRENCY:-1}" --celery-hostname 'gpu@%h' --skip-serve-logs ;;
    *) die "unknown component '$1' (redis s3 $AIRFLOW_COMPONENTS)" ;;
  esac
}

buckets() {  # the compose minio-init job
  "$VENV/bin/python" - <<'PY'
import os, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["STACK_S3_ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id=os.environ["MINIO_ROOT_USER"], aws_secret_access_key=os.environ["MINIO_ROOT_PASSWORD"])
have = {b["Name"] for b in s3.list_buckets()["Buckets"]}
for name in ("wildocr-photos", "wildocr-lake"):
    if name not in have:
        s3.create_bucket(Bucket=name)  # us-east-1: no LocationConstraint
PY
}

airflow_init() {  # the compose airflow-init job
  mkdir -p "$AIRFLOW_HOME/logs"
  ( cd "$REPO"
    airflow db migrate >>"$LOGS/airflow-init.log" 2>&1 || die "airflow db migrate failed (see $LOGS/airflow-init.log)"
    airflow pools set gpu "$WILDOCR_GPU_POOL_SLOTS" "wildocr: one slot per GPU worker process" >>"$LOGS/airflow-init.log" 2>&1
    "$VENV/bin/python" -c 'import json, os; json.dump({os.environ["_AIRFLOW_WWW_USER_USERNAME"]: os.environ["_AIRFLOW_WWW_USER_PASSWORD"]}, open(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"], "w"))'
  )
  log "airflow db migrated, pool gpu = $WILDOCR_GPU_POOL_SLOTS slot(s)"
}

# ------------------------------------------------------------------------------------------- commands
up() {
  check
  mkdir -p "$RUN" "$LOGS"
  alive scheduler && die "already up (scripts/stack.sh status)"
  write_env; load_env
  postgres_up
  start_one redis
  start_one s3; buckets
  airflow_init
  local c; for c in $AIRFLOW_COMPONENTS; do start_one "$c"; done
  wait_for 120 "the scheduler's health check" http_ok "http://127.0.0.1:$AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT/health"
  log "up: UI http://127.0.0.1:$STACK_API_PORT (airflow / airflow-local), S3 $STACK_S3_ENDPOINT; source $ENV_FILE"
}

down() {  # in stages, each stage's components in parallel (they take 2-16 s each to shut down)
  [ -d "$RUN" ] || return 0
  local stage c
  for stage in "worker-gpu worker triggerer dag-processor scheduler" "apiserver" "s3 redis"; do
    for c in $stage; do stop_one "$c" & done
    wait
  done
  postgres_down
}

seed() {  # DAY [COUNT] [SEED]: the compose wildocr-seed job; the default seed differs per day (its digits)
  local day=${1:?usage: stack.sh seed YYYY-MM-DD [COUNT] [SEED]} count=${2:-24} seed=${3:-}
  seed=${seed:-${day//-/}}
  load_env
  ( cd "$REPO"
    opts=$("$VENV/bin/python" -c 'import json, os; print(json.dumps({"key": os.environ["MINIO_ROOT_USER"], "secret": os.environ["MINIO_ROOT_PASSWORD"], "endpoint_url": os.environ["STACK_S3_ENDPOINT"], "client_kwargs": {"region_name": "us-east-1"}}))')
    "$VENV/bin/python" include/sample_data.py "s3://wildocr-photos/incoming/$day/" --count "$count" --seed "$seed" --storage-options "$opts" )
}

heal() {  # what `restart: always` does in compose: the Airflow components exit when Postgres goes away
  load_env
  alive postgres || postgres_up
  local c; for c in redis s3 $AIRFLOW_COMPONENTS; do alive "$c" || start_one "$c"; done
}

status() {
  local c
  for c in postgres redis s3 $AIRFLOW_COMPONENTS; do
    if alive "$c"; then echo "$c: up (pid $(pid_of "$c"))"; else echo "$c: down"; fi
  done
  if [ -f "$ENV_FILE" ]; then
    load_env
    echo "ports: postgres $STACK_PG_PORT, redis $STACK_REDIS_PORT, s3 $STACK_S3_PORT, api-server $STACK_API_PORT"
  fi
}

case "${1:-}" in
  check) check ;;
  up) up ;;
  down) down ;;
  status) status ;;
  heal) heal ;;
  env) cat "$ENV_FILE" ;;
  seed) shift; seed "$@" ;;
  start) load_env; if [ "${2:-}" = postgres ]; then postgres_up; else start_one "${2:?component}"; fi ;;
  stop) if [ "${2:-}" = postgres ]; then postgres_down; else stop_one "${2:?component}"; fi ;;
  restart)
    load_env
    case "${2:?component}" in
      postgres) postgres_down; postgres_up ;;
      *) stop_one "$2"; start_one "$2" ;;
    esac ;;
  kill) kill_one "${2:?component}" ;;
  clean)
    alive scheduler && die "still up: run 'scripts/stack.sh down' first"
    [ -f "$STACK/postgres.path" ] && rm -rf "$(cat "$STACK/postgres.path")"
    rm -rf "$STACK" ;;
  *) sed -n 2,27p "$0"; exit 2 ;;
esac
