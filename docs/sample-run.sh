#!/usr/bin/env bash
# The README's "A real run": the local stack against the local arXiv- and
# OpenAI-compatible servers the tests use (an invented corpus, fixed latencies),
# one job submitted twice, everything stopped at the end. Nothing reaches the
# internet; every port is a free loopback port picked at start.
#
#   make .venv/.installed && docs/sample-run.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/.venv/bin"
work="$(mktemp -d)"
pids=()

stop() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap stop EXIT

free_port() {
    "$bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
arxiv_port="$(free_port)"
openai_port="$(free_port)"
health_port="$(free_port)"

cd "$repo"
"$bin/python" -m tests.support.fake_arxiv --port "$arxiv_port" --latency 0.2 >"$work/arxiv.log" 2>&1 &
pids+=($!)
"$bin/python" -m tests.support.fake_openai --port "$openai_port" --latency 0.5 >"$work/openai.log" 2>&1 &
pids+=($!)

export DATA_DIR="$work/data" HEALTH_PORT="$health_port" LOG_FORMAT=json \
    ARXIV_API_URL="http://127.0.0.1:$arxiv_port/api/query" \
    OPENAI_BASE_URL="http://127.0.0.1:$openai_port/v1" OPENAI_API_KEY=sk-local \
    LLM_MODEL=gpt-4o-mini
"$bin/research-arm" up >"$work/stack.log" 2>&1 &
pids+=($!)

# Ready: the worker consumes and its Redis and Qdrant answer.
for _ in $(seq 120); do
    curl -fs "http://127.0.0.1:$health_port/readyz" >/dev/null 2>&1 && break
    sleep 1
done
curl -fs "http://127.0.0.1:$health_port/readyz" >/dev/null || { cat "$work/stack.log" >&2; exit 1; }

query="retrieval augmented generation for question answering"
echo "\$ research-arm submit \"$query\" --max-papers 3 --from 2020-01-01 --category cs.CL --wait"
"$bin/research-arm" submit "$query" --max-papers 3 --from 2020-01-01 --category cs.CL --wait 2>&1
echo
echo "\$ research-arm submit \"$query\" --max-papers 3 --from 2020-01-01 --category cs.CL --wait"
"$bin/research-arm" submit "$query" --max-papers 3 --from 2020-01-01 --category cs.CL --wait 2>&1
