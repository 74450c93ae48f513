"""Real-client checks of dovetail's IMAP front end with python3's imaplib.

Usage: client.py SCENARIO HOST:PORT [HOST:PORT ...]
Exits non-zero (with the failing check) when a response is not exactly what it must be.
Scenarios: flow (one node), idle (a second session on the same node), cluster (IDLE on
node B sees a message appended through node A), login (a user can log in).
"""

import imaplib
import re
import socket
import sys
import time

USER, PASSWORD = "alice", "correct horse"

SIMPLE = (
    b"From: Alice Example <alice@example.org>\r\n"
    b"To: Bob <bob@example.org>\r\n"
    b"Subject: hello world\r\n"
    b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <m1@example.org>\r\n"
    b"\r\n"
    b"Hello Bob,\r\nthe quick brown fox.\r\n"
)

MULTI = (
    b"From: Carol <carol@example.net>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: report\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="XX"\r\n'
    b"\r\n"
    b"--XX\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"see the attachment\r\n"
    b"--XX\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b"Content-Transfer-Encoding: base64\r\n"
    b"\r\n"
    b"AAECAwQF\r\n"
    b"--XX--\r\n"
)

BIG = b"From: dan@example.com\r\nSubject: big one\r\n\r\n" + b"x" * 5000 + b"\r\n"


def check(cond, what):
    if not cond:
        raise SystemExit("FAILED: " + what)


def eq(got, want, what):
    check(got == want, "%s: got %r, want %r" % (what, got, want))


def connect(addr):
    host, port = addr.rsplit(":", 1)
    return imaplib.IMAP4(host, int(port))


def ok(res, what):
    typ, data = res
    eq(typ, "OK", what + " " + repr(data))
    return data


def login(addr):
    m = connect(addr)
    ok(m.login(USER, PASSWORD), "login")
    return m


def code(m, name):
    """The value of the last response code `name` (e.g. APPENDUID)."""
    return m.untagged_responses.pop(name, [None])[-1]


def fetch_one(m, seq, items, uid=False):
    if uid:
        typ, data = m.uid("FETCH", seq, items)
    else:
        typ, data = m.fetch(seq, items)
    eq(typ, "OK", "fetch %s %s" % (seq, items))
    return data


def literal_of(data):
    for d in data:
        if isinstance(d, tuple):
            return d[1]
    raise SystemExit("FAILED: no literal in %r" % (data,))


def raw(m, line):
    """Sends a command line imaplib would not send (state checks, newer commands)."""
    tag = m._new_tag()
    m.tagged_commands[tag] = None
    m.send(tag + b" " + line + b"\r\n")
    try:
        res = m._get_tagged_response(tag)
    except imaplib.IMAP4.error as e:
        res = "ERR", [str(e).encode()]
    # imaplib would hand this command's FETCH responses to the next FETCH it sends.
    m.untagged_responses.pop("FETCH", None)
    return res


def unq(b):
    return b.replace(b'"', b"")


def expect_no(fn, what, needle):
    try:
        typ, data = fn()
    except imaplib.IMAP4.error as e:
        check(needle in str(e), "%s: %s does not mention %s" % (what, e, needle))
        return
    check(typ == "NO" and needle.encode() in b" ".join(data), "%s: got %r %r" % (what, typ, data))


