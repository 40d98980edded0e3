#!/usr/bin/env bash
# Install the Debian packages Cueledger loads at run time (and, with "test", the browser for the e2e tests).
# Runs apt-get only for what is missing and only as root; otherwise prints the exact command and fails.
set -euo pipefail

case "${1:-runtime}" in
  runtime) wanted=(libfluidsynth3 libchromaprint1) ;;
  test) wanted=(libfluidsynth3 libchromaprint1 chromium chromium-driver) ;;
  *) echo "usage: $0 [runtime|test]" >&2; exit 2 ;;
esac

missing=()
for package in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# Debian's own Python makes virtualenvs only with python3-venv (ensurepip); other builds carry it themselves.
"${PYTHON:-python3}" -c "import ensurepip" 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Cueledger needs these Debian packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
