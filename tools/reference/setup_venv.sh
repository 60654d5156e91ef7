#!/usr/bin/env bash
# Creates the ignored reference venv (tools/reference/.venv) with the pinned
# PyPI torch/diffusers/transformers stack used to generate golden outputs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Python >= 3.12 (numpy 2.5). Honour $PYTHON, else the first 3.12+ found.
py=${PYTHON:-}
if [ -z "$py" ]; then
  for c in python3.13 python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
    "$c" -c "import sys; assert sys.version_info >= (3, 12)" >/dev/null 2>&1 && { py=$c; break; }
  done
fi
[ -n "$py" ] || { echo "setup_venv.sh: needs Python >= 3.12 (set PYTHON)" >&2; exit 1; }
[ -x "$here/.venv/bin/python" ] || "$py" -m venv "$here/.venv"
"$here/.venv/bin/pip" install -q --upgrade pip
"$here/.venv/bin/pip" install -q -r "$here/requirements.txt"
"$here/.venv/bin/pip" install -q --no-deps -r "$here/requirements-nodeps.txt"
echo "reference venv ready: $here/.venv"
