#!/usr/bin/env bash
# stop_slurm.sh <statedir> [--purge] — stop the slurmd, slurmctld and munged started by
# start_slurm.sh <statedir> (by their pid files only). --purge also deletes <statedir>.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 <statedir> [--purge]" >&2; exit 2; }
[ -d "$1" ] || exit 0
S=$(cd "$1" && pwd -P)

stop() {  # stop <pidfile>: TERM, wait up to 10 s, then KILL
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$f"
}
# jobs first, so that no slurmstepd / job process survives the daemons
if [ -f "$S/slurm.conf" ] && command -v scancel >/dev/null; then
  SLURM_CONF=$S/slurm.conf timeout 5 scancel --full --quiet -u root >/dev/null 2>&1 || true
fi
stop "$S/run/slurmd-localhost.pid"
stop "$S/run/slurmctld.pid"
stop "$S/munge/munged.pid"
rm -f "$S/munge/munge.socket.2" "$S/munge/munge.socket.2.lock"
[ "${2:-}" = "--purge" ] && rm -rf "$S"
echo "[stop_slurm] stopped ($S)" >&2
