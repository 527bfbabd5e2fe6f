"""A real one-node Slurm on 127.0.0.1 for the tests of `synthmix run --executor slurm`.

`scripts/start_slurm.sh <statedir>` runs a private munged, slurmctld and slurmd with every file under
`statedir` (nothing in /etc, /run or /var), on ports chosen here, and waits until the node is idle;
`scripts/stop_slurm.sh` stops them by their pid files. Starting takes about half a second once Debian's
`slurm-wlm` and `munge` are installed (.ci/run installs them). The tests never install anything: where Slurm
is missing or cannot start, `start` raises SlurmUnavailable with the reason, and the tests skip with it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
START = REPO / "scripts" / "start_slurm.sh"
STOP = REPO / "scripts" / "stop_slurm.sh"
TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here; the message says why and what would fix it."""


class Slurm:
    """A started one-node cluster: `env` is what a client needs (SLURM_CONF)."""

    def __init__(self, statedir: Path):
        self.statedir = statedir
        self.conf = statedir / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf)}

    def stop(self) -> None:
        subprocess.run(["bash", str(STOP), str(self.statedir)], capture_output=True, timeout=60, check=False)


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start(statedir: Path, timeout_s: float = 90) -> Slurm:
    """Start a one-node Slurm with its state in `statedir`, or raise SlurmUnavailable saying why not."""
    if os.name != "posix" or os.geteuid() != 0:
        raise SlurmUnavailable(
            "the one-node Slurm runs its daemons as root; these tests are not running as root"
        )
    missing = [tool for tool in TOOLS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        raise SlurmUnavailable(
            f"Slurm is not installed (missing {', '.join(missing)}): "
            "apt-get install -y --no-install-recommends slurm-wlm munge"
        )
    ctld, slurmd = _free_ports(2)
    env = {
        **os.environ,
        "PATH": f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin",
        "SLURM_CTLD_PORT": str(ctld),
        "SLURMD_PORT": str(slurmd),
        # at least 2 CPUs (config_overrides lets a 1-core runner say so): two 1-CPU jobs must be able to overlap
        "SLURM_CPUS": str(max(2, os.cpu_count() or 1)),
        "SLURM_READY_TIMEOUT": str(int(timeout_s / 2)),
    }
    try:
        done = subprocess.run(
            ["bash", str(START), str(statedir)], capture_output=True, text=True, env=env, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        Slurm(statedir).stop()
        raise SlurmUnavailable(
            f"start_slurm.sh did not finish in {timeout_s:.0f} s; logs in {statedir}/log"
        ) from None
    if done.returncode != 0:
        Slurm(statedir).stop()
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
        raise SlurmUnavailable(f"start_slurm.sh failed ({done.returncode}): {tail}; logs in {statedir}/log")
    return Slurm(statedir)