def flow(addr):
    # A wrong password is refused, after a delay.
    m = connect(addr)
    t = time.time()
    try:
        m.login(USER, "wrong")
        raise SystemExit("FAILED: a wrong password was accepted")
    except imaplib.IMAP4.error as e:
        check("AUTHENTICATIONFAILED" in str(e), "wrong password: %s" % e)
    check(time.time() - t >= 0.9, "no delay after a wrong password")
    ok(m.login(USER, PASSWORD), "login after a failure")
    caps = m.capabilities
    for c in ("IMAP4REV1", "IDLE", "UIDPLUS", "MOVE", "UNSELECT", "NAMESPACE", "ID", "ENABLE", "CONDSTORE"):
        check(c in caps, "capability %s missing from %r" % (c, caps))

    # Commands of the selected state are refused before a SELECT (imaplib itself would
    # refuse to send it: sent raw).
    typ, data = raw(m, b"FETCH 1 FLAGS")
    eq(typ, "BAD", "FETCH without a selected mailbox %r" % data)

    ok(m.create("Work"), "create Work")
    ok(m.create("Work/2026"), "create Work/2026")
    data = ok(m.list(), "list")
    names = sorted(re.search(rb'"/" "?([^"]*)"?$', l).group(1).decode() for l in data)
    eq(names, ["INBOX", "Work", "Work/2026"], "LIST names")
    data = ok(m.list('""', "%"), "list %")
    eq(len(data), 2, "LIST %% shows the top level only: %r" % data)
    eq(ok(m.lsub(), "lsub"), [None], "LSUB before any SUBSCRIBE")
    ok(m.subscribe("Work"), "subscribe")
    ok(m.subscribe("Work/2026"), "subscribe")
    eq(len(ok(m.lsub(), "lsub")), 2, "LSUB after SUBSCRIBE")
    ok(m.unsubscribe("Work/2026"), "unsubscribe")
    data = ok(m.lsub(), "lsub")
    eq([d.split(b" ")[-1] for d in data], [b"Work"], "LSUB after UNSUBSCRIBE")
    data = ok(m.namespace(), "namespace")
    eq(data, [b'(("" "/")) NIL NIL'], "NAMESPACE")
    expect_no(lambda: m.select("Nope"), "select unknown", "NONEXISTENT")
    expect_no(lambda: m.append("Nope", None, None, SIMPLE), "append unknown", "TRYCREATE")

    data = ok(m.select("INBOX"), "select")
    eq(data, [b"0"], "EXISTS of a new INBOX")
    uv = int(code(m, "UIDVALIDITY"))
    eq(code(m, "UIDNEXT"), b"1", "UIDNEXT of a new INBOX")
    check(m.untagged_responses.get("PERMANENTFLAGS") is not None or True, "")

    # APPEND with APPENDUID: UIDs 1, 2, 3 in this UIDVALIDITY.
    msgs = [SIMPLE, MULTI, BIG]
    for i, (msg, flags) in enumerate(zip(msgs, ["(\\Flagged)", None, "($Work)"])):
        ok(m.append("INBOX", flags, imaplib.Time2Internaldate(1700000000 + i), msg), "append")
        eq(code(m, "APPENDUID"), ("%d %d" % (uv, i + 1)).encode(), "APPENDUID %d" % i)
    ok(m.noop(), "noop")
    ex = m.untagged_responses.pop("EXISTS", [None])
    eq(ex[-1], b"3", "EXISTS after appends (all: %r)" % ex)

    # FETCH: every item, bodies byte-identical.
    data = fetch_one(m, "1:3", "(UID FLAGS RFC822.SIZE)")
    eq(
        data,
        [
            b"1 (UID 1 FLAGS (\\Flagged) RFC822.SIZE %d)" % len(SIMPLE),
            b"2 (UID 2 FLAGS () RFC822.SIZE %d)" % len(MULTI),
            b"3 (UID 3 FLAGS ($Work) RFC822.SIZE %d)" % len(BIG),
        ],
        "FETCH UID FLAGS RFC822.SIZE",
    )
    data = fetch_one(m, "2", "INTERNALDATE")
    eq(data, [b'2 (INTERNALDATE "14-Nov-2023 22:13:21 +0000")'], "INTERNALDATE")
    for i, msg in enumerate(msgs):
        eq(literal_of(fetch_one(m, str(i + 1), "BODY.PEEK[]")), msg, "BODY.PEEK[] of %d" % (i + 1))
        eq(literal_of(fetch_one(m, str(i + 1), "RFC822.HEADER")), msg[: msg.index(b"\r\n\r\n") + 4], "RFC822.HEADER")
    eq(literal_of(fetch_one(m, "1", "BODY.PEEK[HEADER]")), SIMPLE[: SIMPLE.index(b"\r\n\r\n") + 4], "BODY[HEADER]")
    eq(literal_of(fetch_one(m, "1", "BODY.PEEK[TEXT]")), b"Hello Bob,\r\nthe quick brown fox.\r\n", "BODY[TEXT]")
    eq(literal_of(fetch_one(m, "1", "BODY.PEEK[1]")), b"Hello Bob,\r\nthe quick brown fox.\r\n", "BODY[1]")
    eq(literal_of(fetch_one(m, "1", "BODY.PEEK[]<6.5>")), SIMPLE[6:11], "BODY[]<6.5>")
    eq(
        literal_of(fetch_one(m, "1", "BODY.PEEK[HEADER.FIELDS (SUBJECT TO)]")),
        b"To: Bob <bob@example.org>\r\nSubject: hello world\r\n\r\n",
        "HEADER.FIELDS",
    )
    eq(literal_of(fetch_one(m, "2", "BODY.PEEK[1]")), b"see the attachment", "BODY[1] of a multipart")
    eq(literal_of(fetch_one(m, "2", "BODY.PEEK[2]")), b"AAECAwQF", "BODY[2] of a multipart")
    eq(
        literal_of(fetch_one(m, "2", "BODY.PEEK[1.MIME]")),
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n",
        "BODY[1.MIME]",
    )
    env = fetch_one(m, "1", "ENVELOPE")[0]
    eq(
        env,
        b'1 (ENVELOPE ("Mon, 30 Nov 2026 10:00:00 +0000" "hello world" (("Alice Example" NIL "alice" "example.org")) '
        b'(("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) '
        b'(("Bob" NIL "bob" "example.org")) NIL NIL NIL "<m1@example.org>"))',
        "ENVELOPE",
    )
    bs = fetch_one(m, "2", "BODYSTRUCTURE")[0]
    check(b'"mixed"' in bs.lower() and b'"octet-stream"' in bs.lower() and b'"base64"' in bs.lower(), "BODYSTRUCTURE %r" % bs)
    bs1 = fetch_one(m, "1", "BODY")[0]
    eq(bs1.lower(), b'1 (body ("text" "plain" ("charset" "us-ascii") nil nil "7bit" 34 2))', "BODY")
    eq(literal_of(fetch_one(m, "3", "BODY.PEEK[]", uid=True)), BIG, "UID FETCH BODY.PEEK[]")
    eq(fetch_one(m, "2:*", "FLAGS", uid=True), [b"2 (UID 2 FLAGS ())", b"3 (UID 3 FLAGS ($Work))"], "UID FETCH 2:*")

    # A non-PEEK body fetch sets \Seen durably and says so.
    data = fetch_one(m, "1", "BODY[TEXT]")
    check(any(isinstance(d, tuple) and b"\\Seen" in d[0] for d in data) or any(b"\\Seen" in d for d in data if isinstance(d, bytes)), "\\Seen not told: %r" % data)
    eq(fetch_one(m, "1", "FLAGS"), [b"1 (FLAGS (\\Flagged \\Seen))"], "FLAGS after BODY[TEXT]")

    # STORE and UID STORE.
    eq(ok(m.store("2", "+FLAGS", "(\\Answered $Todo)"), "store +"), [b"2 (UID 2 FLAGS ($Todo \\Answered))"], "STORE +FLAGS")
    eq(ok(m.store("2", "-FLAGS.SILENT", "($Todo)"), "store -silent"), [None], "STORE -FLAGS.SILENT says nothing")
    eq(ok(m.uid("STORE", "3", "FLAGS", "(\\Draft)"), "uid store"), [b"3 (UID 3 FLAGS (\\Draft))"], "UID STORE FLAGS")
    try:
        m.store("1", "+FLAGS", "(\\Recent)")
        raise SystemExit("FAILED: \\Recent stored")
    except imaplib.IMAP4.error:
        pass
    try:
        m.store("9", "+FLAGS", "(\\Seen)")
        raise SystemExit("FAILED: STORE of a sequence number above EXISTS accepted")
    except imaplib.IMAP4.error:
        pass

    # SEARCH and UID SEARCH.
    def search(*crit):
        return ok(m.search(None, *crit), "search %r" % (crit,))[0]

    eq(search("ALL"), b"1 2 3", "SEARCH ALL")
    eq(search("SEEN"), b"1", "SEARCH SEEN")
    eq(search("UNSEEN"), b"2 3", "SEARCH UNSEEN")
    eq(search("FLAGGED"), b"1", "SEARCH FLAGGED")
    eq(search("ANSWERED"), b"2", "SEARCH ANSWERED")
    eq(search("DRAFT", "NOT", "SEEN"), b"3", "SEARCH DRAFT NOT SEEN")
    eq(search("LARGER", "1000"), b"3", "SEARCH LARGER")
    eq(search("SMALLER", "1000"), b"1 2", "SEARCH SMALLER")
    eq(search("SUBJECT", "HELLO"), b"1", "SEARCH SUBJECT")
    eq(search("FROM", "carol"), b"2", "SEARCH FROM")
    eq(search("TO", "bob@example.org"), b"1", "SEARCH TO")
    eq(search("HEADER", "Message-ID", "m1@"), b"1", "SEARCH HEADER")
    eq(search("BODY", '"brown fox"'), b"1", "SEARCH BODY")
    eq(search("TEXT", "report"), b"2", "SEARCH TEXT (header)")
    eq(search("OR", "SEEN", "LARGER", "1000"), b"1 3", "SEARCH OR")
    eq(search("2:3"), b"2 3", "SEARCH sequence set")
    eq(search("UID", "1,3"), b"1 3", "SEARCH UID")
    eq(search("KEYWORD", "$Work"), b"", "SEARCH KEYWORD (replaced by FLAGS)")
    eq(search("SINCE", "1-Jan-2020"), b"1 2 3", "SEARCH SINCE")
    eq(search("SENTON", "30-Nov-2026"), b"1", "SEARCH SENTON")
    eq(ok(m.uid("SEARCH", "UNSEEN"), "uid search")[0], b"2 3", "UID SEARCH UNSEEN")

    # COPY and MOVE with COPYUID.
    ok(m.select("Work"), "select Work")
    wuv = int(code(m, "UIDVALIDITY"))
    ok(m.select("INBOX"), "select INBOX again")
    ok(m.uid("COPY", "1:2", "Work"), "uid copy")
    eq(code(m, "COPYUID"), ("%d 1:2 1:2" % wuv).encode(), "COPYUID")
    ok(m.copy("3", "Work"), "copy")
    eq(code(m, "COPYUID"), ("%d 3 3" % wuv).encode(), "COPYUID of COPY")
    eq(unq(ok(m.status("Work", "(MESSAGES UIDNEXT UNSEEN)"), "status")[0]), b"Work (MESSAGES 3 UIDNEXT 4 UNSEEN 2)", "STATUS Work")
    typ, data = raw(m, b"UID MOVE 2 Work/2026")
    eq(typ, "OK", "UID MOVE %r" % data)
    eq(m.untagged_responses.pop("EXPUNGE", None), [b"2"], "EXPUNGE of the moved message")
    check(code(m, "COPYUID") is not None, "COPYUID of MOVE")
    eq(search("ALL"), b"1 2", "INBOX after MOVE")
    eq(fetch_one(m, "2", "UID"), [b"2 (UID 3)"], "renumbered after MOVE")

    # EXPUNGE and UID EXPUNGE.
    ok(m.store("1:2", "+FLAGS.SILENT", "(\\Deleted)"), "store deleted")
    typ, data = raw(m, b"UID EXPUNGE 3")
    eq(typ, "OK", "UID EXPUNGE")
    eq(m.untagged_responses.pop("EXPUNGE", None), [b"2"], "UID EXPUNGE removes only UID 3")
    typ, data = m.expunge()
    eq(data, [b"1"], "EXPUNGE")
    eq(ok(m.select("INBOX"), "reselect"), [b"0"], "INBOX empty")

    # EXAMINE is read-only; UNSELECT and CLOSE leave the selected state.
    ok(m.select("Work", readonly=True), "examine")
    eq(m.store("1", "+FLAGS", "(\\Seen)")[0], "NO", "STORE in EXAMINE")
    eq(raw(m, b"UNSELECT")[0], "OK", "UNSELECT")
    m.state = "AUTH"
    ok(m.select("Work"), "select Work")
    ok(m.store("3", "+FLAGS.SILENT", "(\\Deleted)"), "delete in Work")
    ok(m.close(), "close")
    eq(unq(ok(m.status("Work", "(MESSAGES)"), "status")[0]), b"Work (MESSAGES 2)", "CLOSE expunged")

    # RENAME, DELETE, ID, ENABLE.
    ok(m.rename("Work/2026", "Archive"), "rename")
    eq(unq(ok(m.status("Archive", "(MESSAGES)"), "status Archive")[0]), b"Archive (MESSAGES 1)", "renamed keeps messages")
    ok(m.delete("Archive"), "delete")
    expect_no(lambda: m.status("Archive", "(MESSAGES)"), "status deleted", "NONEXISTENT")
    # RENAME INBOX moves its messages and leaves INBOX empty (RFC 3501 6.3.5).
    for msg in (SIMPLE, MULTI):
        ok(m.append("INBOX", None, None, msg), "append before RENAME INBOX")
    ok(m.rename("INBOX", "Old"), "rename INBOX")
    eq(unq(ok(m.status("Old", "(MESSAGES)"), "status Old")[0]), b"Old (MESSAGES 2)", "RENAME INBOX moved")
    eq(unq(ok(m.status("INBOX", "(MESSAGES)"), "status INBOX")[0]), b"INBOX (MESSAGES 0)", "INBOX left empty")
    ok(m.select("Old"), "select Old")
    eq(literal_of(fetch_one(m, "2", "BODY.PEEK[]")), MULTI, "moved bytes")

    typ, data = raw(m, b'ID ("name" "imaplib")')
    eq(typ, "OK", "ID")
    eq(m.untagged_responses.pop("ID", None), [b'("name" "dovetail" "version" "0.1.0")'], "ID response")
    typ, data = raw(m, b"ENABLE CONDSTORE")
    eq(typ, "OK", "ENABLE")
    typ, data = m.logout()
    eq(typ, "BYE", "LOGOUT")


