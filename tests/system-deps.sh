#!/usr/bin/env bash
# System packages the tests need: pdflatex + booktabs (tables compile into a paper), pdffonts (no Type 3
# fonts in figures), and a one-node SLURM (slurmctld, slurmd, the client commands, munge) for the
# `--launcher slurm` tests, which start and stop its daemons themselves (tests/slurm/cluster.py).
# Idempotent and instant when everything is there; otherwise Debian's packages.
set -euo pipefail
PACKAGES=""
if ! { command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1; }; then
    PACKAGES="texlive-latex-base texlive-latex-recommended poppler-utils"
fi
if ! { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null; }; then
    PACKAGES="$PACKAGES slurmctld slurmd slurm-client munge"
fi
[ -z "$PACKAGES" ] && exit 0
give_up() {  # in CI the tests need them; elsewhere the tests that do skip, saying why
    echo "tests/system-deps.sh: $1; install $PACKAGES" >&2
    [ -z "${CI:-}" ] && exit 0 || exit 1
}
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || give_up "not root and no sudo"
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || give_up "apt-get update failed"
# policy-rc.d or no systemd: Debian's scripts may not start the daemons; the tests start their own
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null || give_up "apt-get install failed"
command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null || give_up "still missing"
command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null && command -v munged >/dev/null \
    || give_up "still missing"
