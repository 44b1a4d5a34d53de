"""A real one-node SLURM for the tests: munged, slurmctld and slurmd from Debian's packages, started in a
temporary folder with their own config (``SLURM_CONF``), and stopped again, leaving nothing running.

Nothing under /etc is changed: the daemons and the client commands (sbatch, squeue, scontrol) read the
config named by ``SLURM_CONF``, and munged listens on a socket of its own.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unavailable() -> str | None:
    """Why no SLURM can be started here, or None."""
    missing = [d for d in DAEMONS if not shutil.which(d)]
    if missing:
        return f"no {', '.join(missing)} on PATH (tests/system-deps.sh installs slurmctld slurmd slurm-client munge)"
    if os.geteuid() != 0:
        return "the SLURM daemons of the tests run as root"
    if not Path("/etc/munge/munge.key").is_file():
        return "no /etc/munge/munge.key (Debian's munge package makes it)"
    return None


class Cluster:
    """``with Cluster(tmp) as c:`` a one-node SLURM, partitions ``low`` (default) and ``high`` (preempts ``low``)."""

    def __init__(self, folder: Path, cpus: int | None = None) -> None:
        self.dir = folder
        self.cpus = cpus or os.cpu_count() or 1
        self.procs: list[subprocess.Popen] = []
        self.env: dict[str, str] = {}

    def __enter__(self) -> "Cluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for sub in ("state", "spool", "munge"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "munge", 0o755)  # munged wants others to reach its socket
        host = socket.gethostname().split(".")[0]
        values = {
            "HOST": host, "DIR": str(self.dir), "CPUS": str(self.cpus), "MEMORY": "1000",
            "CTLD_PORT": str(_free_port()), "SLURMD_PORT": str(_free_port()),
            "MUNGE_SOCKET": str(self.dir / "munge" / "munge.socket"),
        }
        text = (HERE / "slurm.conf.in").read_text()
        for key, value in values.items():
            text = text.replace(f"@{key}@", value)
        conf = self.dir / "slurm.conf"
        conf.write_text(text)
        self.env = {"SLURM_CONF": str(conf)}
        munge = self.dir / "munge"
        self._spawn(["munged", "--foreground", "--force", f"--socket={munge / 'munge.socket'}",
                     f"--pid-file={munge / 'munged.pid'}", f"--seed-file={munge / 'munged.seed'}",
                     f"--log-file={munge / 'munged.log'}"], "munged")
        self._wait(lambda: (munge / "munge.socket").exists(), "munged did not start", 10)
        self._spawn(["slurmctld", "-D", "-i", "-f", str(conf)], "slurmctld")
        self._wait(lambda: self.run("scontrol", "ping").returncode == 0, "slurmctld did not answer", 30)
        self._spawn(["slurmd", "-D", "-f", str(conf)], "slurmd")
        self._wait(lambda: "idle" in self.run("sinfo", "-h", "-o", "%t").stdout, "the node did not become idle", 30)

    def _spawn(self, argv: list[str], name: str) -> None:
        log = open(self.dir / f"{name}.out", "ab")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
                                           start_new_session=True))

    def _wait(self, ready, what: str, seconds: float) -> None:
        deadline = time.time() + seconds
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.time() > deadline:
                logs = "; ".join(f"{p.name}: {p.read_text()[-400:]}" for p in sorted(self.dir.glob("*.out")) + sorted(self.dir.glob("*.log")))
                raise RuntimeError(f"{what} within {seconds}s ({logs})")
            time.sleep(0.2)

    def run(self, *argv: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), env={**os.environ, **self.env}, cwd=self.dir, capture_output=True, text=True,
                              timeout=60, check=check)  # cwd: where sbatch writes slurm-JOB.out

    def jobs(self) -> dict[str, tuple[str, str]]:
        """Job id (``A_T`` for array tasks) -> (state, reason) of every job SLURM still knows."""
        out = self.run("squeue", "-h", "-o", "%i|%T|%r").stdout
        return {i: (s, r) for i, s, r in (line.split("|") for line in out.splitlines() if line)}

    def release(self, job: str) -> None:
        """A requeued job waits as PENDING (Reason=BeginTime) for about 150 s: start it now."""
        self.run("scontrol", "update", f"JobId={job}", "StartTime=now")

    def stop(self) -> None:
        """Cancel every job, stop the daemons (the ones started here, by their process ids), kill what is left."""
        if self.env and any(p.poll() is None for p in self.procs):
            self.run("scancel", "--full", "-u", "root")
            deadline = time.time() + 15
            while self.jobs() and time.time() < deadline:
                time.sleep(0.5)
        for p in reversed(self.procs):  # slurmd, slurmctld, munged
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        self.procs.clear()