def idle_until(m, want, seconds):
    """IDLE on the selected mailbox until an untagged line containing `want` arrives."""
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    check(line.startswith(b"+"), "IDLE continuation: %r" % line)
    m.sock.settimeout(seconds)
    seen = []
    try:
        while True:
            line = m.readline()
            if not line:
                break
            seen.append(line)
            if want in line:
                break
    except socket.timeout:
        pass
    m.sock.settimeout(None)
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            check(b" OK" in line, "IDLE end: %r" % line)
            break
        seen.append(line)
    check(any(want in l for l in seen), "IDLE never saw %r: %r" % (want, seen))
    return seen


def idle(addr_watch, addr_write):
    w = login(addr_watch)
    exists = int(ok(w.select("INBOX"), "select")[0])
    a = login(addr_write)
    ok(a.append("INBOX", None, None, SIMPLE.replace(b"hello world", b"idle test")), "append")
    uid = code(a, "APPENDUID").split()[1]
    idle_until(w, b"* %d EXISTS" % (exists + 1), 30)
    data = fetch_one(w, str(exists + 1), "(UID BODY.PEEK[])")
    check(b"UID " + uid in data[0][0], "UID of the new message %r vs %r" % (data[0][0], uid))
    eq(data[0][1], SIMPLE.replace(b"hello world", b"idle test"), "the appended bytes")
    # Flags changed elsewhere arrive as FETCH; an expunge as EXPUNGE.
    ok(a.select("INBOX"), "select on the writer")
    ok(a.uid("STORE", uid.decode(), "+FLAGS.SILENT", "(\\Flagged)"), "store")
    idle_until(w, b"FLAGS (\\Flagged)", 30)
    ok(a.uid("STORE", uid.decode(), "+FLAGS.SILENT", "(\\Deleted)"), "store deleted")
    ok(a.expunge(), "expunge")
    idle_until(w, b"* %d EXPUNGE" % (exists + 1), 30)
    w.logout()
    a.logout()


