# Sourced by scripts/setup.sh and tests/e2e/setup.sh: installs the Debian packages given
# that are not installed yet (extra apt-get options first, e.g. --no-install-recommends).
#   apt_install_missing [apt-get options…] -- package…
apt_install_missing() {
  local options=() missing=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do options+=("$1"); shift; done
  shift
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]} from Debian"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
  fi
}
