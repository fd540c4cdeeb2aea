#!/usr/bin/env bash
# Build the Lambda package (one zip for the intake, republish and gateway functions) from this checkout:
# tmi/, adapters/, functions/, gateway/ and their dependencies as manylinux wheels for the Lambda runtime.
#
#   terraform/build-lambda-package.sh [OUTPUT_ZIP]     default: dist/tmi-lambda.zip
#
# Handlers inside the zip: functions.intake_handler.handler, functions.republish_handler.handler,
# gateway.lambda_handler.handler. Environment: LAMBDA_PYTHON_VERSION (3.11), LAMBDA_PLATFORM
# (manylinux2014_x86_64; use manylinux2014_aarch64 for arm64 functions).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/dist/tmi-lambda.zip}")
PYVER=${LAMBDA_PYTHON_VERSION:-3.11}
PLATFORM=${LAMBDA_PLATFORM:-manylinux2014_x86_64}
PY=${PYTHON:-python3}

BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT

# The project's runtime dependencies (not the dev extras), as binary wheels for the Lambda platform.
DEPS=$("$PY" - "$ROOT/pyproject.toml" <<'PYEOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
PYEOF
)
mapfile -t REQUIREMENTS <<<"$DEPS"
"$PY" -m pip install --quiet --target "$BUILD" --platform "$PLATFORM" --python-version "$PYVER" \
    --implementation cp --only-binary=:all: "${REQUIREMENTS[@]}" 2> >(grep -v "is ignored" >&2)
"$PY" -c "import sys; sys.path.insert(0, '$BUILD'); import boto3, pydicom, psycopg" 2>/dev/null \
    || echo "build-lambda-package: note: wheels are for $PLATFORM/py$PYVER; not importable here" >&2

for package in tmi adapters functions gateway; do
    cp -r "$ROOT/$package" "$BUILD/$package"
done
find "$BUILD" -name __pycache__ -type d -prune -exec rm -rf {} +

mkdir -p "$(dirname "$OUT")"
rm -f "$OUT"
(cd "$BUILD" && "$PY" -m zipfile -c "$OUT" .)
echo "$OUT"
