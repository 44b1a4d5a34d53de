#!/usr/bin/env bash
# System packages the tests need: pdflatex + booktabs (tables compile into a paper) and pdffonts (no Type 3
# fonts in figures). Idempotent and instant when everything is there; otherwise Debian's packages.
set -euo pipefail
if command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1; then
    exit 0
fi
PACKAGES="texlive-latex-base texlive-latex-recommended poppler-utils"
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
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null || give_up "apt-get install failed"
command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null || give_up "still missing"
