#!/usr/bin/env bash
# Installs studio-runner on a systemd machine: the one binary, a config file, a system user and
# the hardened unit, then enables the unit. Safe to run again (replaces the binary and the unit,
# never overwrites /etc/studio-runner/config.yaml or env).
#
#   sudo deploy/install.sh [--binary dist/studio-runner] [--prefix /usr/local] [--no-enable] [--start]
#                          [--allowed-signers FILE [--signer ID]]
#   sudo deploy/install.sh --upgrade [--binary FILE] [--prefix DIR] [--drain-timeout SECONDS] [--start]
#                          [--allowed-signers FILE [--signer ID]]
#   sudo deploy/install.sh --rollback [--prefix DIR] [--drain-timeout SECONDS] [--start]
#   DESTDIR=/tmp/stage deploy/install.sh [...]   # stage into a directory: no user, no systemctl
#
# --upgrade: checks that the new binary runs here (--version), then drains the runner, keeps the
#   old binary as <prefix>/bin/studio-runner.previous, puts the new one in its place, refreshes the
#   unit and the example config, and starts the unit again if it was running (or with --start).
#   Drain: `systemctl stop studio-runner` when the unit is active (its TimeoutStopSec applies);
#   otherwise (no systemd, or DESTDIR) SIGTERM to each `studio-runner run` process of the installed
#   binary, waiting up to --drain-timeout seconds (default 900) for them to exit. SIGTERM drains:
#   no new work, running experiments get --shutdown-grace, then are checkpointed and requeued.
#   Runners stopped that way are not started again: their command lines are printed.
# --rollback: swaps studio-runner and studio-runner.previous (so a second rollback is the upgrade
#   again), drained and restarted the same way; the unit and the config are left as they are.
# From an unpacked release archive, the files are first checked against its SHA256SUMS, and its
# signature against your allowed-signers file (ssh-keygen -Y verify; nothing is fetched). The file
# is kept as /etc/studio-runner/allowed_signers and used by later runs that name none (so an
# unsigned or foreign release is refused from then on). --rollback uses the installed files only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix=/usr/local
binary=""
enable=1
start=0
signers=""
signer="release@studio-runner"
mode=install
drain_timeout=900
usage() { sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; }
set_mode() {
  if [ "$mode" != install ] && [ "$mode" != "$1" ]; then
    echo "install.sh: --upgrade and --rollback go alone" >&2
    exit 2
  fi
  mode="$1"
}
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
    --upgrade) set_mode upgrade; shift ;;
    --rollback) set_mode rollback; shift ;;
    --drain-timeout) drain_timeout="${2:?--drain-timeout needs seconds}"; shift 2 ;;
    --drain-timeout=*) drain_timeout="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
destdir="${DESTDIR:-}"
case "$drain_timeout" in
  ''|*[!0-9]*) echo "install.sh: --drain-timeout needs a whole number of seconds" >&2; exit 2 ;;
esac
if [ "$mode" = rollback ] && [ -n "$binary$signers" ]; then
  echo "install.sh: --rollback uses the installed binaries: no --binary or --allowed-signers" >&2
  exit 2
fi

# The allowed-signers file given once is kept in /etc/studio-runner: later upgrades check with it
# without being told, and then refuse releases that are not signed by a key it trusts.
kept_signers="$destdir/etc/studio-runner/allowed_signers"
signers_given="$signers"
if [ -z "$signers" ] && [ -f "$kept_signers" ] && [ "$mode" != rollback ]; then
  signers="$kept_signers"
  echo "checking the release signature with /etc/studio-runner/allowed_signers (kept from an earlier install)"
fi

