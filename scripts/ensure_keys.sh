#!/usr/bin/env bash
# The demo cell's trust list and per-principal keys (issue 12), created once in the venv
# (<venv>/var/aseptic_cell/security; never in git): `python -m aseptic_cell.security init`.
# The cell's Ed25519 record key (record_seal.key/.pub, issue 15: signed checkpoints of the batch
# record) is created in the same directory (aseptic_cell.records.seal.init_seal_key).
# Idempotent: existing keys are kept. A site creates its own (README "Command plane security").
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE PYTHONPATH PYTHONHOME
dir=$("$VENV/bin/python" -c 'from aseptic_cell.security import default_security_dir as d; print(d())')
if [[ ! -f "$dir/trust.yaml" ]]; then
  "$VENV/bin/python" -m aseptic_cell.security init "$dir"
else  # adds the principals a newer version knows (e.g. the device nodes' event keys), keeps the rest
  "$VENV/bin/python" -m aseptic_cell.security init "$dir" >/dev/null
fi
"$VENV/bin/python" -c 'import sys; from aseptic_cell.records.seal import main; sys.exit(main(["init", sys.argv[1]]))' "$dir" >/dev/null
