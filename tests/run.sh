#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv if needed, installs the project with
# its test and local extras (`local` runs a real model in tests/test_local_model.py), runs pytest.
# Extra arguments go to pytest (e.g. tests/run.sh -k streaming).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,local]"
exec .venv/bin/python -m pytest "$@"
