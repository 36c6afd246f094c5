#!/usr/bin/env bash
# System setup for natftp's tests, lab and benchmarks (Debian 12, root).
#
# Idempotent and non-interactive. A stamp (hash of this script) makes a second run fast:
# it then only re-checks binaries and repairs the cheap things (user, directories).
#
# What it does:
#  - /usr/sbin/policy-rc.d that forbids service starts, BEFORE installing anything
#    (installing vsftpd would otherwise start it on :21);
#  - installs the Debian packages in PACKAGES (one `apt-get update` first, only when
#    something is missing);
#  - ProFTPD and Pure-FTPd conflict with vsftpd as packages: `apt-get download` them and
#    `dpkg -x` them into $PEERS_DIR/<name>/ so their binaries run side by side from their own
#    configs on high ports; installs the shared libraries they depend on and checks with ldd;
#  - vsftpd's secure_chroot_dir; the local user for vsftpd tests (natftptest);
#  - stops an FTP daemon the install may have started on :21 / :2121 anyway.
#
# Environment: NATFTP_PEERS_DIR (default /opt/natftp-peers), NATFTP_SETUP_FORCE=1 to redo all.
set -euo pipefail

PEERS_DIR=${NATFTP_PEERS_DIR:-/opt/natftp-peers}
STATE_DIR=/var/lib/natftp-setup
TEST_USER=natftptest
TEST_PASSWORD=natftptest-pw
TEST_HOME=/var/lib/natftptest
VSFTPD_CHROOT=/var/run/vsftpd/empty

# Tools used by the suite (lab, firewall, doctor, zero-config tests) and the peers.
PACKAGES=(
    curl lftp wget vsftpd iproute2 nftables iptables conntrack tcpdump procps psmisc openssl
    ca-certificates coreutils
    # zero-config NAT tests: miniupnpd (UPnP IGD / NAT-PMP / PCP) and stund
    miniupnpd-nftables stun-server stun-client
    # bench/run.py compiles the small-file load generator (bench/smallload.c) with cc
    gcc libc6-dev
    # natftp cluster behind a real balancer (tests/lab/test_cluster.py, bench/cluster_bench.py)
    haproxy
    # operations (issue 20): the status page in headless Chromium, the fail2ban filter
    # with fail2ban-regex, the systemd unit with systemd-analyze verify
    chromium fail2ban systemd
    # bench/run.py --bench startup times `natftp ls` and `natftp --help` with hyperfine
    hyperfine
)
# Unpacked, not installed: name of the Debian package -> directory under $PEERS_DIR
# (proftpd-mod-crypto: ProFTPD's mod_tls, for bench/run.py --tls)
UNPACKED=(proftpd-core pure-ftpd proftpd-mod-crypto)

log() { printf 'setup-system: %s\n' "$*" >&2; }
die() { printf 'setup-system: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ $(id -u) -ne 0 ]]; then
    die "must run as root (it installs Debian packages and creates a user): sudo bash $0"
fi
command -v apt-get >/dev/null || die "apt-get not found: this script is for Debian 12"

export DEBIAN_FRONTEND=noninteractive
SCRIPT_HASH=$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)
STAMP=$STATE_DIR/done-$SCRIPT_HASH

ensure_policy_rc_d() {
    local want=$'#!/bin/sh\n# natftp: never start services while installing packages (scripts/setup-system.sh)\nexit 101\n'
    if [[ ! -x /usr/sbin/policy-rc.d ]] || ! grep -qx 'exit 101' /usr/sbin/policy-rc.d; then
        log "writing /usr/sbin/policy-rc.d (no service starts on install)"
        printf '%s' "$want" >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
    fi
}

missing_packages() {
    # one dpkg-query for all: prints the names that are not installed
    local installed
    # dpkg-query exits 1 when a name was never installed (it has no record of it); that is
    # the normal case on a new machine, and under pipefail it must not empty the answer
    installed=$( { dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null || true; } \
        | awk '$2 == "installed" {print $1}')
    local p
    for p in "$@"; do
        grep -qx -- "$p" <<<"$installed" || echo "$p"
    done
}

