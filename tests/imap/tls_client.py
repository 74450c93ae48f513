"""Real-client checks of dovetail's IMAP TLS (imaps, STARTTLS), login policy and modified
UTF-7 mailbox names, with python3's imaplib and ssl.

Usage: tls_client.py SCENARIO CAFILE HOST:PORT [HOST:PORT ...]
Exits non-zero (with the failing check) when a response is not exactly what it must be.
Scenarios: imaps, starttls, plain (loopback plaintext login), injection, remote
(non-loopback address: LOGINDISABLED then STARTTLS), remote_allowed
(--imap-allow-plaintext-login), mutf7, reset (clients vanishing mid-session).
"""

import imaplib
import os
import socket
import ssl
import struct
import sys
import time

# The helpers of client.py, without leaving a __pycache__ in the source tree.
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from client import USER, PASSWORD, SIMPLE, check, eq, ok, code, fetch_one, literal_of, raw  # noqa: E402


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = True
    return ctx


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def caps_of(m):
    typ, data = m.capability()
    eq(typ, "OK", "CAPABILITY")
    return data[0].decode().upper().split()


def session_checks(m, what):
    """Login done: SELECT, APPEND, FETCH with exact values."""
    typ, data = m.select("INBOX")
    eq(typ, "OK", what + " select")
    before = int(data[0])
    typ, data = m.append("INBOX", "(\\Flagged)", None, SIMPLE)
    eq(typ, "OK", what + " append")
    appenduid = code(m, "APPENDUID")
    check(appenduid is not None, what + " APPENDUID missing")
    uid = appenduid.split()[1].decode() if isinstance(appenduid, bytes) else appenduid.split()[1]
    m.noop()
    data = fetch_one(m, uid, "(FLAGS BODY.PEEK[])", uid=True)
    eq(literal_of(data), SIMPLE, what + " BODY[] bytes")
    meta = b"".join(d[0] if isinstance(d, tuple) else d for d in data)
    check(b"FLAGS (\\Flagged)" in meta, what + " flags %r" % (data,))
    typ, data = m.search(None, "ALL")
    eq(typ, "OK", what + " search")
    eq(len(data[0].split()), before + 1, what + " messages after the append")
    return uid


def imaps(cafile, addr):
    host, port = split(addr)
    m = imaplib.IMAP4_SSL(host, port, ssl_context=context(cafile))
    check(m.sock.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % m.sock.version())
    caps = caps_of(m)
    check("AUTH=PLAIN" in caps, "imaps: AUTH=PLAIN missing from %r" % caps)
    check("STARTTLS" not in caps, "imaps offers STARTTLS: %r" % caps)
    check("LOGINDISABLED" not in caps, "imaps: LOGINDISABLED %r" % caps)
    ok(m.login(USER, PASSWORD), "imaps login")
    session_checks(m, "imaps")
    # STARTTLS on a TLS connection is refused.
    typ, data = raw(m, b"STARTTLS")
    check(typ in ("BAD", "ERR"), "STARTTLS over imaps: %r %r" % (typ, data))
    eq(m.logout()[0], "BYE", "imaps logout")
    # A client that does not trust the certificate gets no session.
    try:
        imaplib.IMAP4_SSL(host, port, ssl_context=ssl.create_default_context())
        raise SystemExit("FAILED: an untrusted certificate was accepted")
    except ssl.SSLCertVerificationError:
        pass


def starttls(cafile, addr):
    host, port = split(addr)
    m = imaplib.IMAP4(host, port)
    caps = caps_of(m)
    check("STARTTLS" in caps, "plaintext listener does not offer STARTTLS: %r" % caps)
    typ, data = m.starttls(ssl_context=context(cafile))
    eq(typ, "OK", "STARTTLS %r" % (data,))
    # imaplib re-reads the capabilities after STARTTLS (RFC 3501 6.2.1).
    caps = [c.upper() for c in m.capabilities]
    check("STARTTLS" not in caps, "STARTTLS still offered after TLS: %r" % caps)
    check("AUTH=PLAIN" in caps, "AUTH=PLAIN missing after STARTTLS: %r" % caps)
    check(m.sock.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % m.sock.version())
    ok(m.login(USER, PASSWORD), "login after STARTTLS")
    session_checks(m, "starttls")
    eq(m.logout()[0], "BYE", "logout")


