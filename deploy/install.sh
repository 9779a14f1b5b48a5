#!/usr/bin/env bash
# Installs studio-runner on a systemd machine: the one binary, a config file, a system user and
# the hardened unit, then enables the unit. Safe to run again (upgrades the binary and the unit,
# never overwrites /etc/studio-runner/config.yaml or env).
#
#   sudo deploy/install.sh [--binary dist/studio-runner] [--prefix /usr/local] [--no-enable] [--start]
#                          [--allowed-signers FILE [--signer ID]]
#   DESTDIR=/tmp/stage deploy/install.sh     # stage into a directory: no user, no systemctl
# From an unpacked release archive, the files are first checked against its SHA256SUMS, and its
# signature against your allowed-signers file (ssh-keygen -Y verify; nothing is fetched).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix=/usr/local
binary=""
enable=1
start=0
signers=""
signer="release@studio-runner"
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a directory}"; shift 2 ;;
    --prefix=*) prefix="${1#*=}"; shift ;;
    --binary) binary="${2:?--binary needs a file}"; shift 2 ;;
    --binary=*) binary="${1#*=}"; shift ;;
    --no-enable) enable=0; shift ;;
    --allowed-signers) signers="${2:?--allowed-signers needs a file}"; shift 2 ;;
    --allowed-signers=*) signers="${1#*=}"; shift ;;
    --signer) signer="${2:?--signer needs an identity}"; shift 2 ;;
    --signer=*) signer="${1#*=}"; shift ;;
    --start) start=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
destdir="${DESTDIR:-}"

# A release archive carries SHA256SUMS of its files (and SHA256SUMS.sig when it was signed).
if [ -f "$here/SHA256SUMS" ]; then
  if [ -f "$here/SHA256SUMS.sig" ] && [ -n "$signers" ]; then
    ssh-keygen -q -Y verify -f "$signers" -I "$signer" -n studio-runner-release -s "$here/SHA256SUMS.sig" \
      <"$here/SHA256SUMS" >/dev/null || { echo "install.sh: the release signature does not verify with $signers" >&2; exit 1; }
    echo "signature of SHA256SUMS verified ($signer)"
  elif [ -n "$signers" ]; then
    echo "install.sh: --allowed-signers given but this release is not signed (no SHA256SUMS.sig)" >&2
    exit 1
  fi
  (cd "$here" && sha256sum --quiet --strict -c SHA256SUMS) || { echo "install.sh: files do not match SHA256SUMS" >&2; exit 1; }
  echo "files match SHA256SUMS"
fi
if [ -z "$binary" ]; then
  for candidate in "$here/../dist/studio-runner" "$here/studio-runner" "$here/../studio-runner"; do
    if [ -x "$candidate" ]; then binary="$candidate"; break; fi
  done
fi
[ -n "$binary" ] && [ -x "$binary" ] || { echo "install.sh: no studio-runner binary found (build it with 'npm run build', or pass --binary)" >&2; exit 1; }
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
  exit 1
fi

user=studio-runner
bindir="$prefix/bin"
etc="$destdir/etc/studio-runner"
unitdir="$destdir/etc/systemd/system"

# The binary: written beside the old one, then renamed over it, so a running runner keeps its file.
install -d -m 0755 "$destdir$bindir"
install -m 0755 "$binary" "$destdir$bindir/.studio-runner.new"
mv -f "$destdir$bindir/.studio-runner.new" "$destdir$bindir/studio-runner"
echo "installed $bindir/studio-runner"

# Configuration: the example is refreshed; the admin's files are created once and then left alone.
install -d -m 0750 "$etc"
install -m 0644 "$here/config.example.yaml" "$etc/config.example.yaml"
if [ ! -e "$etc/config.yaml" ]; then
  install -m 0640 "$here/config.example.yaml" "$etc/config.yaml"
  echo "created /etc/studio-runner/config.yaml (edit it)"
fi
if [ ! -e "$etc/env" ]; then
  install -m 0600 /dev/null "$etc/env"
  echo "# Secrets as environment variables, e.g. AMQP_URL=amqp://user:password@host:5672/%2f" >"$etc/env"
fi

# The unit, pointing at the binary where this prefix put it.
install -d -m 0755 "$unitdir"
unit="$here/systemd/studio-runner.service"
[ -f "$unit" ] || unit="$here/studio-runner.service" # a release archive keeps it beside the binary
sed "s|^ExecStart=/usr/local/bin/studio-runner |ExecStart=$bindir/studio-runner |" "$unit" >"$unitdir/.studio-runner.service.new"
chmod 0644 "$unitdir/.studio-runner.service.new"
mv -f "$unitdir/.studio-runner.service.new" "$unitdir/studio-runner.service"
echo "installed /etc/systemd/system/studio-runner.service"

if [ -n "$destdir" ]; then
  echo "staged into $destdir: system user '$user' not created, systemd not told"
  exit 0
fi

if ! getent passwd "$user" >/dev/null; then
  useradd --system --user-group --home-dir /var/lib/studio-runner --no-create-home --shell /usr/sbin/nologin --comment "studio-runner" "$user"
  echo "created system user $user"
fi
chgrp "$user" "$etc" "$etc/config.yaml"
chown "$user:$user" "$etc/env"

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$enable" -eq 1 ]; then systemctl enable studio-runner.service; fi
  if [ "$start" -eq 1 ]; then systemctl restart studio-runner.service; fi
else
  echo "systemd is not running here: enable the unit later with 'systemctl enable --now studio-runner'"
fi
