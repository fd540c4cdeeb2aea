#!/usr/bin/env bash
# LocalStack container init hook (ready stage): apply TMI's storage-policies with the same bootstrap the
# local stack uses, so the container matches moto/MinIO/AWS layouts. Mount the repository at $TMI_SRC
# (default /opt/tmi) and this folder at /etc/localstack/init/ready.d (see ../docker-compose.yml).
set -euo pipefail

if [[ "${TMI_BOOTSTRAP_ON_READY:-1}" == "0" ]]; then
    echo "tmi-storage: TMI_BOOTSTRAP_ON_READY=0, leaving storage to Terraform (terraform/examples/localstack)"
    exit 0
fi

TMI_SRC=${TMI_SRC:-/opt/tmi}
[[ -f "$TMI_SRC/adapters/bootstrap.py" ]] || { echo "tmi-storage: $TMI_SRC has no adapters/bootstrap.py" >&2; exit 1; }

# LocalStack's image has boto3; the bootstrap also needs pydantic-settings (TMI's settings object).
PY=${TMI_PYTHON:-python3}
DEPS=/tmp/tmi-bootstrap-deps
if ! PYTHONPATH="$DEPS" "$PY" -c "import boto3, pydantic_settings" 2>/dev/null; then
    "$PY" -m pip install -q --target "$DEPS" "pydantic-settings>=2.2" "boto3>=1.34"
fi

export PYTHONPATH="$DEPS:$TMI_SRC"
export AWS_ENDPOINT_URL=${AWS_ENDPOINT_URL:-http://localhost:4566}
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-test}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-test}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

cd "$TMI_SRC"
"$PY" -m adapters.bootstrap --json
echo "tmi-storage: storage-policies applied"
