#!/usr/bin/env bash
# The container image and the compose stack, built from this checkout and run (CI: the last
# step of .ci/run; `make container-check`). It fails (non-zero) when
#   - `python -m bot doctor` inside the image reports a problem,
#   - a console message in the image is not answered with a label,
#   - with compose.yaml's PostgreSQL: a console message is not in the database after the stack
#     went down (data volume kept) and up again;
#   - the bot on compose's model server (BACKEND=openai) does not answer with a label.
# Needs root on Debian/Ubuntu: podman, runc, debootstrap and podman-compose are apt-installed
# when missing. Settings (environment):
#   BASE_IMAGE      the image's base; default: a Debian bookworm made here with debootstrap
#                   (no registry needed), kept as localhost/debian-base:bookworm for next time
#   POSTGRES_IMAGE  default: a stand-in built from BASE_IMAGE (scripts/container-postgres.*);
#                   docker.io/library/postgres:16-bookworm where a registry is reachable
#   CONTAINER_RUNTIME  default runc (crun cannot set up cgroups in some sandboxes)
# The image is rebuilt every run; podman's layer cache keeps the llama.cpp compile (the
# longest step) until its version pin or flags change. Containers, pods and the test's
# volumes are removed at the end, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout=$PWD
logs=$checkout/build/container-logs
mkdir -p "$logs"
image=localhost/all-in-one-bot:check
project=aiob-check
work=$(mktemp -d)
export CONTAINERS_CONF=$work/containers.conf

