#!/usr/bin/env bash
# Creates, once, the Python venv with moto's S3-compatible server that
# tests/test_handler_bucket.c uploads to: scripts/s3-test-venv.sh DIR.
# Installs moto[server] from PyPI (a test tool, not the ML stack; the worker
# never needs Python). Needs python3-venv (scripts/install-deps.sh installs
# it) and network access to PyPI. Exits 1 with a clear message otherwise.
set -euo pipefail
dir=${1:?usage: scripts/s3-test-venv.sh DIR}
pin='moto[server]==5.2.5'
[ -f "$dir/.complete" ] && grep -qxF "$pin" "$dir/.complete" && exit 0
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3 || true)
if [ -z "$python" ]; then
  echo "s3-test-venv: no python3 found; install python3 and python3-venv (scripts/install-deps.sh)" >&2
  exit 1
fi
rm -rf "$dir"
if ! "$python" -m venv "$dir" >&2; then
  echo "s3-test-venv: '$python -m venv' failed; install python3-venv (scripts/install-deps.sh)" >&2
  exit 1
fi
if ! "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$pin" >&2; then
  echo "s3-test-venv: pip could not install $pin from PyPI (network access to pypi.org is needed once)" >&2
  exit 1
fi
echo "$pin" > "$dir/.complete"