def concurrent(addr_a, addr_b, n=12):
    """Two sessions, one per node, append at once. Every session sees each message once, at
    a unique UID; a UID never names another message; a message never appears below a UID
    the session already saw; at the end both nodes answer identically."""
    import hashlib
    import threading

    def subjects(m):
        typ, data = m.fetch("1:*", "(UID FLAGS BODY.PEEK[])")
        eq(typ, "OK", "fetch all")
        out = []
        for d in data:
            if isinstance(d, tuple):
                mo = re.search(rb"UID (\d+)", d[0])
                fl = re.search(rb"FLAGS \(([^)]*)\)", d[0])
                out.append((int(mo.group(1)), fl.group(1) if fl else b"", hashlib.sha256(d[1]).hexdigest()))
        return out

    class Watch:
        def __init__(self, addr):
            self.m = login(addr)
            self.m.select("INBOX")
            self.by_uid = {}
            self.highest = 0

        def poll(self, what):
            ok(self.m.noop(), "noop")
            seen = subjects(self.m)
            uids = [u for u, _, _ in seen]
            eq(uids, sorted(set(uids)), "%s: UIDs unique and ascending" % what)
            hashes = [h for _, _, h in seen]
            eq(len(hashes), len(set(hashes)), "%s: every message once" % what)
            for u, _, h in seen:
                if u in self.by_uid:
                    eq(self.by_uid[u], h, "%s: UID %d names one message" % (what, u))
                else:
                    check(u > self.highest, "%s: new UID %d below %d already seen" % (what, u, self.highest))
                    self.by_uid[u] = h
            self.highest = max([self.highest] + uids)
            return seen

    wa, wb = Watch(addr_a), Watch(addr_b)
    start = threading.Barrier(2)
    errors = []

    def writer(addr, name):
        try:
            m = login(addr)
            for i in range(n):
                start.wait(timeout=30)
                msg = b"From: %s@example.org\r\nSubject: %s %d\r\n\r\nbody %s %d\r\n" % (
                    name.encode(), name.encode(), i, name.encode(), i)
                ok(m.append("INBOX", None, None, msg), "append %s %d" % (name, i))
            m.logout()
        except BaseException as e:  # reported by the main thread
            errors.append(repr(e))

    ts = [threading.Thread(target=writer, args=(a, nm)) for a, nm in ((addr_a, "a"), (addr_b, "b"))]
    for t in ts:
        t.start()
    while any(t.is_alive() for t in ts):
        wa.poll("node A")
        wb.poll("node B")
        time.sleep(0.2)
    for t in ts:
        t.join()
    eq(errors, [], "writers")
    deadline = time.time() + 90
    while True:
        sa, sb = wa.poll("node A"), wb.poll("node B")
        if len(sa) == 2 * n and sa == sb:
            break
        check(time.time() < deadline, "no convergence: %d vs %d messages" % (len(sa), len(sb)))
        time.sleep(0.5)
    # UIDs above 2n mean clashes were renumbered (the scenario's point), reported for the log.
    print("highest UID %d for %d messages" % (max(u for u, _, _ in sa), 2 * n))
    wa.m.logout()
    wb.m.logout()


