#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs every test.
# Usage: bash scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
# python3 runs the reference UID models in shared/ (when present) and the imaplib tests.
command -v python3 >/dev/null || need_apt+=(python3)
# ip makes the network namespaces of the mDNS test; tar unpacks the first-release data dir.
command -v ip >/dev/null || need_apt+=(iproute2)
command -v tar >/dev/null || need_apt+=(tar)
# Real IMAP clients of tests/imap.rs: curl (imap://) and mbsync (Debian's isync).
command -v curl >/dev/null || need_apt+=(curl)
command -v mbsync >/dev/null || need_apt+=(isync)
# swaks is the independent LMTP client of tests/lmtp.rs (which fails without it).
command -v swaks >/dev/null || need_apt+=(swaks)
# doveadm (Debian's Dovecot) writes the Maildir that tests/maildir_dovecot.rs imports.
command -v doveadm >/dev/null || need_apt+=(dovecot-core)
# tests/http.rs: Debian's Python (/usr/bin/python3) with prometheus_client parses /metrics,
# headless Chromium renders the status page (the tests fail, not skip, without them).
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || need_apt+=(python3-prometheus-client)
command -v chromium >/dev/null || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "scripts/test.sh: missing ${need_apt[*]}; install them (as root: apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

cargo test "$@"