if [ "$mode" != rollback ]; then
  # A release archive carries SHA256SUMS of its files (and SHA256SUMS.sig when it was signed).
  if [ -f "$here/SHA256SUMS" ]; then
    if [ -f "$here/SHA256SUMS.sig" ] && [ -n "$signers" ]; then
      ssh-keygen -q -Y verify -f "$signers" -I "$signer" -n studio-runner-release -s "$here/SHA256SUMS.sig" \
        <"$here/SHA256SUMS" >/dev/null || { echo "install.sh: the release signature does not verify with $signers" >&2; exit 1; }
      echo "signature of SHA256SUMS verified ($signer)"
    elif [ -n "$signers" ]; then
      echo "install.sh: --allowed-signers given but this release is not signed (no SHA256SUMS.sig)" >&2
      exit 1
    elif [ -f "$here/SHA256SUMS.sig" ]; then
      echo "note: this release is signed, but its signature was not checked (give --allowed-signers FILE to check it)"
    fi
    (cd "$here" && sha256sum --quiet --strict -c SHA256SUMS) || { echo "install.sh: files do not match SHA256SUMS" >&2; exit 1; }
    echo "files match SHA256SUMS"
  fi
  if [ -z "$binary" ]; then
    for candidate in "$here/../dist/studio-runner" "$here/studio-runner" "$here/../studio-runner"; do
      if [ -x "$candidate" ]; then binary="$candidate"; break; fi
    done
    if [ -z "$binary" ]; then
      echo "install.sh: no studio-runner binary found (build it with 'npm run build', or pass --binary)" >&2
      exit 1
    fi
  fi
  if [ ! -f "$binary" ] || [ ! -x "$binary" ]; then
    echo "install.sh: $binary is not an executable file" >&2
    exit 1
  fi
fi
if [ -z "$destdir" ] && [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
  exit 1
fi

user=studio-runner
bindir="$prefix/bin"
etc="$destdir/etc/studio-runner"
unitdir="$destdir/etc/systemd/system"
current="$destdir$bindir/studio-runner"
previous="$current.previous"
staged="$destdir$bindir/.studio-runner.new"
swap="$destdir$bindir/.studio-runner.swap"
# Set by drain() when it stopped the unit, and once the unit runs again: a failure in between
# starts the unit again (on whichever binary is installed by then) rather than leave it stopped.
was_active=0
restarted=0
on_exit() {
  rm -f "$staged" "$swap"
  if [ "$was_active" -eq 1 ] && [ "$restarted" -eq 0 ]; then
    echo "install.sh: failed after stopping studio-runner.service: starting it again" >&2
    systemctl start studio-runner.service || true
  fi
}
trap on_exit EXIT

# The first line of `BINARY --version` when BINARY is an executable for this machine that says a
# version; fails otherwise (garbage, another architecture, a truncated download, a noexec mount).
version_of() {
  local magic out
  magic="$(head -c 4 "$1" 2>/dev/null | od -An -c | tr -d ' \n')" || return 1
  [ "$magic" = "177ELF" ] || return 1
  out="$(timeout 60 "$1" --version </dev/null 2>/dev/null)" || return 1
  out="${out%%$'\n'*}"
  [[ "$out" =~ ^[0-9]+\.[0-9]+ ]] || return 1
  printf '%s\n' "$out"
}

# The runners started from the installed binary: processes whose executable is that file (with
# " (deleted)" once the file was replaced under them) and whose first argument is `run`; `submit`
# or `env` of the same binary are not runners. A runner's descendants are its experiments (python,
# bwrap, never this binary), but one that runs the binary is left out all the same: only the top
# runner is signalled, and it stops its own experiments.
runner_pids() {
  local target="$1" dir pid exe arg1 ppid
  local -a found=()
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    exe="$(readlink "$dir/exe" 2>/dev/null)" || continue
    [ "$exe" = "$target" ] || [ "$exe" = "$target (deleted)" ] || continue
    arg1="$( (tr '\0' '\n' <"$dir/cmdline" | sed -n 2p) 2>/dev/null)" || continue
    [ "$arg1" = run ] || continue
    found+=("$pid")
  done
  for pid in ${found[@]+"${found[@]}"}; do
    under_runner "$pid" "${found[*]}" || echo "$pid"
  done
}

# Whether one of PID's ancestors is among RUNNERS: an experiment (or anything it started) that runs
# the binary itself is not a runner to drain, however deep below the runner it is.
under_runner() {
  local at="$1" runners=" $2 " ppid
  while :; do
    ppid="$(awk '/^PPid:/ { print $2 }' "/proc/$at/status" 2>/dev/null)" || return 1
    [ -n "$ppid" ] && [ "$ppid" -gt 1 ] || return 1
    case "$runners" in *" $ppid "*) return 0 ;; esac
    at="$ppid"
  done
}

