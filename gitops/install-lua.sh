#!/usr/bin/env bash
# Installs Debian's lua5.1 interpreter, which tests/gitops_health.rs runs the Argo CD health
# check with (Argo CD runs it in gopher-lua, a Lua 5.1 implementation). Does nothing when
# lua5.1 is already there; otherwise needs root and apt-get.
#
# Usage: gitops/install-lua.sh
set -euo pipefail
PROG=gitops/install-lua.sh

if command -v lua5.1 >/dev/null 2>&1; then
  exit 0
fi
if ((EUID != 0)) || ! command -v apt-get >/dev/null 2>&1; then
  echo "$PROG: lua5.1 is missing; as root: apt-get install -y --no-install-recommends lua5.1" >&2
  exit 1
fi
echo "$PROG: installing lua5.1 (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
# Without a package list (a fresh machine) the first install fails: update, then retry.
apt-get install -y -q --no-install-recommends lua5.1 >/dev/null ||
  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends lua5.1 >/dev/null; } ||
  { echo "$PROG: apt-get install lua5.1 failed" >&2; exit 1; }
command -v lua5.1 >/dev/null 2>&1 || { echo "$PROG: lua5.1 still missing after the install" >&2; exit 1; }
