#!/usr/bin/env bash
# Proves that a fresh install needs no compiler: every requirement of the project (the torch
# that tests/run.sh pins, its dependencies, the dev extra and the build backend), with
# everything they pull in, comes as a wheel for CPython 3.12 and 3.13 (or the versions given)
# on Linux x86_64 with glibc 2.28 or newer.
#
#   bash tests/check_wheels.sh            # 3.12 and 3.13
#   bash tests/check_wheels.sh 3.11 3.13  # others
#
# `pip download --only-binary=:all:` into a temporary folder, removed at the end. It downloads
# torch's CUDA build and its CUDA libraries (about 3 GB for two versions; the HTTP cache is
# not used). pip evaluates environment markers for the Python that runs it, so each version
# runs its own interpreter (python3.12, or pyenv's) where there is one; otherwise python3 asks
# for that version's wheels, and the line says so. Exit status 1 when any version failed.
set -uo pipefail
cd "$(dirname "$0")/.."

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(3.12 3.13)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The requirements as pyproject.toml states them (tomllib: Python 3.11+).
python3 - "$work/requirements.txt" <<'EOF'
import re
import sys
import tomllib

with open("pyproject.toml", "rb") as f:
    data = tomllib.load(f)
project = data["project"]
# The torch that tests/run.sh and the README pin, as a user installs it.
torch = re.search(r"torch==[0-9.]+", open("tests/run.sh").read()).group(0)
lines = [torch, *data["build-system"]["requires"], *project["dependencies"],
         *project["optional-dependencies"]["dev"]]
with open(sys.argv[1], "w") as out:
    out.write("\n".join(lines) + "\n")
EOF

interpreter() {  # a python of that version, if this machine has one
  local version=$1 candidate
  if command -v "python$version" >/dev/null && "python$version" -c "" 2>/dev/null; then
    echo "python$version"
    return
  fi
  if command -v pyenv >/dev/null; then
    for candidate in "$(pyenv root)"/versions/"$version".*/bin/python"$version"; do
      [ -x "$candidate" ] && echo "$candidate"
    done | sort -V | tail -n 1
  fi
}

# Every manylinux tag up to glibc 2.28 (torch's own) and the legacy names: pip does not widen
# manylinux_2_28 to the older ones by itself (NCCL, for one, is manylinux_2_18 only).
platforms=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for minor in $(seq 28 -1 5); do
  platforms+=(--platform "manylinux_2_${minor}_x86_64")
done

failed=0
for version in "${versions[@]}"; do
  python=$(interpreter "$version")
  how="its own interpreter $python"
  target=()
  if [ -z "$python" ]; then
    python=python3
    how="python3 asking for $version's wheels (markers evaluated for $(python3 -V))"
    target=(--python-version "$version" --implementation cp --abi "cp${version/./}")
  fi
  log="$work/pip-$version.log"
  if "$python" -m pip download --no-cache-dir --only-binary=:all: "${platforms[@]}" "${target[@]}" \
      --dest "$work/wheels" --requirement "$work/requirements.txt" >"$log" 2>&1; then
    names=$(sed -n 's/^Successfully downloaded //p' "$log")
    torch=$(cd "$work/wheels" && ls torch-*"cp${version/./}"*.whl 2>/dev/null)
    echo "Python $version: OK, all $(wc -w <<<"$names") distributions are wheels ($how); ${torch:-no torch wheel?}"
  else
    failed=1
    echo "Python $version: FAILED ($how):"
    grep -E "ERROR|No matching distribution|Could not find" "$log" | head -n 20
  fi
done
exit "$failed"
