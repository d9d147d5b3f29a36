#!/usr/bin/env bash
# Set up a Debian 12 machine for TCV and run the demo or the test suite.
#
#   bash scripts/bootstrap.sh demo   # set up, then pack + extract the bundled cache
#   bash scripts/bootstrap.sh test   # set up, then lint and run the whole test suite
#   bash scripts/bootstrap.sh setup  # set up only
#
# As root (or with sudo).
# Idempotent: apt runs only for missing packages, the virtualenv is reused and
# re-installed only when setup.cfg changed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
venv=${VENV:-$here/.venv}
action=${1:-setup}

# Debian's own Python (3.11 on Debian 12): readable by unprivileged users too,
# which the rootless tests need.
python=${TCV_PYTHON:-/usr/bin/python3}

apt_packages=(
  python3 python3-venv python3-dev gcc git ca-certificates
  buildah podman skopeo runc uidmap fuse-overlayfs slirp4netns
  docker-registry busybox-static umockdev libamdhip64-5 debootstrap
)

say() { printf '==> %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: run as root (sudo bash scripts/bootstrap.sh $action)" >&2
    exit 3
  fi
}

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "apt packages present"
    return
  fi
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_venv() {
  if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv"
    "$python" -m venv "$venv"
  fi
  local stamp="$venv/.tcv-installed" want
  want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    say "virtualenv up to date"
    return
  fi
  say "pip install -e .[test]"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e ".[test]"
  echo "$want" >"$stamp"
}

setup() {
  need_root
  install_apt
  install_venv
}

demo() {
  local tcv="$venv/bin/tcv" image=localhost/tcv-demo/vector-add:latest dest gpu_args=()
  dest=$(mktemp -d "${TMPDIR:-/tmp}/tcv-demo-cache.XXXXXX")
  # A host without accelerators extracts as if it had an H100 (cuda:90).
  if [ "$("$tcv" gpus --json | "$venv/bin/python" -c 'import json,sys; print(len(json.load(sys.stdin)["gpus"]))')" = 0 ]; then
    gpu_args=(--gpu cuda:90)
    say "no accelerator found: extracting for ${gpu_args[*]}"
  fi
  say "tcv scan examples/vector-add-cache"
  "$tcv" scan examples/vector-add-cache
  say "tcv -c -i $image -d examples/vector-add-cache"
  "$tcv" -c -i "$image" -d examples/vector-add-cache
  say "tcv inspect containers-storage:$image"
  "$tcv" inspect "containers-storage:$image"
  say "tcv -e -i containers-storage:$image -d $dest ${gpu_args[*]} --verbose"
  "$tcv" -e -i "containers-storage:$image" -d "$dest" "${gpu_args[@]}" --verbose
  say "installed into $dest:"
  ls -1 "$dest"
}

run_tests() {
  say "ruff"
  "$venv/bin/ruff" check .
  "$venv/bin/ruff" format --check .
  say "pytest"
  # pytest's exit 5 (no tests collected) is a failure here like any other non-zero.
  "$venv/bin/python" -m pytest "$@"
}

case "$action" in
  setup) setup ;;
  demo) setup; demo ;;
  test) setup; shift; run_tests "$@" ;;
  *) echo "bootstrap: unknown action '$action' — use setup, demo or test" >&2; exit 3 ;;
esac
