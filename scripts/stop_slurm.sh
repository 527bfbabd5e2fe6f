#!/usr/bin/env bash
# stop_slurm.sh <statedir> [--purge] — stop the slurmd, slurmctld and munged started by
# start_slurm.sh <statedir> (by their pid files only). --purge also deletes <statedir>.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 <statedir> [--purge]" >&2; exit 2; }
[ -d "$1" ] || exit 0
S=$(cd "$1" && pwd -P)

# jobs first, so that no slurmstepd / job process survives the daemons
if [ -f "$S/slurm.conf" ] && command -v scancel >/dev/null; then
  SLURM_CONF=$S/slurm.conf timeout 5 scancel --full --quiet -u root >/dev/null 2>&1 || true
fi
stop() {  # stop <pidfile>...: TERM them all at once, wait up to 10 s, then KILL what is left
  local f pid pids=() alive
  for f in "$@"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then kill "$pid" 2>/dev/null; pids+=("$pid"); fi
    rm -f "$f"
  done
  for _ in $(seq 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  return 0
}
# the Slurm daemons together (each takes 1.5-2 s), munged after them: they need it to shut down quickly
stop "$S/run/slurmd-localhost.pid" "$S/run/slurmctld.pid"
stop "$S/munge/munged.pid"
rm -f "$S/munge/munge.socket.2" "$S/munge/munge.socket.2.lock"
[ "${2:-}" = "--purge" ] && rm -rf "$S"
echo "[stop_slurm] stopped ($S)" >&2
