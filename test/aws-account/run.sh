#!/usr/bin/env bash
# The emulated AWS account suite (npm run test:aws): a project-local virtualenv with pinned moto,
# cfn-lint and checkov; the stack synthesized with the emulated deployment's config; cfn-lint and
# checkov on that template (acknowledgements: infra/template-checks.yaml); then the vitest suite,
# whose global setup deploys the same cloud assembly into moto with `cdk deploy`.
# Never skipped: every missing prerequisite is an error with what to do about it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv-aws"
REQUIREMENTS="$ROOT/test/aws-account/requirements.txt"
started=$(date +%s)

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [[ -z "$PYTHON" ]]; then
  cat >&2 <<'EOF'
test:aws needs Python 3.9 or newer with the venv module (the emulated AWS account is moto, a
Python package, installed into .venv-aws/ by this script; nothing is installed globally).
  Debian/Ubuntu:  sudo apt-get install python3 python3-venv
  macOS:          brew install python@3.12
  Windows:        winget install Python.Python.3.12   (then run this script from WSL or Git Bash)
Or point PYTHON at an interpreter: PYTHON=/path/to/python3 npm run test:aws
EOF
  exit 2
fi
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "test:aws: $PYTHON has no venv/ensurepip module; install it (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
  exit 2
fi

# Reuse the virtualenv while the pinned requirements are unchanged.
want_hash="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$want_hash" ]]; then
  echo "test:aws: creating $VENV (moto, cfn-lint, checkov; pinned in test/aws-account/requirements.txt)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --requirement "$REQUIREMENTS"
  echo "$want_hash" >"$VENV/.requirements.sha256"
fi

export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
# Development only: TASKLEASE_AWS_REUSE_WORK=<dir> reruns the tests on an assembly synthesized and
# checked before (kept with TASKLEASE_AWS_KEEP_WORK=1). Never under CI.
if [[ -n "${TASKLEASE_AWS_REUSE_WORK:-}" && "${CI:-}" != "true" ]]; then
  WORK="$TASKLEASE_AWS_REUSE_WORK"
  echo "test:aws: reusing $WORK (no synth, no template checks)"
else
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/tasklease-aws-XXXXXX")"
  if [[ -z "${TASKLEASE_AWS_KEEP_WORK:-}" ]]; then trap 'rm -rf "$WORK"' EXIT; else echo "test:aws: keeping $WORK"; fi

  echo "test:aws: synthesizing the stack with the emulated deployment's config"
  npx tsx test/aws-account/prepare.ts "$WORK"
  # No AWS environment while synthesizing: the template stays account-agnostic, as `npm run synth`.
  if ! env -u AWS_ENDPOINT_URL TASKLEASE_CONFIG_FILE="$WORK/tasklease.config.yaml" \
    npx cdk synth --no-notices -q -o "$WORK/cdk.out" >"$WORK/synth.log" 2>&1; then
    cat "$WORK/synth.log" >&2
    echo "test:aws: cdk synth failed" >&2
    exit 1
  fi

  npx tsx test/aws-account/check-template.ts "$VENV" "$WORK/cdk.out/TaskLease.template.json"
fi

TASKLEASE_AWS_WORK="$WORK" TASKLEASE_AWS_VENV="$VENV" npx vitest run --config test/aws-account/vitest.config.ts "$@"
echo "test:aws: done in $(($(date +%s) - started)) s"
