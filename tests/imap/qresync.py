"""QRESYNC checks with a small raw IMAP client (exact response lines, in order).

Usage: qresync.py SCENARIO ARGS...
  exact HOST:PORT           ENABLE, SELECT/EXAMINE (QRESYNC ...), UID FETCH (CHANGEDSINCE m
                            VANISHED), CLOSED, VANISHED for EXPUNGE and during IDLE: exact lines
  ops HOST:PORT SEED N TAG  N random changes to INBOX (appends, flag changes, expunges)
  resync HOST:PORT CACHE SEED
                            a client with a cache (JSON file: UIDVALIDITY, HIGHESTMODSEQ,
                            UID -> flags) comes back with SELECT INBOX (QRESYNC ...), applies
                            VANISHED and FETCH to its cache, and checks that it equals a full
                            UID FETCH 1:* (FLAGS); then saves the cache
Exits non-zero with the failing check.
"""

import json
import os
import random
import re
import socket
import sys
import time

USER, PASSWORD = "alice", "correct horse"


def fail(what):
    raise SystemExit("FAILED: " + what)


def check(cond, what):
    if not cond:
        fail(what)


def eq(got, want, what):
    check(got == want, "%s:\n got  %r\n want %r" % (what, got, want))


class Client:
    """One connection; `cmd` returns (untagged lines, tagged line), CRLF stripped."""

    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        self.f = self.sock.makefile("rb")
        self.n = 0
        greeting = self.line()
        check(greeting.startswith("* OK"), "greeting %r" % greeting)

    def line(self):
        raw = self.f.readline()
        check(raw != b"", "connection closed")
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def cmd(self, text, literal=None):
        self.n += 1
        tag = "t%d" % self.n
        if literal is None:
            self.send("%s %s\r\n" % (tag, text))
        else:
            # LITERAL+: no continuation to wait for.
            self.send(("%s %s {%d+}\r\n" % (tag, text, len(literal))).encode() + literal + b"\r\n")
        lines = []
        while True:
            l = self.line()
            if l.startswith(tag + " "):
                return lines, l[len(tag) + 1:]
            lines.append(l)

    def ok(self, text, literal=None):
        lines, done = self.cmd(text, literal)
        check(done.startswith("OK"), "%s: %s %r" % (text, done, lines))
        return lines

    def login(self):
        self.ok('LOGIN %s "%s"' % (USER, PASSWORD))
        return self

    def idle_until(self, want, seconds=30):
        """IDLE until a line matching regex `want` arrives; returns the lines seen."""
        self.n += 1
        tag = "t%d" % self.n
        self.send("%s IDLE\r\n" % tag)
        check(self.line().startswith("+"), "IDLE continuation")
        seen = []
        deadline = time.time() + seconds
        self.sock.settimeout(1)
        while time.time() < deadline and not any(re.search(want, l) for l in seen):
            try:
                seen.append(self.line())
            except socket.timeout:
                pass
        self.sock.settimeout(60)
        self.send("DONE\r\n")
        while True:
            l = self.line()
            if l.startswith(tag + " "):
                check(l[len(tag) + 1:].startswith("OK"), "IDLE end %r" % l)
                break
            seen.append(l)
        check(any(re.search(want, l) for l in seen), "IDLE never saw %r: %r" % (want, seen))
        return seen


def code(lines, name):
    for l in lines:
        m = re.match(r"\* OK \[%s ([^\]]*)\]" % name, l)
        if m:
            return m.group(1)
    fail("no [%s] in %r" % (name, lines))


def fetches(lines):
    """{UID: (seq, flags as a sorted tuple, MODSEQ or None)} of FETCH lines."""
    out = {}
    for l in lines:
        m = re.match(r"\* (\d+) FETCH \((.*)\)$", l)
        if not m:
            continue
        body = m.group(2)
        uid = int(re.search(r"UID (\d+)", body).group(1))
        fl = re.search(r"FLAGS \(([^)]*)\)", body)
        ms = re.search(r"MODSEQ \((\d+)\)", body)
        flags = tuple(sorted(fl.group(1).split())) if fl else None
        out[uid] = (int(m.group(1)), flags, int(ms.group(1)) if ms else None)
    return out


def ranges(text):
    out = []
    for part in text.split(","):
        a, _, b = part.partition(":")
        a, b = int(a), int(b or a)
        out.append((min(a, b), max(a, b)))
    return out


def vanished(lines, earlier):
    """The UID ranges of VANISHED lines (with or without EARLIER)."""
    out = []
    pre = "* VANISHED (EARLIER) " if earlier else "* VANISHED "
    for l in lines:
        if l.startswith(pre) and (earlier or not l.startswith("* VANISHED (EARLIER)")):
            out += ranges(l[len(pre):])
    return out


def uid_set(uids):
    """A compact UID set of sorted UIDs."""
    parts, uids = [], sorted(uids)
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        parts.append(str(uids[i]) if i == j else "%d:%d" % (uids[i], uids[j]))
        i = j + 1
    return ",".join(parts)


