#!/usr/bin/env bash
# Build ros2_ws/src/cell_interfaces with plain cmake and install it into the venv prefix
# (the ros-jazzy-* wheels' prefix). Skipped when the sources are unchanged since the
# last successful build (content-hash stamp inside the venv).
# Plain cmake with the ament_cmake + rosidl wheels: AMENT_PREFIX_PATH and CMAKE_PREFIX_PATH are
# the venv (typesupport lookup), and the typesupport .so files are found through the
# LD_LIBRARY_PATH that the wheels' bootstrapper sets to <venv>/lib.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
VENV_ABS=$(cd "$VENV" && pwd)
SRC=ros2_ws/src/cell_interfaces
BUILD="$VENV_ABS/.build/cell_interfaces"
STAMP="$VENV_ABS/.stamp-interfaces"

unset _ROS_WHEELS_BOOTSTRAP_COMPLETE PYTHONPATH PYTHONHOME CMAKE_PREFIX_PATH
log() { printf 'build_interfaces: %s\n' "$*" >&2; }

hash=$(scripts/stamp.sh "$(cat "$VENV_ABS/.stamp-deps" 2>/dev/null)" "$SRC" scripts/build_interfaces.sh)
if [[ "$(cat "$STAMP" 2>/dev/null)" == "$hash" ]]; then
  exit 0
fi
rm -f "$STAMP"

# Remove what the previous build installed (renamed/deleted interfaces must not linger).
if [[ -f "$BUILD/install_manifest.txt" ]]; then
  xargs -d '\n' rm -f < "$BUILD/install_manifest.txt"
fi

log "cmake build of $SRC into $VENV_ABS"
export AMENT_PREFIX_PATH="$VENV_ABS"   # typesupport lookup during generation
export VIRTUAL_ENV="$VENV_ABS"
export PATH="$VENV_ABS/bin:$PATH"
LOG="$BUILD.log"
mkdir -p "$BUILD"
t0=$SECONDS
if ! {
  cmake -S "$SRC" -B "$BUILD" \
    -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$VENV_ABS" \
    -DCMAKE_INSTALL_PREFIX="$VENV_ABS" \
    -DPython3_EXECUTABLE="$VENV_ABS/bin/python" \
    -DBUILD_TESTING=OFF &&
  cmake --build "$BUILD" -j "$(nproc)" &&
  cmake --install "$BUILD"
} > "$LOG" 2>&1; then
  tail -n 60 "$LOG" >&2
  log "FAILED (full log: $LOG)"
  exit 1
fi

# Smoke check: the generated Python types import and their typesupport loads.
"$VENV_ABS/bin/python" -c 'from cell_interfaces.msg import DeviceState; from cell_interfaces.srv import DeviceCommand
from cell_interfaces.action import RunCycle
from rclpy.type_support import check_for_type_support as c
[c(t) for t in (DeviceState, DeviceCommand, RunCycle)]'
printf '%s\n' "$hash" > "$STAMP"
log "done in $((SECONDS - t0)) s"