apt_install() {
  echo "==> installing $* (apt)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
missing=()
for tool in podman runc debootstrap podman-compose; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi

# The runtime and ulimits for every podman call below, podman-compose's included.
cat >"$CONTAINERS_CONF" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
runtime = "${CONTAINER_RUNTIME:-runc}"
CONF

created_ca=""
cleanup() {
  set +e
  # -v: with their anonymous volumes (the image's /data of a container that mounts none).
  podman ps -aq --filter "label=io.podman.compose.project=$project" | xargs -r podman rm -f -v \
    >/dev/null
  if [ -f "$work/compose.yaml" ]; then
    (cd "$work" && podman-compose -p "$project" down -v >/dev/null 2>&1)
  fi
  podman volume ls --format '{{.Name}}' | grep "^${project}_" | xargs -r podman volume rm >/dev/null
  podman pod ls --format '{{.Name}}' | grep "^pod_${project}$" | xargs -r podman pod rm -f >/dev/null
  podman network exists "${project}_default" && podman network rm "${project}_default" >/dev/null
  [ -z "$created_ca" ] || rm -f "$checkout/local-ca.crt"
  [ -z "${password:-}" ] || sed -i "s/$password/***/g" "$logs"/compose*.log
  rm -rf "$work"
}
trap cleanup EXIT

# --- the base image ------------------------------------------------------------------------
base=${BASE_IMAGE:-localhost/debian-base:bookworm}
if [ -z "${BASE_IMAGE:-}" ] && ! podman image exists "$base"; then
  bash scripts/step.sh "Making a Debian bookworm base image with debootstrap (no registry needed)" \
    "2-5 minutes, once per machine" "$logs/debootstrap.log" -- sh -c "
      debootstrap --variant=minbase bookworm '$work/rootfs' http://deb.debian.org/debian &&
      tar -C '$work/rootfs' -c . | podman import - '$base'"
  rm -rf "$work/rootfs"
fi
# A TLS-inspecting proxy's CA (this CI's egress, some company networks): the build stages
# need it for pip's downloads (see the Containerfile).
if [ ! -f local-ca.crt ] && ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cat /usr/local/share/ca-certificates/*.crt >local-ca.crt
  created_ca=1
fi

# --- the images ----------------------------------------------------------------------------
bash scripts/step.sh "Building the bot's image (llama.cpp for a portable CPU baseline, the default model)" \
  "20-40 minutes on 2 cores the first time; a few minutes when the llama.cpp layer is cached" \
  "$logs/build.log" -- \
  podman build --format docker --build-arg BASE_IMAGE="$base" -t "$image" -f Containerfile .
postgres_image=${POSTGRES_IMAGE:-localhost/postgres-standin:15}
if [ -z "${POSTGRES_IMAGE:-}" ]; then
  bash scripts/step.sh "Building the PostgreSQL stand-in image" "1-2 minutes" \
    "$logs/postgres-build.log" -- podman build --build-arg BASE_IMAGE="$base" \
    -t "$postgres_image" -f scripts/container-postgres.Containerfile .
fi
echo "==> image size: $(podman image inspect "$image" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}')"

# --- the image alone: doctor, then one console message answered with its label ---------------
# --no-healthcheck: no health timer for these one-off runs (without systemd, podman would
# print an error about it on every run).
run() { podman run --rm --no-healthcheck "$@"; }
echo "==> python -m bot doctor (in the image)"
run "$image" doctor
echo "==> python -m bot doctor --quiet (the health check): silent, exit 0"
quiet=$(run "$image" doctor --quiet 2>&1)
[ -z "$quiet" ] || { echo "doctor --quiet printed: $quiet" >&2; exit 1; }
[ "$(run --entrypoint id "$image" -u)" != 0 ] || { echo "the image runs as root" >&2; exit 1; }

check_answer() {  # $1: the JSONL the console wrote; one answer, labelled positive
  python3 - "$1" <<'PY'
import json, sys
# podman-compose 1.0 writes its own lines to stdout too: the answers are the JSON objects.
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
answers = [json.loads(line) for line in lines if line.startswith("{")]
assert len(answers) == 1 and answers[0].get("reply"), f"no answer: {answers}"
answer = answers[0]
assert answer.get("sentiment") == "positive" and answer.get("neutral") is False, answer
print(f"    {answer['sentiment']} neutral={answer['neutral']} {answer['reply'][:70]!r}")
PY
}
message="I passed my driving test today, so happy!"
echo "==> one console message (in the image, SQLite)"
printf '%s\n' "$message" | run -i "$image" chat --jsonl --user image-check >"$work/image.jsonl"
check_answer "$work/image.jsonl"

# --- the compose stack: PostgreSQL, a message through the console, down and up again ---------
cp compose.yaml "$work/"
password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
cat >"$work/.env" <<ENV
POSTGRES_PASSWORD=$password
POSTGRES_IMAGE=$postgres_image
BOT_IMAGE=$image
ENV
compose() { (cd "$work" && podman-compose -p "$project" "$@"); }
wait_for_postgres() {
  for _ in $(seq 60); do
    if podman exec "${project}_postgres_1" pg_isready -q -h 127.0.0.1 -U bot -d bot; then
      return 0
    fi
    sleep 2
  done
  echo "PostgreSQL did not become ready" >&2
  podman logs "${project}_postgres_1" >&2 || true
  return 1
}
sql() {
  podman exec -e PGPASSWORD="$password" "${project}_postgres_1" \
    psql -h 127.0.0.1 -U bot -d bot -tA -F '|' -c "$1"
}
echo "==> compose: PostgreSQL up"
compose up -d postgres >"$logs/compose.log" 2>&1
wait_for_postgres
echo "==> compose: python -m bot doctor (the bot service, on PostgreSQL)"
# podman-compose 1.0 echoes each podman command, the password in it: its output goes to the
# log (the password masked at the end), and only the doctor's screen is shown.
compose run --rm -T bot doctor >"$work/doctor.txt" 2>&1
sed -n '/^python -m bot doctor/,/^No problems\|problem(s)/p' "$work/doctor.txt"
grep -q "postgresql://bot@postgres:5432/bot (postgresql) opens" "$work/doctor.txt"
echo "==> compose: one console message, stored in PostgreSQL"
printf '%s\n' "$message" | compose run --rm -T bot chat --jsonl --user compose-check \
  >"$work/compose.jsonl" 2>>"$logs/compose.log"
grep -v '^{' "$work/compose.jsonl" >>"$logs/compose.log" || true
check_answer "$work/compose.jsonl"
echo "==> compose: down (the data volume kept), up again"
compose down >>"$logs/compose.log" 2>&1
podman volume exists "${project}_pgdata"
compose up -d postgres >>"$logs/compose.log" 2>&1
wait_for_postgres
stored=$(sql "select t.content, m.label from turns t
  join users u on u.id = t.user_id join mood_events m on m.user_id = u.id
  where u.platform_user_id = 'compose-check' and t.role = 'user'")
echo "    stored: $stored"
[ "$stored" = "$message|positive" ] || { echo "the message is not in PostgreSQL" >&2; exit 1; }

# --- the opt-in model server (profile "server"; podman-compose 1.0 starts it by name) --------
echo "==> compose: model-server, and the bot on it with BACKEND=openai"
compose up -d model-server >>"$logs/compose.log" 2>&1
for _ in $(seq 90); do
  if podman exec "${project}_model-server_1" python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v1/models')" 2>/dev/null
  then break; fi
  sleep 2
done
printf '%s\n' "$message" | compose run --rm -T -e BACKEND=openai \
  -e OPENAI_BASE_URL=http://model-server:8000/v1 bot chat --jsonl --user server-check \
  >"$work/server.jsonl" 2>>"$logs/compose.log"
check_answer "$work/server.jsonl"
echo "==> the image and the compose stack work"
