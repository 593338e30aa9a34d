#!/usr/bin/env bash
# The container path as a user takes it, with Podman: builds the real Dockerfile and brings the
# real compose files up, with stand-ins for the images this machine cannot pull (made from
# Debian's own packages, see scripts/compose/). Checks, with docker-compose.yml: the healthchecks
# pass, the pull service completes, a chat run through port 8000 answers, its thread survives
# `down` and `up` (the SQLite volume written by the image's non-root user), and SIGTERM lets a
# running stream finish within stop_grace_period. With docker-compose.replicas.yml: runs made
# through the balancer are resumed through it after one replica is stopped.
#
#   bash scripts/compose-check.sh      # as root on Debian 12; needs target/debug/examples/mock_llm
#
# Installs podman, podman-compose, mmdebstrap and runc from apt. Images are kept between runs
# (remove them with `podman rmi`); the stacks and their volumes are removed at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/roomhost-compose.XXXXXX")"
MOCK="$ROOT/target/debug/examples/mock_llm"
note() { printf -- '--- compose-check: %s (%ss)\n' "$*" "$SECONDS"; }
fail() {
    echo "compose-check: FAILED: $*" >&2
    exit 1
}
[ -x "$MOCK" ] || fail "$MOCK is missing: cargo build --example mock_llm first"

note "packages"
need=()
for pkg in podman podman-compose netavark aardvark-dns mmdebstrap runc curl; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# crun fails here on RLIMIT_NPROC and on hybrid cgroups; runc with lowered limits works. This
# file is used instead of the system's, which is left alone.
export CONTAINERS_CONF="$WORK/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
[engine]
runtime = "runc"
EOF

P1=roomhost-check
P2=roomhost-check-replicas
compose1() { podman-compose -p "$P1" -f docker-compose.yml -f "$WORK/slow-llm.yml" "$@"; }
compose2() { podman-compose -p "$P2" -f docker-compose.replicas.yml "$@"; }
# Every volume the stacks' containers mount: the named ones and the anonymous ones the image's
# `VOLUME /data` gives each replica (which keeps its data in PostgreSQL).
stack_volumes() {
    podman ps -aq --filter "label=io.podman.compose.project=$1" \
        | xargs -r podman inspect -f '{{range .Mounts}}{{if .Name}}{{.Name}} {{end}}{{end}}'
}
# down_stack COMPOSE PROJECT SECONDS: stops and removes a stack with its volumes.
down_stack() {
    local volumes
    volumes="$(stack_volumes "$2")"
    "$1" down -t "$3" >/dev/null 2>&1
    # shellcheck disable=SC2086
    [ -z "${volumes// /}" ] || podman volume rm -f $volumes >/dev/null
}
cleanup() {
    set +e
    down_stack compose1 "$P1" 5
    down_stack compose2 "$P2" 5
    rm -rf "$WORK"
}
trap cleanup EXIT
# The mock answers slowly enough (a few seconds per run) that a stream is still going when its
# server is told to stop.
cat >"$WORK/slow-llm.yml" <<'EOF'
services:
  ollama:
    environment:
      MOCK_LLM_ARGS: "--words 120 --chunk-ms 15"
EOF

# debian_image NAME [PACKAGES]: a bookworm image from Debian's packages, unless NAME exists.
debian_image() {
    podman image exists "$1" && return 0
    mmdebstrap --quiet --variant=minbase ${2:+--include="$2"} bookworm "$WORK/base.tar" - \
        </etc/apt/sources.list.d/debian.sources
    podman import -q "$WORK/base.tar" "$1" >/dev/null
    rm -f "$WORK/base.tar"
}

note "base images (mmdebstrap)"
debian_image docker.io/library/debian:bookworm-slim
debian_image localhost/roomhost-bookworm-build:latest ca-certificates,gcc,libc6-dev,make,curl,git,pkg-config
debian_image localhost/roomhost-bookworm-standin:latest ca-certificates,curl,nginx-light,postgresql-15

