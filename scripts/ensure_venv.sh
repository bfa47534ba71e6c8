#!/usr/bin/env bash
# Create or refresh the project venv (default .venv) idempotently.
#
#   1. venv from the machine's python3 (recreated if that interpreter changed)
#   2. pinned dependencies: requirements.txt + requirements-lock.txt (constraints)
#   3. editable install of aseptic_cell (pip install -e .; builds the C extension), plus
#      symlinks for setup.py's data_files (share/...), which editable installs skip
#
# Each step is skipped when the content hash of its inputs matches the stamp left by
# its last successful run (stamps live inside the venv, so `rm -rf .venv` resets all).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
# Build tooling pins (not in the lock file: pip freeze ignores them).
TOOLING=(pip==26.3 setuptools==84.2.1 wheel==0.48.0)

# Never inherit another venv's / a sourced ROS installation's environment.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE PYTHONPATH PYTHONHOME AMENT_PREFIX_PATH CMAKE_PREFIX_PATH VIRTUAL_ENV

log() { printf 'ensure_venv: %s\n' "$*" >&2; }
# This machine's pip.conf lists local file:// indexes that lack most projects; pip warns
# once per project. Drop that noise, keep everything else (pip's exit status is kept).
quiet_pip() { { "${PIP[@]}" "$@" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }

base_py=$(command -v "$PYTHON") || { log "no $PYTHON on PATH"; exit 1; }
base_id=$("$base_py" -c 'import sys; print(sys.version.split()[0], sys.base_prefix)')

# --- 1. the venv itself --------------------------------------------------------
if [[ -f "$VENV/.stamp-python" && "$(cat "$VENV/.stamp-python")" != "$base_id" ]] ||
   ! "$VENV/bin/python" -c '' >/dev/null 2>&1; then
  log "creating $VENV from $base_py ($base_id)"
  rm -rf "$VENV"
  "$base_py" -m venv "$VENV"
  printf '%s\n' "$base_id" > "$VENV/.stamp-python"
fi
[[ -f "$VENV/.stamp-python" ]] || printf '%s\n' "$base_id" > "$VENV/.stamp-python"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

# --- 2. pinned dependencies ----------------------------------------------------
deps_hash=$(scripts/stamp.sh "$base_id ${TOOLING[*]}" requirements.txt requirements-lock.txt scripts/ensure_venv.sh)
if [[ "$(cat "$VENV/.stamp-deps" 2>/dev/null)" != "$deps_hash" ]]; then
  log "installing pinned dependencies"
  rm -f "$VENV/.stamp-deps" "$VENV/.stamp-pkg"
  quiet_pip install -q "${TOOLING[@]}"
  quiet_pip install -q -r requirements.txt -c requirements-lock.txt
  printf '%s\n' "$deps_hash" > "$VENV/.stamp-deps"
fi

# --- 3. editable install of aseptic_cell ---------------------------------------
# Inputs: build scripts, the C extension sources and the *list* of data files (they are
# symlinked, so content edits need nothing).
data_list=$(ls -1d resource/* launch/* config/*.yaml config/recipes/*.yaml 2>/dev/null || true)
pkg_hash=$(scripts/stamp.sh "$deps_hash $data_list" setup.py setup.cfg pyproject.toml \
  scripts/link_data_files.py aseptic_cell/motion/src)
if [[ "$(cat "$VENV/.stamp-pkg" 2>/dev/null)" != "$pkg_hash" ]]; then
  log "pip install -e . (aseptic_cell)"
  rm -f "$VENV/.stamp-pkg"
  # Quiet on success (setuptools prints long editable-mode notices); full log on failure.
  if ! "${PIP[@]}" install --no-build-isolation -c requirements-lock.txt -e . > "$VENV/.pip-install-e.log" 2>&1; then
    cat "$VENV/.pip-install-e.log" >&2
    log "pip install -e . FAILED"
    exit 1
  fi
  "$VENV/bin/python" scripts/link_data_files.py "$VENV"
  printf '%s\n' "$pkg_hash" > "$VENV/.stamp-pkg"
fi

# --- 4. npm packages (node-opcua for the OPC UA interop tests) -------------------
if [[ -f package.json ]]; then
  npm_hash=$(scripts/stamp.sh "$(node --version 2>/dev/null)" package.json package-lock.json)
  if [[ "$(cat "$VENV/.stamp-npm" 2>/dev/null)" != "$npm_hash" || ! -d node_modules ]]; then
    log "npm install (package.json)"
    rm -f "$VENV/.stamp-npm"
    if [[ -f package-lock.json ]]; then npm_cmd=(npm ci); else npm_cmd=(npm install); fi
    if ! "${npm_cmd[@]}" --no-audit --no-fund --loglevel=error > "$VENV/.npm-install.log" 2>&1; then
      cat "$VENV/.npm-install.log" >&2
      log "npm install FAILED"
      exit 1
    fi
    printf '%s
' "$npm_hash" > "$VENV/.stamp-npm"
  fi
fi
# the companion NodeSets (node-opcua-nodesets) as an asyncua cache: ~5 s once, then each OPC UA
# server start adds ~0.5 s of CPU instead (aseptic_cell/opcua/nodesets.py)
if [[ -d node_modules/node-opcua-nodesets ]]; then
  "$VENV/bin/python" -m aseptic_cell.opcua.nodesets --ensure --quiet \
    || log "companion NodeSet cache not built (the first OPC UA server start builds it)"
fi

# --- 5. colcon, in its own venv (colcon-core pins an older setuptools than ours) ---------
# Used by tests/ros/test_colcon.py (colcon build of ros2_ws/) through $VENV/colcon/bin/colcon.
COLCON_PINS=(colcon-common-extensions==0.3.0 colcon-core==0.21.3)
colcon_hash=$(scripts/stamp.sh "$base_id ${COLCON_PINS[*]}" scripts/ensure_venv.sh)
if [[ "$(cat "$VENV/.stamp-colcon" 2>/dev/null)" != "$colcon_hash" ]]; then
  log "colcon venv ($VENV/colcon)"
  rm -rf "$VENV/colcon" "$VENV/.stamp-colcon"
  "$base_py" -m venv "$VENV/colcon"
  CPIP=("$VENV/colcon/bin/python" -m pip --disable-pip-version-check)
  { "${CPIP[@]}" install -q "${COLCON_PINS[@]}" 2>&1; } | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  "$VENV/colcon/bin/colcon" --help > /dev/null
  printf '%s\n' "$colcon_hash" > "$VENV/.stamp-colcon"
fi