# Whether PID is still that runner (a finished one is gone, or a zombie without an executable).
still_runner() {
  local exe
  exe="$(readlink "/proc/$1/exe" 2>/dev/null)" || return 1
  [ "$exe" = "$2" ] || [ "$exe" = "$2 (deleted)" ]
}

# Drains the runner of the installed binary. Sets was_active when the unit was stopped, and
# restart_lines to the command lines of runners stopped by signal (started again by hand).
restart_lines=()
drain() {
  local target pid waited=0 line cwd
  local -a pids=() left=() args=()
  if [ -z "$destdir" ] && [ -d /run/systemd/system ] && systemctl is-active --quiet studio-runner.service; then
    echo "stopping studio-runner.service: it drains (running experiments get --shutdown-grace, then are requeued)"
    systemctl stop studio-runner.service
    was_active=1
    echo "studio-runner.service stopped"
  fi
  target="$(readlink -f "$current")"
  mapfile -t pids < <(runner_pids "$target")
  if [ ${#pids[@]} -eq 0 ]; then
    [ "$was_active" -eq 1 ] || echo "no runner of $bindir/studio-runner is running: nothing to drain"
    return 0
  fi
  for pid in "${pids[@]}"; do
    mapfile -d '' -t args <"/proc/$pid/cmdline" || true
    line="$(printf '%q ' ${args[@]+"${args[@]}"})"
    line="${line% }"
    if cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null)"; then line="cd $(printf '%q' "$cwd") && $line"; fi
    kill -TERM "$pid" 2>/dev/null || continue # gone meanwhile
    restart_lines+=("$line")
    echo "SIGTERM to runner $pid: draining (no new work; running experiments get --shutdown-grace, then are requeued)"
  done
  while :; do
    left=()
    for pid in "${pids[@]}"; do
      if still_runner "$pid" "$target"; then left+=("$pid"); fi
    done
    [ ${#left[@]} -eq 0 ] && break
    if [ "$waited" -ge "$drain_timeout" ]; then
      echo "install.sh: runner ${left[*]} still draining after ${drain_timeout}s; nothing was swapped." >&2
      echo "  It exits on its own once drained (a second SIGTERM checkpoints and requeues at once); then run" >&2
      echo "  install.sh --$mode again." >&2
      exit 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  echo "runner ${pids[*]} exited after draining (${waited}s)"
}

case "$mode" in
  upgrade)
    if [ ! -e "$current" ]; then
      echo "install.sh: nothing is installed at $bindir/studio-runner to upgrade: run install.sh without --upgrade" >&2
      exit 1
    fi
    old_version="$(version_of "$current" || echo unknown)"
    new_version="$(version_of "$binary")" || {
      echo "install.sh: the new binary $binary does not run here ($binary --version failed): nothing changed" >&2
      exit 1
    }
    # Staged beside the installed one and tried there too (a noexec mount, a short disk).
    install -m 0755 "$binary" "$staged"
    version_of "$staged" >/dev/null || {
      echo "install.sh: the new binary does not run from $bindir: nothing changed" >&2
      exit 1
    }
    if cmp -s "$staged" "$current"; then
      echo "$bindir/studio-runner is already this binary ($new_version): nothing to upgrade"
      exit 0
    fi
    echo "upgrading $bindir/studio-runner: $old_version -> $new_version"
    drain
    # The previous binary keeps its inode (a hard link) and the new one is renamed over the
    # installed name, so the name never goes missing.
    ln -f "$current" "$swap" 2>/dev/null || cp -p "$current" "$swap"
    mv -f "$swap" "$previous"
    mv -f "$staged" "$current"
    echo "installed $bindir/studio-runner ($new_version); the previous one is $bindir/studio-runner.previous"
    ;;
  rollback)
    if [ ! -e "$current" ]; then
      echo "install.sh: nothing is installed at $bindir/studio-runner" >&2
      exit 1
    fi
    if [ ! -e "$previous" ]; then
      echo "install.sh: no previous binary to roll back to ($bindir/studio-runner.previous does not exist;" \
        "install.sh --upgrade keeps one)" >&2
      exit 1
    fi
    old_version="$(version_of "$current" || echo unknown)"
    new_version="$(version_of "$previous")" || {
      echo "install.sh: the previous binary $bindir/studio-runner.previous does not run here: nothing changed" >&2
      exit 1
    }
    echo "rolling back $bindir/studio-runner: $old_version -> $new_version"
    drain
    ln -f "$current" "$swap" 2>/dev/null || cp -p "$current" "$swap"
    mv -f "$previous" "$current"
    mv -f "$swap" "$previous"
    echo "installed $bindir/studio-runner ($new_version); the one it replaced is $bindir/studio-runner.previous"
    ;;
  install)
    # The binary: written beside the old one, then renamed over it, so a running runner keeps its file.
    install -d -m 0755 "$destdir$bindir"
    install -m 0755 "$binary" "$staged"
    mv -f "$staged" "$current"
    echo "installed $bindir/studio-runner"
    ;;