def plain(cafile, addr):
    host, port = split(addr)
    m = imaplib.IMAP4(host, port)
    caps = caps_of(m)
    check("AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps, "loopback caps %r" % caps)
    ok(m.login(USER, PASSWORD), "plaintext login from loopback")
    session_checks(m, "plain")
    # STARTTLS is allowed only before login.
    typ, data = raw(m, b"STARTTLS")
    check(typ in ("BAD", "ERR"), "STARTTLS after login: %r %r" % (typ, data))
    eq(m.logout()[0], "BYE", "logout")


def read_line(s):
    """One CRLF-terminated line, read byte by byte (nothing after it is consumed)."""
    out = b""
    while not out.endswith(b"\r\n"):
        b = s.recv(1)
        check(b != b"", "connection closed after %r" % out)
        out += b
    return out


def injection(cafile, addr):
    """STARTTLS command injection: a command sent in plaintext after STARTTLS, in the same
    write, must not be answered, in plaintext or in TLS (RFC 3501 6.2.1)."""
    host, port = split(addr)
    s = socket.create_connection((host, port), timeout=10)
    greeting = read_line(s)
    check(greeting.startswith(b"* OK "), "greeting %r" % greeting)
    s.sendall(b"a STARTTLS\r\nb CAPABILITY\r\n")
    line = read_line(s)
    check(line.startswith(b"a OK "), "STARTTLS answer %r" % line)
    # Nothing more in plaintext: the server now waits for the ClientHello.
    s.settimeout(0.5)
    try:
        more = s.recv(1, socket.MSG_PEEK)
        raise SystemExit("FAILED: plaintext after the STARTTLS OK: %r" % more)
    except socket.timeout:
        pass
    s.settimeout(10)
    t = context(cafile).wrap_socket(s, server_hostname="localhost")
    # `b` must not be answered in TLS either.
    t.settimeout(1.5)
    got = b""
    try:
        while True:
            d = t.recv(4096)
            if not d:
                break
            got += d
    except socket.timeout:
        pass
    eq(got, b"", "bytes in TLS before any command (the injected command answered?)")
    t.settimeout(10)
    t.sendall(b"c CAPABILITY\r\n")
    got = b""
    while b"c OK" not in got:
        d = t.recv(4096)
        check(d != b"", "closed: %r" % got)
        got += d
    lines = got.split(b"\r\n")
    check(not any(x.startswith(b"b ") for x in lines), "injected command answered: %r" % got)
    check(lines[0].startswith(b"* CAPABILITY ") and b"STARTTLS" not in lines[0], "%r" % got)
    check(b"AUTH=PLAIN" in lines[0], "no AUTH=PLAIN after STARTTLS: %r" % got)
    t.sendall(b"d LOGIN alice \"correct horse\"\r\n")
    got = b""
    while b"d " not in got:
        got += t.recv(4096)
    check(b"d OK" in got, "login after STARTTLS: %r" % got)
    t.close()


def remote(cafile, addr):
    """A non-loopback client: no plaintext logins, then STARTTLS makes them possible."""
    host, port = split(addr)
    m = imaplib.IMAP4(host, port)
    caps = caps_of(m)
    check("LOGINDISABLED" in caps, "LOGINDISABLED missing for %s: %r" % (host, caps))
    check("AUTH=PLAIN" not in caps, "AUTH=PLAIN offered in plaintext: %r" % caps)
    check("STARTTLS" in caps, "STARTTLS missing: %r" % caps)
    # imaplib refuses to send LOGIN under LOGINDISABLED: sent raw.
    typ, data = raw(m, b'LOGIN alice "correct horse"')
    eq(typ, "NO", "plaintext LOGIN from %s: %r" % (host, data))
    check(b"[PRIVACYREQUIRED]" in data[0], "no PRIVACYREQUIRED: %r" % data)
    typ, data = raw(m, b"AUTHENTICATE PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=")
    eq(typ, "NO", "AUTHENTICATE PLAIN in plaintext: %r" % data)
    check(b"[PRIVACYREQUIRED]" in data[0], "no PRIVACYREQUIRED: %r" % data)
    ok(m.starttls(ssl_context=context(cafile)), "STARTTLS from %s" % host)
    caps = [c.upper() for c in m.capabilities]
    check("LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps, "after STARTTLS: %r" % caps)
    ok(m.login(USER, PASSWORD), "login after STARTTLS from %s" % host)
    eq(m.logout()[0], "BYE", "logout")


def remote_allowed(cafile, addr):
    host, port = split(addr)
    m = imaplib.IMAP4(host, port)
    caps = caps_of(m)
    check("AUTH=PLAIN" in caps and "LOGINDISABLED" not in caps, "allowed: %r" % caps)
    ok(m.login(USER, PASSWORD), "plaintext login from %s with the flag" % host)
    session_checks(m, "remote_allowed")
    eq(m.logout()[0], "BYE", "logout")


def list_names(m, pattern="*"):
    typ, data = m.list('""', pattern)
    eq(typ, "OK", "LIST")
    return sorted(d.decode().split(' "/" ', 1)[1].strip('"') for d in data if d)


def mutf7(cafile, addr):
    """Names on the wire are modified UTF-7. `Entwürfe` was created by the CLI in UTF-8."""
    host, port = split(addr)
    m = imaplib.IMAP4(host, port)
    ok(m.login(USER, PASSWORD), "login")
    eq(list_names(m), ["Entw&APw-rfe", "INBOX"], "LIST of the CLI's UTF-8 name")
    ok(m.create("&AMQ-pfel"), "CREATE &AMQ-pfel (Äpfel)")
    ok(m.create("Caf&AOk-/&ZeVnLIqe-"), "CREATE Café/日本語")
    ok(m.create('"Tom &- Jerry"'), "CREATE Tom & Jerry")
    # Invalid modified UTF-7 is refused with a clear text, and nothing is created.
    for bad in (b"&AMQ", b"&AGE-", b"&AM-", b"&A.Q-"):
        typ, data = raw(m, b"CREATE " + bad)
        check(typ in ("NO", "BAD", "ERR"), "CREATE %r: %r %r" % (bad, typ, data))
        check(b"modified UTF-7" in data[0], "CREATE %r text: %r" % (bad, data))
    typ, data = raw(m, b'CREATE "Entw\xc3\xbcrfe2"')
    check(typ in ("NO", "BAD", "ERR"), "CREATE with 8-bit: %r %r" % (typ, data))
    want = ["&AMQ-pfel", "Caf&AOk-/&ZeVnLIqe-", "Entw&APw-rfe", "INBOX", "Tom &- Jerry"]
    eq(list_names(m), want, "LIST after CREATE")
    eq(list_names(m, "Caf&AOk-/%"), ["Caf&AOk-/&ZeVnLIqe-"], "LIST with an encoded pattern")
    eq(list_names(m, "&AMQ-*"), ["&AMQ-pfel"], "LIST &AMQ-*")
    typ, data = raw(m, b'LIST "" "&AMQ"')
    check(typ in ("NO", "BAD", "ERR") and b"modified UTF-7" in data[0], "LIST bad pattern %r" % data)
    # SELECT, APPEND, STATUS, COPY, SUBSCRIBE, RENAME by encoded name.
    ok(m.append("&AMQ-pfel", None, None, SIMPLE), "APPEND to &AMQ-pfel")
    typ, data = m.status("&AMQ-pfel", "(MESSAGES)")
    eq(typ, "OK", "STATUS")
    eq(data[0], b"&AMQ-pfel (MESSAGES 1)", "STATUS response")
    typ, data = m.select("&AMQ-pfel")
    eq((typ, data), ("OK", [b"1"]), "SELECT &AMQ-pfel")
    ok(m.copy("1", "Entw&APw-rfe"), "COPY to Entw&APw-rfe")
    # A target that is not a name: NO, and no TRYCREATE (a CREATE would fail the same way);
    # a valid name that does not exist: NO [TRYCREATE] (RFC 3501 6.3.11, 6.4.7).
    msg = b"Subject: x\r\n\r\nhi\r\n"
    lit = b" {%d+}\r\n" % len(msg) + msg
    for cmd in (b"APPEND &AMQ" + lit, b"COPY 1 &AMQ", b"UID COPY 1:* &AMQ"):
        typ, data = raw(m, cmd)
        eq(typ, "NO", "%r" % cmd)
        check(b"TRYCREATE" not in data[0] and b"modified UTF-7" in data[0], "%r: %r" % (cmd, data))
    for cmd in (b"APPEND Nowhere" + lit, b"COPY 1 Nowhere"):
        typ, data = raw(m, cmd)
        eq(typ, "NO", "%r" % cmd)
        check(data[0].startswith(b"[TRYCREATE]"), "%r: %r" % (cmd, data))
    ok(m.subscribe("&AMQ-pfel"), "SUBSCRIBE")
    typ, data = m.lsub('""', "*")
    eq(typ, "OK", "LSUB")
    eq([d.decode().split(' "/" ', 1)[1].strip('"') for d in data], ["&AMQ-pfel"], "LSUB")
    m.close()
    ok(m.rename('"Tom &- Jerry"', "&AMQ-rger"), "RENAME to Ärger")
    typ, data = m.status("Entw&APw-rfe", "(MESSAGES)")
    eq(data[0], b"Entw&APw-rfe (MESSAGES 1)", "STATUS after COPY")
    want = ["&AMQ-pfel", "&AMQ-rger", "Caf&AOk-/&ZeVnLIqe-", "Entw&APw-rfe", "INBOX"]
    eq(list_names(m), want, "LIST after RENAME")
    eq(m.logout()[0], "BYE", "logout")


def rst_close(sock):
    """Closes with a TCP reset (SO_LINGER 0), so the server's next write fails (EPIPE)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def reset(cafile, addr):
    """Clients that vanish mid-session (TCP reset, no close_notify): the node ends those
    sessions and keeps serving. A node killed by SIGPIPE on its TLS write failed this."""
    host, port = split(addr)
    # A 4 MB message: its FETCH outgrows the socket buffers, so the node is mid-write when
    # the reset arrives.
    big = b"From: a@example.org\r\nSubject: big\r\n\r\n" + b"0123456789abcdef" * 62 * 4096 + b"\r\n"
    big = big.replace(b"f0", b"\r\n")
    m = imaplib.IMAP4_SSL(host, port, ssl_context=context(cafile))
    ok(m.login(USER, PASSWORD), "login")
    typ, data = m.append("INBOX", None, None, big)
    eq(typ, "OK", "append the big message")
    uid = code(m, "APPENDUID").split()[1]
    uid = uid.decode() if isinstance(uid, bytes) else uid
    eq(m.logout()[0], "BYE", "logout")
    for round in range(6):
        m = imaplib.IMAP4_SSL(host, port, ssl_context=context(cafile))
        ok(m.login(USER, PASSWORD), "login before reset %d" % round)
        m.select("INBOX")
        if round % 2:
            # Mid-response.
            m.send(("r UID FETCH %s (BODY.PEEK[])\r\n" % uid).encode())
        else:
            # Between the BYE and the node's TLS close_notify.
            m.send(b"r LOGOUT\r\n")
        m.sock.recv(1024)
        rst_close(m.sock)
        time.sleep(0.1)
    # imaplib closes as soon as it has read LOGOUT's OK: the node's close_notify then
    # meets a closed socket (about one time in two, it was what killed the node).
    for round in range(10):
        m = imaplib.IMAP4_SSL(host, port, ssl_context=context(cafile))
        ok(m.login(USER, PASSWORD), "login before logout %d" % round)
        eq(m.logout()[0], "BYE", "logout %d" % round)
        time.sleep(0.05)
    m = imaplib.IMAP4_SSL(host, port, ssl_context=context(cafile))
    ok(m.login(USER, PASSWORD), "login after resets")
    eq(m.select("INBOX")[0], "OK", "select after resets")
    eq(m.logout()[0], "BYE", "logout")


def main():
    scenario, cafile, addrs = sys.argv[1], sys.argv[2], sys.argv[3:]
    fns = {
        "imaps": imaps,
        "starttls": starttls,
        "plain": plain,
        "injection": injection,
        "remote": remote,
        "remote_allowed": remote_allowed,
        "mutf7": mutf7,
        "reset": reset,
    }
    fns[scenario](cafile, *addrs)
    print("ok " + scenario)


if __name__ == "__main__":
    main()
