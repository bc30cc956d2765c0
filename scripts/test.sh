#!/usr/bin/env bash
# Builds if needed and runs every test: the C++ tests (CTest) and the Python parity tests.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build build --parallel "$(nproc)"

status=0
(cd build && ctest --output-on-failure --parallel "$(nproc)" --timeout 900) || status=1
python3 -m pytest -q tests/python || status=1
exit $status