esac

# Tells how to start again the runners that were drained by signal (systemd starts its own).
restart_hint() {
  local line
  if [ ${#restart_lines[@]} -gt 0 ]; then
    echo "the drained runner was not started again: start it again (now $new_version), e.g."
    for line in "${restart_lines[@]}"; do echo "  $line"; done
  fi
}

if [ "$mode" != rollback ]; then
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
  if [ -n "$signers_given" ] && ! cmp -s "$signers_given" "$kept_signers"; then
    install -m 0644 "$signers_given" "$kept_signers"
    echo "kept $signers_given as /etc/studio-runner/allowed_signers: later upgrades check signatures with it"
  fi

  # The unit, pointing at the binary where this prefix put it.
  install -d -m 0755 "$unitdir"
  unit="$here/systemd/studio-runner.service"
  [ -f "$unit" ] || unit="$here/studio-runner.service" # a release archive keeps it beside the binary
  sed "s|^ExecStart=/usr/local/bin/studio-runner |ExecStart=$bindir/studio-runner |" "$unit" >"$unitdir/.studio-runner.service.new"
  chmod 0644 "$unitdir/.studio-runner.service.new"
  mv -f "$unitdir/.studio-runner.service.new" "$unitdir/studio-runner.service"
  echo "installed /etc/systemd/system/studio-runner.service"
fi

if [ -n "$destdir" ]; then
  echo "staged into $destdir: system user '$user' not created, systemd not told"
  restart_hint
  exit 0
fi

if [ "$mode" != rollback ]; then
  if ! getent passwd "$user" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/studio-runner --no-create-home --shell /usr/sbin/nologin --comment "studio-runner" "$user"
    echo "created system user $user"
  fi
  chgrp "$user" "$etc" "$etc/config.yaml"
  chown "$user:$user" "$etc/env"
fi

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if [ "$mode" = install ]; then
    if [ "$enable" -eq 1 ]; then systemctl enable studio-runner.service; fi
    if [ "$start" -eq 1 ]; then systemctl restart studio-runner.service; fi
  elif [ "$was_active" -eq 1 ] || [ "$start" -eq 1 ]; then
    systemctl start studio-runner.service
    restarted=1
    echo "started studio-runner.service ($new_version)"
  fi
elif [ "$mode" = install ]; then
  echo "systemd is not running here: enable the unit later with 'systemctl enable --now studio-runner'"
fi
restart_hint
