#!/usr/bin/env bash
# System packages the tests need: pdflatex + booktabs (tables compile into a paper) and pdffonts (no Type 3
# fonts in figures). Idempotent and instant when everything is there; otherwise Debian's packages.
set -euo pipefail
if command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "tests/system-deps.sh: not root and no sudo: install texlive-latex-base texlive-latex-recommended poppler-utils" >&2; exit 1; }
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends texlive-latex-base texlive-latex-recommended poppler-utils >/dev/null
command -v pdflatex >/dev/null && command -v pdffonts >/dev/null && kpsewhich booktabs.sty >/dev/null
