#!/usr/bin/env bash
# Set up a Debian 12 machine for TCV and run the demo or the test suite.
#
#   bash scripts/bootstrap.sh demo   # set up to run tcv, then pack + extract the bundled cache
#   bash scripts/bootstrap.sh test   # set up with the test extras, then lint and run the suite
#   bash scripts/bootstrap.sh setup  # set up with the test extras only (a development machine)
#
# As root (or with sudo).
# Idempotent: apt runs only for missing packages, the virtualenv is reused and
# re-installed only when setup.cfg changed or more extras are wanted. tcv and
# tcv-build are linked into /usr/local/bin (never over a file that is not ours).
# Debian's docker-registry package (the tests start their own registry on
# 127.0.0.1) is installed with its service disabled and stopped.
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
  local missing=() policy=/usr/sbin/policy-rc.d ours=""
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    say "apt packages present"
    return
  fi
  say "installing ${missing[*]}"
  # No service may start while installing (docker-registry's would listen on
  # port 5000 on every interface): policy-rc.d exit 101 is Debian's way to say so.
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { [ -z "$ours" ] || rm -f "$policy"; exit 1; }
  [ -z "$ours" ] || rm -f "$policy"
}

# The tests start their own registries on 127.0.0.1; the package's service must
# be neither running nor enabled (on systemd and on sysvinit alike).
quiet_registry_service() {
  local unit=docker-registry.service
  if [ -d /run/systemd/system ] && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" >/dev/null 2>&1 || true
  fi
  if [ -L "/etc/systemd/system/multi-user.target.wants/$unit" ]; then
    say "disabling the docker-registry service (the tests run their own registry)"
    if [ -d /run/systemd/system ]; then
      systemctl disable "$unit" >/dev/null 2>&1 || true
    else
      deb-systemd-helper disable "$unit" >/dev/null 2>&1 || true
    fi
    rm -f "/etc/systemd/system/multi-user.target.wants/$unit"
  fi
  if compgen -G "/etc/rc[2-5].d/S*docker-registry" >/dev/null; then
    update-rc.d docker-registry disable >/dev/null 2>&1 || true
  fi
  if [ -x /etc/init.d/docker-registry ] && [ ! -d /run/systemd/system ]; then
    /etc/init.d/docker-registry status >/dev/null 2>&1 &&
      /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
  fi
}

# install_venv EXTRAS: "" for what running tcv needs, "test" for the test suite too.
install_venv() {
  local extras=$1 spec=. stamp="$venv/.tcv-installed" want have=""
  if [ ! -x "$venv/bin/python" ]; then
    say "creating virtualenv $venv"
    "$python" -m venv "$venv"
  fi
  want=$(cat setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)
  [ ! -f "$stamp" ] || have=$(cat "$stamp")
  # A venv with the test extras also serves the demo; not the other way round.
  if [ "$have" = "$want test" ] || { [ -z "$extras" ] && [ "$have" = "$want" ]; }; then
    say "virtualenv up to date"
    return
  fi
  [ -z "$extras" ] || spec=".[$extras]"
  say "pip install -e $spec"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -e "$spec"
  echo "$want${extras:+ $extras}" >"$stamp"
}

# tcv and tcv-build on every login shell's PATH: links in /usr/local/bin (or
# $TCV_BIN_DIR) to this venv's scripts. A file there that is not such a link is
# left alone, with a note.
link_commands() {
  local name target link bindir=${TCV_BIN_DIR:-/usr/local/bin}
  mkdir -p "$bindir"
  for name in tcv tcv-build; do
    target="$venv/bin/$name" link="$bindir/$name"
    if [ -L "$link" ] || [ ! -e "$link" ]; then
      [ "$(readlink "$link" 2>/dev/null)" = "$target" ] || ln -sfn "$target" "$link"
    else
      say "$link exists and is not a link: leaving it; run $target instead"
    fi
  done
}

setup() {
  need_root
  install_apt
  quiet_registry_service
  install_venv "$1"
  link_commands
}

demo() {
  local tcv="$venv/bin/tcv" image=localhost/tcv-demo/vector-add:latest gpu_args=()
  # One place, reused by every run (a re-run finds the kernel already present).
  local dest=${TCV_DEMO_DEST:-$here/.tcv-demo/cache}
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
  say "installed into $dest (the image stays in local storage as $image):"
  ls -1 "$dest"
}

run_tests() {
  say "ruff"
  "$venv/bin/ruff" check .
  "$venv/bin/ruff" format --check .
  say "mypy"
  "$venv/bin/mypy"
  say "pytest"
  # pytest's exit 5 (no tests collected) is a failure here like any other non-zero.
  "$venv/bin/python" -m pytest "$@"
}

case "$action" in
  setup) setup test ;;
  demo) setup ""; demo ;;
  test) setup test; shift; run_tests "$@" ;;
  *) echo "bootstrap: unknown action '$action' — use setup, demo or test" >&2; exit 3 ;;
esac