APT_UPDATED=0
apt_update_once() {
    if [[ $APT_UPDATED -eq 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
}

apt_install() {
    local missing
    mapfile -t missing < <(missing_packages "$@")
    [[ ${#missing[@]} -eq 0 ]] && return 0
    apt_update_once
    log "apt-get install ${missing[*]}"
    apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}" >/dev/null
}

# `apt-get download PKG` + `dpkg -x` into $PEERS_DIR/PKG; records the version; installs the
# lib* packages it depends on (the only dependencies a binary needs at run time).
unpack_peer() {
    local pkg=$1 dest=$PEERS_DIR/$1 tmp version deps
    apt_update_once
    version=$(apt-cache policy "$pkg" | awk '/Candidate:/ {print $2}')
    [[ -n $version && $version != "(none)" ]] || die "no candidate for $pkg in apt"
    if [[ -f $dest/.version && $(cat "$dest/.version") == "$version" && -f $dest/.deps ]]; then
        # unpacked already; its libraries may still be missing (an interrupted earlier run)
        # shellcheck disable=SC2046
        apt_install $(cat "$dest/.deps")
        return 0
    fi
    log "unpacking $pkg $version into $dest"
    tmp=$(mktemp -d)
    chmod 755 "$tmp"
    chown _apt:root "$tmp" 2>/dev/null || true
    (cd "$tmp" && apt-get download -qq "$pkg")
    rm -rf "$dest"
    mkdir -p "$dest"
    dpkg -x "$tmp"/"${pkg}"_*.deb "$dest"
    deps=$(dpkg-deb -f "$tmp"/"${pkg}"_*.deb Depends | tr ',' '\n' | sed 's/(.*)//; s/|.*//' \
        | awk '{print $1}' | grep -E '^lib' || true)
    rm -rf "$tmp"
    # shellcheck disable=SC2086
    apt_install $deps
    echo "$deps" >"$dest/.deps"
    echo "$version" >"$dest/.version"
}

check_ldd() {
    local bin=$1 missing
    [[ -x $bin ]] || die "$bin is missing after unpacking"
    missing=$(ldd "$bin" 2>&1 | grep 'not found' || true)
    [[ -z $missing ]] || die "$bin lacks shared libraries: $missing"
}

ensure_user() {
    grep -qx /bin/bash /etc/shells || echo /bin/bash >>/etc/shells
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        log "creating user $TEST_USER (home $TEST_HOME)"
        useradd --system --create-home --home-dir "$TEST_HOME" --shell /bin/bash \
            --user-group "$TEST_USER"
    fi
    # pam_unix for vsftpd: a known password (a throwaway account on a test machine)
    echo "$TEST_USER:$TEST_PASSWORD" | chpasswd
    if grep -qx "$TEST_USER" /etc/ftpusers 2>/dev/null; then
        sed -i "/^$TEST_USER\$/d" /etc/ftpusers
    fi
    mkdir -p "$TEST_HOME"
    chown "$TEST_USER:$TEST_USER" "$TEST_HOME"
}

# Stop an FTP daemon that the install started on :21 or :2121 despite policy-rc.d: only
# vsftpd/proftpd/pure-ftpd processes that listen there (never a natftp serve).
stop_stray_daemons() {
    local pids pid comm
    pids=$(ss -ltnpH '( sport = :21 or sport = :2121 )' 2>/dev/null \
        | grep -oE 'pid=[0-9]+' | cut -d= -f2 | sort -u || true)
    for pid in $pids; do
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        case $comm in
            vsftpd|proftpd|pure-ftpd)
                log "stopping $comm (pid $pid) started by the package install"
                kill "$pid" 2>/dev/null || true ;;
        esac
    done
}

quick_check() {
    local p
    [[ -f $STAMP ]] || return 1
    for p in /usr/sbin/vsftpd /usr/bin/lftp /usr/bin/curl /usr/sbin/nft /usr/sbin/conntrack \
        "$PEERS_DIR/proftpd-core/usr/sbin/proftpd" "$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd" \
        "$PEERS_DIR/pure-ftpd/usr/bin/pure-pw" \
        "$PEERS_DIR/proftpd-mod-crypto/usr/lib/proftpd/mod_tls.so"; do
        [[ -x $p ]] || return 1
    done
    [[ -z $(missing_packages "${PACKAGES[@]}") ]] || return 1
}

mkdir -p "$STATE_DIR" "$PEERS_DIR"
ensure_policy_rc_d

if [[ ${NATFTP_SETUP_FORCE:-0} != 1 ]] && quick_check; then
    mkdir -p "$VSFTPD_CHROOT"   # /var/run is a tmpfs on some machines
    ensure_user
    exit 0
fi

start=$SECONDS
apt_install "${PACKAGES[@]}"
for pkg in "${UNPACKED[@]}"; do
    unpack_peer "$pkg"
done
check_ldd "$PEERS_DIR/proftpd-core/usr/sbin/proftpd"
check_ldd "$PEERS_DIR/pure-ftpd/usr/sbin/pure-ftpd"
check_ldd "$PEERS_DIR/pure-ftpd/usr/bin/pure-pw"

mkdir -p "$VSFTPD_CHROOT"
chmod 755 "$VSFTPD_CHROOT"
ensure_user
stop_stray_daemons

rm -f "$STATE_DIR"/done-*
touch "$STAMP"
log "done in $((SECONDS - start)) s (peers in $PEERS_DIR)"