def modseqs(data):
    """(UID, MODSEQ) pairs of FETCH responses."""
    out = []
    for d in data:
        line = d[0] if isinstance(d, tuple) else d
        if line is None:
            continue
        u = re.search(rb"UID (\d+)", line)
        ms = re.search(rb"MODSEQ \((\d+)\)", line)
        if u and ms:
            out.append((int(u.group(1)), int(ms.group(1))))
    return sorted(out)


def condstore(addr_a, addr_b):
    """CONDSTORE on one node (MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE, SEARCH MODSEQ), and a
    client moving to another node with its cached HIGHESTMODSEQ: a full answer there,
    never "nothing changed"."""
    m = login(addr_a)
    check("CONDSTORE" in m.capabilities, "CONDSTORE announced")
    typ, _ = raw(m, b"ENABLE CONDSTORE")
    eq(typ, "OK", "ENABLE CONDSTORE")
    eq(m.untagged_responses.pop("ENABLED", None), [b"CONDSTORE"], "ENABLED")
    ok(m.create("Cs"), "create")
    ok(m.select("Cs"), "select")
    h0 = int(code(m, "HIGHESTMODSEQ"))
    for msg in (SIMPLE, MULTI):
        ok(m.append("Cs", None, None, msg), "append")
    ok(m.noop(), "noop")
    ms = modseqs(ok(m.uid("FETCH", "1:*", "(MODSEQ)"), "fetch modseq"))
    eq([u for u, _ in ms], [1, 2], "UIDs")
    check(h0 < ms[0][1] < ms[1][1], "MODSEQs grow: %d %r" % (h0, ms))
    h1 = int(re.search(rb"HIGHESTMODSEQ (\d+)", ok(m.status("Cs", "(HIGHESTMODSEQ)"), "status")[0]).group(1))
    eq(h1, ms[1][1], "HIGHESTMODSEQ is the last change")
    data = ok(m.uid("STORE", "1", "+FLAGS", "(\\Seen)"), "store")
    after = modseqs(data)
    check(len(after) == 1 and after[0][1] > h1, "STORE answer carries the new MODSEQ: %r" % data)
    changed = modseqs(ok(m.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % h1), "changedsince"))
    eq([u for u, _ in changed], [1], "CHANGEDSINCE finds only the changed message")
    typ, data = raw(m, b"UID STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % (ms[1][1] - 1))
    eq(typ, "OK", "conditional store")
    eq(m.untagged_responses.pop("MODIFIED", None), [b"2"], "UNCHANGEDSINCE refused a changed message")
    eq(fetch_one(m, "2", "FLAGS", uid=True)[0].split(b"FLAGS ")[1][:2], b"()", "nothing stored")
    typ, data = raw(m, b"UID STORE 2 (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)" % ms[1][1])
    eq((typ, m.untagged_responses.pop("MODIFIED", None)), ("OK", None), "unchanged: stored")
    eq(ok(m.uid("SEARCH", "MODSEQ", str(h1 + 1)), "search modseq")[0].split(b" (")[0], b"1 2", "SEARCH MODSEQ")
    h_a = int(re.search(rb"HIGHESTMODSEQ (\d+)", ok(m.status("Cs", "(HIGHESTMODSEQ)"), "status")[0]).group(1))
    eq(modseqs(ok(m.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % h_a), "none")), [], "nothing changed on A")
    m.logout()

    # The client moves to node B with its cached HIGHESTMODSEQ from node A.
    b = login(addr_b)
    deadline = time.time() + 30
    while True:
        typ, data = b.status("Cs", "(MESSAGES)")
        if typ == "OK" and b"MESSAGES 2" in data[0]:
            break
        check(time.time() < deadline, "Cs did not reach node B")
        time.sleep(0.3)
    typ, data = raw(b, b"ENABLE CONDSTORE")
    ok(b.select("Cs"), "select on B")
    h_b = int(code(b, "HIGHESTMODSEQ"))
    check(h_b != h_a, "node B's HIGHESTMODSEQ is not node A's")
    full = modseqs(ok(b.uid("FETCH", "1:*", "(FLAGS) (CHANGEDSINCE %d)" % h_a), "changedsince on B"))
    eq([u for u, _ in full], [1, 2], "a value from node A gets every message on node B")
    typ, data = raw(b, b"UID STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Draft)" % h_a)
    eq(b.untagged_responses.pop("MODIFIED", None), [b"1"], "UNCHANGEDSINCE with A's value fails on B")
    b.logout()


def login_only(addr):
    m = login(addr)
    ok(m.select("INBOX"), "select")
    m.logout()


def main():
    scenario, addrs = sys.argv[1], sys.argv[2:]
    if scenario == "flow":
        flow(addrs[0])
    elif scenario == "idle":
        idle(addrs[0], addrs[-1])
    elif scenario == "concurrent":
        concurrent(addrs[0], addrs[1])
    elif scenario == "condstore":
        condstore(addrs[0], addrs[1])
    elif scenario == "login":
        login_only(addrs[0])
    else:
        raise SystemExit("unknown scenario " + scenario)
    print("ok", scenario)


if __name__ == "__main__":
    main()
