#!/usr/bin/env bash
# What the benchmarks need besides Rust: Dovecot (dsync, doveadm backup and the IMAP server) and an
# unprivileged user its mail processes run as. Idempotent.
set -euo pipefail
if ! command -v doveadm >/dev/null || [ ! -x /usr/lib/dovecot/imap ]; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-core dovecot-imapd
fi
# Debian starts a system-wide Dovecot on install; the bench runs its own instances.
(systemctl stop dovecot 2>/dev/null || service dovecot stop 2>/dev/null || true) >/dev/null
id dsyncbench >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin dsyncbench
echo "bench deps ready: dovecot $(dovecot --version)"