def msg(tag):
    return ("From: q@example.org\r\nSubject: %s\r\n\r\nbody %s\r\n" % (tag, tag)).encode()


def exact(addr):
    m = Client(addr).login()
    caps = m.ok("CAPABILITY")
    check(" QRESYNC" in caps[0] and " CONDSTORE" in caps[0], "QRESYNC announced: %r" % caps)
    # QRESYNC needs ENABLE first; VANISHED needs QRESYNC.
    m.ok("CREATE Q")
    lines, done = m.cmd("SELECT Q (QRESYNC (1 1))")
    check(done.startswith("BAD"), "QRESYNC before ENABLE: %r" % done)
    eq(m.ok("ENABLE QRESYNC"), ["* ENABLED QRESYNC"], "ENABLE QRESYNC")
    for i in range(1, 6):
        m.ok("APPEND Q ()", msg("q%d" % i))
    sel = m.ok("SELECT Q")
    uv, h0 = int(code(sel, "UIDVALIDITY")), int(code(sel, "HIGHESTMODSEQ"))
    lines, done = m.cmd("UID FETCH 1:* (FLAGS) (VANISHED)")
    check(done.startswith("BAD"), "VANISHED without CHANGEDSINCE: %r" % done)
    cache = fetches(m.ok("UID FETCH 1:* (FLAGS MODSEQ)"))
    eq(sorted(cache), [1, 2, 3, 4, 5], "the cached UIDs")

    # Changes from another session: a flag, two expunges, an append.
    w = Client(addr).login()
    w.ok("SELECT Q")
    w.ok("UID STORE 2 +FLAGS.SILENT (\\Flagged)")
    w.ok("UID STORE 3:4 +FLAGS.SILENT (\\Deleted)")
    w.ok("UID EXPUNGE 3:4")
    w.ok("APPEND Q (\\Seen)", msg("q6"))

    # The session that stayed selected learns them as VANISHED (not EXPUNGE) at NOOP.
    # (The other session's view events may reach this one just after its OK.)
    noop, deadline = [], time.time() + 10
    while not vanished(noop, False) and time.time() < deadline:
        noop += m.ok("NOOP")
        time.sleep(0.1)
    eq(vanished(noop, False), [(3, 4)], "VANISHED at NOOP: %r" % noop)
    check(not any("EXPUNGE" in l for l in noop), "no EXPUNGE under QRESYNC: %r" % noop)

    # Incremental resync on the node that issued the value: exact.
    for known in (" 1:5", ""):
        r = Client(addr).login()
        r.ok("ENABLE QRESYNC")
        lines = r.ok("SELECT Q (QRESYNC (%d %d%s))" % (uv, h0, known))
        eq([l for l in lines if "VANISHED" in l], ["* VANISHED (EARLIER) 3:4"], "VANISHED" + known)
        got = fetches(lines)
        eq({u: (s, f) for u, (s, f, _) in got.items()},
           {2: (2, ("\\Flagged",)), 6: (4, ("\\Seen",))}, "FETCH of the changed" + known)
        check(all(ms > h0 for _, _, ms in got.values()), "MODSEQs above the cached one")
        check(lines.index("* VANISHED (EARLIER) 3:4") < min(
            i for i, l in enumerate(lines) if " FETCH " in l), "VANISHED before FETCH")
        h1 = int(code(lines, "HIGHESTMODSEQ"))
        # Nothing changed since h1.
        again = r.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h1)
        eq(again, [], "nothing since HIGHESTMODSEQ")
        r.ok("LOGOUT")

    # UID FETCH (CHANGEDSINCE h0 VANISHED): same answer within the set.
    lines = m.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    eq([l for l in lines if "VANISHED" in l], ["* VANISHED (EARLIER) 3:4"], "1:* (* is 6)")
    lines = m.ok("UID FETCH 1:10 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    eq([l for l in lines if "VANISHED" in l], ["* VANISHED (EARLIER) 3:4"], "UID FETCH VANISHED")
    eq(sorted(fetches(lines)), [2, 6], "UID FETCH CHANGEDSINCE")
    lines = m.ok("UID FETCH 5:10 (FLAGS) (CHANGEDSINCE %d VANISHED)" % h0)
    eq([l for l in lines if "VANISHED" in l], [], "nothing vanished in 5:10")

    # A value this node did not issue (another issuer tag): a full answer.
    foreign = (((h0 >> 40) % 1000 + 1) << 40) | 3
    r = Client(addr).login()
    r.ok("ENABLE QRESYNC")
    lines = r.ok("EXAMINE Q (QRESYNC (%d %d 1:5))" % (uv, foreign))
    eq([l for l in lines if "VANISHED" in l], ["* VANISHED (EARLIER) 3:4"], "foreign, known 1:5")
    eq(sorted(fetches(lines)), [1, 2, 5, 6], "foreign: every message")
    # CLOSED before the new selection's responses.
    lines = r.ok("SELECT Q (QRESYNC (%d %d))" % (uv, foreign))
    check(lines[0].startswith("* OK [CLOSED]"), "CLOSED first: %r" % lines)
    eq([l for l in lines if "VANISHED" in l], ["* VANISHED (EARLIER) 3:4,7:4294967293"],
       "foreign without known-uids: every UID not here")
    # Another UIDVALIDITY: a plain SELECT.
    lines = r.ok("SELECT Q (QRESYNC (%d %d 1:5))" % (uv + 1, h0))
    check(not any("VANISHED" in l or " FETCH " in l for l in lines), "wrong UIDVALIDITY: %r" % lines)

    # Its own EXPUNGE is told as VANISHED; so are expunges during IDLE.
    r.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
    eq(r.ok("EXPUNGE"), ["* VANISHED 1"], "EXPUNGE under QRESYNC")
    w.ok("UID STORE 5 +FLAGS.SILENT (\\Deleted)")
    w.ok("UID EXPUNGE 5")
    seen = r.idle_until(r"^\* VANISHED 5$")
    check(not any("EXPUNGE" in l for l in seen), "IDLE: no EXPUNGE: %r" % seen)
    w.ok("UID STORE 6 +FLAGS.SILENT (\\Answered)")
    seen = r.idle_until(r"FETCH \(UID 6 FLAGS \(\\Answered \\Seen\) MODSEQ \(\d+\)\)")
    for c in (m, w, r):
        c.ok("LOGOUT")


def ops(addr, seed, n, tag):
    rnd = random.Random(seed)
    m = Client(addr).login()
    m.ok("SELECT INBOX")
    done = []
    for i in range(n):
        uids = sorted(fetches(m.ok("UID FETCH 1:* (FLAGS)")))
        k = rnd.random()
        if k < 0.35 or not uids:
            for j in range(rnd.randint(1, 2)):
                m.ok("APPEND INBOX ()", msg("%s-%d-%d" % (tag, i, j)))
            done.append("append")
        elif k < 0.75:
            u = rnd.choice(uids)
            f = rnd.choice(["\\Seen", "\\Flagged", "\\Answered", "$Label"])
            op = rnd.choice(["+FLAGS.SILENT", "-FLAGS.SILENT"])
            m.ok("UID STORE %d %s (%s)" % (u, op, f))
            done.append("%s %d %s" % (op, u, f))
        else:
            u = rnd.choice(uids)
            m.ok("UID STORE %d +FLAGS.SILENT (\\Deleted)" % u)
            m.ok("UID EXPUNGE %d" % u)
            done.append("expunge %d" % u)
        m.ok("NOOP")
    m.ok("LOGOUT")
    print("ops %s: %s" % (tag, "; ".join(done)))


def resync(addr, path, seed):
    rnd = random.Random(seed)
    m = Client(addr).login()
    eq(m.ok("ENABLE QRESYNC"), ["* ENABLED QRESYNC"], "ENABLE")
    cache = json.load(open(path)) if os.path.exists(path) else None
    if cache is None:
        lines = m.ok("SELECT INBOX")
        flags = {}
        how = "first"
    else:
        flags = {int(u): tuple(f) for u, f in cache["flags"].items()}
        # Half the time without known-uids: the server must then assume every UID.
        known = " " + uid_set(flags) if flags and rnd.random() < 0.5 else ""
        lines = m.ok("SELECT INBOX (QRESYNC (%d %d%s))" % (cache["uv"], cache["hms"], known))
        check(int(code(lines, "UIDVALIDITY")) == cache["uv"], "UIDVALIDITY kept")
        gone = vanished(lines, True)
        flags = {u: f for u, f in flags.items()
                 if not any(a <= u <= b for a, b in gone)}
        changed = fetches(lines)
        for u, (_, f, _) in changed.items():
            flags[u] = f
        how = "known=%s vanished=%s changed=%d" % (
            bool(known), ",".join("%d:%d" % r for r in gone), len(changed))
    hms = int(code(lines, "HIGHESTMODSEQ"))
    full = {u: f for u, (_, f, _) in fetches(m.ok("UID FETCH 1:* (FLAGS)")).items()}
    if cache is None:
        flags = dict(full)
    diff = {u: (flags.get(u), full.get(u)) for u in set(flags) | set(full)
            if flags.get(u) != full.get(u)}
    check(not diff, "cache after QRESYNC != full fetch (uid: (cache, server)): %r\nresponses: %r"
          % (diff, lines))
    uv = int(code(lines, "UIDVALIDITY"))
    json.dump({"uv": uv, "hms": hms, "flags": {str(u): list(f) for u, f in flags.items()}},
              open(path, "w"))
    m.ok("LOGOUT")
    print("resync %s: %d messages, %s" % (addr, len(full), how))


def main():
    scenario, args = sys.argv[1], sys.argv[2:]
    if scenario == "exact":
        exact(args[0])
    elif scenario == "ops":
        ops(args[0], int(args[1]), int(args[2]), args[3])
    elif scenario == "resync":
        resync(args[0], args[1], int(args[2]))
    else:
        fail("unknown scenario " + scenario)
    print("ok", scenario)


if __name__ == "__main__":
    main()
