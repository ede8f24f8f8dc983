#!/usr/bin/env bash
# Submit a research job with nothing but redis-cli, and print its result.
# This is the whole wire contract an orchestrator in any language needs:
# LPUSH a Celery protocol-2 message on the list `research`, then read the
# JSON result under `celery-task-meta-<job id>`.
#
#   REDIS_URL=redis://127.0.0.1:6379/0 ./submit-with-redis-cli.sh '{"query": "graph neural networks"}'
set -euo pipefail
request=${1:?usage: submit-with-redis-cli.sh REQUEST_JSON}
redis_url=${REDIS_URL:?set REDIS_URL}
redis_cli=${REDIS_CLI:-redis-cli}

job_id=$(cat /proc/sys/kernel/random/uuid)
# The body is [args, kwargs, embed]; research.execute takes kwargs {"request": {...}} only.
body=$(printf '[[], {"request": %s}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]' \
  "$request" | base64 | tr -d '\n')
message=$(cat <<JSON
{"body": "$body",
 "content-encoding": "utf-8",
 "content-type": "application/json",
 "headers": {"lang": "py", "task": "research.execute", "id": "$job_id", "root_id": "$job_id",
             "parent_id": null, "group": null, "retries": 0, "eta": null, "expires": null,
             "timelimit": [null, null], "argsrepr": "()", "kwargsrepr": "{'request': ...}",
             "origin": "redis-cli"},
 "properties": {"correlation_id": "$job_id", "reply_to": "", "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": "research"},
                "priority": 0, "body_encoding": "base64", "delivery_tag": "$job_id"}}
JSON
)
"$redis_cli" -u "$redis_url" LPUSH research "$message" >/dev/null
echo "job $job_id" >&2

# The result backend keeps {"status": ..., "result": ..., "task_id": ...} under this key.
for _ in $(seq 1 ${WAIT_SECONDS:-120}0); do
  meta=$("$redis_cli" -u "$redis_url" --raw GET "celery-task-meta-$job_id")
  case "$meta" in
    *'"status": "SUCCESS"'*|*'"status": "FAILURE"'*) echo "$meta"; exit 0 ;;
  esac
  sleep 0.1
done
echo "no result for $job_id yet" >&2
exit 1
