#!/usr/bin/env bash
# A local cluster demo on the embedded defaults: three data dirs (three nodes) accept writes
# while "partitioned", then converge through `dovetail sync`, proven by `dovetail diff`.
# Usage: bash examples/demo.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
D="$PWD/target/release/dovetail"
W="${1:-$(mktemp -d /tmp/dovetail-demo.XXXXXX)}"
mkdir -p "$W/mail"
step() { printf '\n== %s\n' "$*"; }

for i in 1 2 3 4 5 6; do
  printf 'From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: hello %d\r\nMessage-ID: <%d@demo>\r\n\r\nMessage body %d.\r\n' \
    "$i" "$i" "$i" "$i" > "$W/mail/$i.eml"
done

step "three nodes, each with its own data dir"
for n in a b c; do echo "node $n: $("$D" --data-dir "$W/$n" init)"; done
for n in a b c; do "$D" --data-dir "$W/$n" mailbox create --account alice INBOX; done

step "partitioned: a and b each append 3 messages to INBOX (both claim UIDs 1-3)"
"$D" --data-dir "$W/a" append --account alice --mailbox INBOX "$W/mail/1.eml" "$W/mail/2.eml" "$W/mail/3.eml"
"$D" --data-dir "$W/b" append --account alice --mailbox INBOX --flags '\Seen' "$W/mail/4.eml" "$W/mail/5.eml" "$W/mail/6.eml"
"$D" --data-dir "$W/c" mailbox create --account alice Archive

step "before sync: diff shows what differs (exit 1)"
"$D" diff "$W/a" "$W/b" "$W/c" || true

step "sync a<->b, b<->c, a<->b"
"$D" sync "$W/a" "$W/b"
"$D" sync "$W/b" "$W/c"
"$D" sync "$W/a" "$W/b"

step "after sync: every node lists all 6 messages at new UIDs, UIDVALIDITY unchanged"
"$D" --data-dir "$W/c" list --account alice --mailbox INBOX
"$D" --data-dir "$W/a" status

step "concurrent flag changes on two nodes: +\\Flagged on a, +\$Work on c"
"$D" --data-dir "$W/a" flags --account alice --mailbox INBOX --uid 4 '+\Flagged'
"$D" --data-dir "$W/c" flags --account alice --mailbox INBOX --uid 4 '+$Work'
"$D" sync "$W/a" "$W/c"; "$D" sync "$W/b" "$W/c"
"$D" --data-dir "$W/b" list --account alice --mailbox INBOX

step "diff: converged (exit 0)"
"$D" diff "$W/a" "$W/b" "$W/c"
echo "data dirs kept in $W"