note "stand-in images: rust:1.95-bookworm, ollama/ollama, nginx, postgres:15"
TOOLCHAIN="$(rustc --print sysroot)"
mkdir -p "$WORK/rust/toolchain" "$WORK/rust/ca" "$WORK/ollama"
cp -al "$TOOLCHAIN"/{bin,lib,libexec,etc} "$WORK/rust/toolchain/" 2>/dev/null \
    || cp -a "$TOOLCHAIN"/{bin,lib,libexec,etc} "$WORK/rust/toolchain/"
cp /usr/local/share/ca-certificates/*.crt "$WORK/rust/ca/" 2>/dev/null || true
podman build -q -t docker.io/library/rust:1.95-bookworm -f scripts/compose/rust.Containerfile "$WORK/rust" >/dev/null
cp "$MOCK" scripts/compose/ollama "$WORK/ollama/"
podman build -q -t docker.io/ollama/ollama:latest -f scripts/compose/ollama.Containerfile "$WORK/ollama" >/dev/null
podman build -q -t docker.io/library/nginx:latest -f scripts/compose/nginx.Containerfile scripts/compose >/dev/null
podman build -q -t docker.io/library/postgres:15 -f scripts/compose/postgres.Containerfile scripts/compose >/dev/null

# wait_healthy CONTAINER: runs its compose healthcheck until it passes (Podman runs healthchecks
# from systemd timers, which a container host without systemd lacks).
wait_healthy() {
    for _ in $(seq 1 120); do
        podman healthcheck run "$1" >/dev/null 2>&1 && return 0
        sleep 1
    done
    podman logs --tail 30 "$1" >&2 || true
    fail "$1 did not turn healthy within 120 s"
}

# chat URL THREAD RUN PROMPT: one run; prints its SSE stream, fails unless it finished.
chat() {
    local out
    out="$(curl -sS -N --max-time 120 -X POST "$1/rooms/parallelization/run" \
        -H 'Content-Type: application/json' \
        -d "{\"threadId\": \"$2\", \"runId\": \"$3\", \"prompt\": \"$4\"}")" || fail "run $3: curl failed"
    grep -q '"type":"RUN_FINISHED"' <<<"$out" || fail "run $3 did not finish: $(tail -c 600 <<<"$out")"
    grep -q '"type":"TEXT_MESSAGE_CONTENT"' <<<"$out" || fail "run $3 gave no answer text"
    printf '%s' "$out"
}

# exit_code CONTAINER: the exit code of its last run.
exit_code() { podman inspect -f '{{.State.ExitCode}}' "$1"; }

note "docker-compose.yml: build the real Dockerfile"
compose1 build roomhost
note "docker-compose.yml: up"
compose1 up -d
wait_healthy "${P1}_ollama_1"
# podman-compose 1.0 starts every service at once, without waiting for depends_on conditions: as
# docker compose would, the pull runs (again) once Ollama is healthy, and must succeed.
podman start -a "${P1}_ollama-pull_1" || fail "the ollama-pull service failed"
[ "$(exit_code "${P1}_ollama-pull_1")" = 0 ] || fail "the ollama-pull service failed"
wait_healthy "${P1}_roomhost_1"
URL=http://127.0.0.1:8000
THREAD="$(cat /proc/sys/kernel/random/uuid)"
chat "$URL" "$THREAD" check-run-1 "Write about renewable energy: Solar, Wind, Hydro" >/dev/null
owner="$(podman exec "${P1}_roomhost_1" stat -c %U /data/roomhost.db)"
[ "$owner" = roomhost ] || fail "/data/roomhost.db belongs to $owner, not the image's user roomhost"
note "chat through port 8000 answered; the database file belongs to roomhost"

GRACE="$(sed -n 's/^ *stop_grace_period: *\([0-9]*\)s$/\1/p' docker-compose.yml | head -1)"
[ -n "$GRACE" ] || fail "no stop_grace_period in seconds for roomhost in docker-compose.yml"
curl -sS -N --max-time 120 -X POST "$URL/rooms/parallelization/run" -H 'Content-Type: application/json' \
    -d "{\"threadId\": \"$THREAD\", \"runId\": \"check-run-2\", \"prompt\": \"Write about the sea: Waves, Tides, Currents\"}" \
    >"$WORK/draining.sse" &
CURL=$!
for _ in $(seq 1 100); do
    grep -q '"type":"RUN_STARTED"' "$WORK/draining.sse" && break
    sleep 0.1
done
grep -q '"type":"RUN_STARTED"' "$WORK/draining.sse" || fail "the second run did not start"
start=$SECONDS
# What `docker compose down` does with stop_grace_period (podman-compose 1.0 ignores the key).
podman stop -t "$GRACE" "${P1}_roomhost_1" >/dev/null
took=$((SECONDS - start))
wait "$CURL" || true
code="$(exit_code "${P1}_roomhost_1")"
[ "$code" = 0 ] || fail "roomhost exited $code on SIGTERM (137: killed after the grace period)"
[ "$took" -lt "$GRACE" ] || fail "roomhost took ${took}s to stop, past stop_grace_period ${GRACE}s"
grep -q '"type":"RUN_FINISHED"' "$WORK/draining.sse" || fail "the stream under way was cut on SIGTERM: $(tail -c 400 "$WORK/draining.sse")"
podman logs "${P1}_roomhost_1" 2>&1 | grep -q 'draining running streams runs=1' \
    || fail "the run was not in flight when SIGTERM came, so nothing was drained"
note "SIGTERM: the running stream finished and roomhost exited 0 in ${took}s (grace ${GRACE}s)"

compose1 down -t "$GRACE"
compose1 up -d
wait_healthy "${P1}_roomhost_1"
runs="$(curl -fsS "$URL/rooms/parallelization/threads/$THREAD")" || fail "the thread is gone after down/up"
for run in check-run-1 check-run-2; do
    grep -q "\"$run\"" <<<"$runs" || fail "run $run is gone after down/up: $runs"
done
note "the thread and its runs survived down and up"
down_stack compose1 "$P1" "$GRACE"

note "docker-compose.replicas.yml: PostgreSQL, two replicas, nginx"
compose2 build roomhost-1
compose2 up -d
wait_healthy "${P2}_postgres_1"
wait_healthy "${P2}_ollama_1"
podman start -a "${P2}_ollama-pull_1" || fail "the ollama-pull service failed"
# A replica that started before PostgreSQL answered exited; its restart policy brings it back.
wait_healthy "${P2}_roomhost-1_1"
wait_healthy "${P2}_roomhost-2_1"
ready=""
for _ in $(seq 1 60); do
    curl -fsS -o /dev/null "$URL/readyz" && ready=1 && break
    sleep 1
done
[ -n "$ready" ] || fail "the balancer did not answer /readyz on port 8000 within 60 s"
# The balancer takes turns: of two runs in a row, one is on each replica.
THREAD="$(cat /proc/sys/kernel/random/uuid)"
chat "$URL" "$THREAD" scale-run-1 "Write about renewable energy: Solar, Wind, Hydro" >"$WORK/run-1.sse"
chat "$URL" "$THREAD" scale-run-2 "Is Python or JavaScript better for web scraping?" >"$WORK/run-2.sse"
podman stop -t 40 "${P2}_roomhost-1_1" >/dev/null
for run in scale-run-1 scale-run-2; do
    # A client whose stream broke after its third event resumes through the balancer.
    resumed="$(curl -sS -N --max-time 60 "$URL/rooms/parallelization/runs/$run/events" \
        -H "Last-Event-ID: $run:2")" || fail "resuming $run: curl failed"
    grep -q "id: $run:3$" <<<"$resumed" || fail "$run resumed without its fourth event: $(head -c 400 <<<"$resumed")"
    if grep -q "id: $run:[012]$" <<<"$resumed"; then fail "$run resumed with events before Last-Event-ID"; fi
    grep -q '"type":"RUN_FINISHED"' <<<"$resumed" || fail "$run resumed without its end"
    [ "$(grep -c '^id: ' <<<"$resumed")" -eq "$(($(grep -c '^id: ' "$WORK/run-${run#scale-run-}.sse") - 3))" ] \
        || fail "$run resumed with a different number of events than it streamed"
done
note "both runs resumed through the balancer with roomhost-1 stopped"
down_stack compose2 "$P2" 40
note "passed"
