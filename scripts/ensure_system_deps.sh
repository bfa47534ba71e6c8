#!/usr/bin/env bash
# Install the Debian packages the set-up needs, only if missing.
# Fast no-op (one dpkg-query call) when everything is there.
set -euo pipefail

PKGS=(build-essential cmake python3-dev python3-venv git chromium
      liburdfdom-tools libsdformat-dev sdformat-sdf ignition-tools  # asset validators: check_urdf, ign sdf -k
      postgresql)  # the record tests' throwaway cluster (initdb/pg_ctl as the postgres user it creates)
# Node.js and npm come with the machine (node 20, npm 11); Debian's nodejs conflicts with them.

missing=()
for p in "${PKGS[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "ensure_system_deps: installing ${missing[*]}" >&2
  SUDO=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "ensure_system_deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [[ " ${missing[*]} " == *" postgresql "* && ! -e /etc/postgresql-common/createcluster.conf ]]; then
    # no system-wide cluster: the tests start their own in a temp dir
    "${SUDO[@]}" mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
fi

# cmake >= 3.21 is required by the rosidl/ament cmake code (Debian 12 ships 3.25).
ver=$(cmake --version | head -n1 | awk '{print $3}')
if ! printf '3.21\n%s\n' "$ver" | sort -V -C; then
  echo "ensure_system_deps: cmake $ver is too old (need >= 3.21)" >&2
  exit 1
fi

for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "ensure_system_deps: $tool is required (node-opcua interop tests)" >&2; exit 1; }
done
