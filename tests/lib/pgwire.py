#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/lib/pgwire.py: a raw PostgreSQL wire client for integration tests that
# psql cannot express (GSSENC then SSL, buffer stuffing, direct TLS, cancel
# inside TLS, silent clients). Each subcommand prints one result line.
import os
import socket
import ssl
import struct
import sys
import time

SSL_CODE, GSS_CODE, CANCEL_CODE = 80877103, 80877104, 80877102


def connect(port, host="127.0.0.1"):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("eof after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def client_ctx(alpn=None, cert=None, key=None):
    """A client context that does not check the server's certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def tls(s, alpn=None, cert=None, key=None):
    return client_ctx(alpn, cert, key).wrap_socket(s, server_hostname="localhost")


def ssl_request(s):
    s.sendall(struct.pack("!II", 8, SSL_CODE))
    return recv_exact(s, 1)


def startup_packet(user="app", db="app"):
    body = struct.pack("!I", 0x30000)
    for k, v in (("user", user), ("database", db)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_msg(s):
    hdr = recv_exact(s, 5)
    typ, ln = hdr[:1], struct.unpack("!I", hdr[1:])[0]
    return typ, recv_exact(s, ln - 4)


def error_fields(body):
    out = {}
    for part in body.split(b"\0"):
        if part:
            out[chr(part[0])] = part[1:].decode(errors="replace")
    return out


def until_ready(s):
    """Read messages until ReadyForQuery; return (sqlstate or None, backend key)."""
    key = None
    while True:
        typ, body = read_msg(s)
        if typ == b"E":
            return error_fields(body).get("C"), key
        if typ == b"K":
            key = body
        if typ == b"Z":
            return None, key


def frame(typ, body=b""):
    """A protocol message after the startup packet: type byte, length, body."""
    return typ + struct.pack("!I", len(body) + 4) + body


def send_query(s, sql):
    """Send a simple Query message."""
    s.sendall(frame(b"Q", sql.encode() + b"\0"))


def query(s, sql):
    send_query(s, sql)
    return until_ready(s)[0]


def tls_up(port, **kw):
    """SSLRequest, 'S', TLS handshake: a TLS socket before any startup packet."""
    s = connect(port)
    if ssl_request(s) != b"S":
        raise RuntimeError("no S")
    return tls(s, **kw)


def session(port, **kw):
    t = tls_up(port, **kw)
    t.sendall(startup_packet())
    return t


def cmd_gss_then_ssl(port):
    s = connect(port)
    s.sendall(struct.pack("!II", 8, GSS_CODE))
    a = recv_exact(s, 1)
    b = ssl_request(s)
    t = tls(s)
    t.sendall(startup_packet())
    st, _ = until_ready(t)
    print("%s %s %s" % (a.decode(), b.decode(), st or "ready"))


def cmd_stuffing(port):
    s = connect(port)
    s.sendall(struct.pack("!II", 8, SSL_CODE) + b"\x16\x03\x01junk-after-sslrequest")
    try:
        typ, body = read_msg(s)
        print("%s %s" % (typ.decode(), error_fields(body).get("C")))
    except (EOFError, ConnectionResetError) as e:
        print("closed %s" % e)


def cmd_plain_startup(port):
    s = connect(port)
    s.sendall(startup_packet())
    typ, body = read_msg(s)
    f = error_fields(body)
    print("%s %s %s" % (typ.decode(), f.get("C"), f.get("M")))


def cmd_raw_length(port, length):
    s = connect(port)
    s.sendall(struct.pack("!i", int(length)) + struct.pack("!I", 0x30000))
    try:
        typ, body = read_msg(s)
        print("%s %s" % (typ.decode(), error_fields(body).get("C")))
    except (EOFError, ConnectionResetError) as e:
        print("closed %s" % e)


def cmd_direct(port, alpn, cert=None, keyfile=None, user="app"):
    s = connect(port)
    try:
        t = tls(s, alpn=[alpn] if alpn != "none" else None, cert=cert, key=keyfile)
    except ssl.SSLError as e:
        print("refused %s" % (e.reason or e))
        return
    t.sendall(startup_packet(user))
    st, _ = until_ready(t)
    print("%s alpn=%s" % (st or "ready", t.selected_alpn_protocol()))


def cmd_late_startup(port, cert, keyfile, go_file, max_s):
    """TLS handshake with a client certificate, then the startup packet only once
    go_file exists: prints "tls" when the handshake is done, then the answer."""
    t = tls_up(port, cert=cert, key=keyfile)
    print("tls", flush=True)
    end = time.monotonic() + float(max_s)
    while not os.path.exists(go_file) and time.monotonic() < end:
        time.sleep(0.05)
    t.sendall(startup_packet())
    st, _ = until_ready(t)
    print(st or "ready")


def cmd_direct_frag(port, sizes):
    """Direct TLS whose ClientHello goes out cut into TLS records of the given sizes
    ("1,2,3": the rest in one more record), all in one write, as RFC 8446 allows.
    Prints "ready alpn=... value=N" after a query, or "refused ..."."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    t = client_ctx(["postgresql"]).wrap_bio(inc, out, server_hostname="localhost")
    s = connect(port)
    s.settimeout(20)

    def step():
        try:
            t.do_handshake()
            return True
        except ssl.SSLWantReadError:
            return False

    step()
    hello = out.read()
    assert hello[0] == 0x16, "a handshake record"
    body = hello[5:5 + struct.unpack("!H", hello[3:5])[0]]
    cut, pos = [], 0
    for n in [int(x) for x in sizes.split(",")] + [len(body)]:
        if pos < len(body):
            cut.append(body[pos:pos + n])
            pos += n
    s.sendall(b"".join(hello[:3] + struct.pack("!H", len(c)) + c for c in cut)
              + hello[5 + len(body):])
    try:
        while not step():
            data = s.recv(65536)
            if not data:
                print("refused closed")
                return
            inc.write(data)
            s.sendall(out.read())
    except (ssl.SSLError, ConnectionResetError) as e:
        print("refused %s" % e)
        return
    s.sendall(out.read())

    class Wrapped:  # read_msg/until_ready over the memory BIO pair
        def recv(self, n):
            while True:
                try:
                    return t.read(n)
                except ssl.SSLWantReadError:
                    data = s.recv(65536)
                    if not data:
                        return b""
                    inc.write(data)

        def sendall(self, b):
            t.write(b)
            s.sendall(out.read())

    w = Wrapped()
    w.sendall(startup_packet())
    st, _ = until_ready(w)
    print("%s alpn=%s value=%s" % (st or "ready", t.selected_alpn_protocol(),
                                   query_value(w, "select 40+2") if not st else "-"))


def ready():
    """Tell a waiting test that the setup is done: write to $PGWIRE_READY if set."""
    path = os.environ.get("PGWIRE_READY")
    if path:
        with open(path, "w") as f:
            f.write("ready\n")


def query_value(s, sql):
    """Run sql, return the first column of the first row (text), or None."""
    send_query(s, sql)
    value = None
    while True:
        typ, body = read_msg(s)
        if typ == b"D" and value is None and struct.unpack("!h", body[:2])[0] > 0:
            ln = struct.unpack("!i", body[2:6])[0]
            value = body[6:6 + ln].decode() if ln >= 0 else None
        if typ == b"Z":
            return value


def cmd_unread_tail(port):
    """A bad startup length with bytes behind it that the sidecar never reads: after
    the ErrorResponse, does the connection end with a FIN or a reset?"""
    s = connect(port)
    s.sendall(b"\0\0\0\x07" + b"x" * 64)
    typ, body = read_msg(s)
    try:
        end = "fin" if s.recv(1) == b"" else "data"
    except ConnectionResetError:
        end = "reset"
    print("%s %s %s" % (typ.decode(), error_fields(body).get("C"), end))


def cmd_header_only(port, length):
    """A 4-byte startup length and nothing after it: answered at once, or only at the
    handshake timeout? Prints the answer and how long it took."""
    s = connect(port)
    s.settimeout(30)
    t0 = time.monotonic()
    s.sendall(struct.pack("!i", int(length)))
    try:
        typ, body = read_msg(s)
        out = "%s %s" % (typ.decode(), error_fields(body).get("C"))
    except (EOFError, ConnectionResetError) as e:
        out = "closed %s" % type(e).__name__
    print("%s [%d ms]" % (out, (time.monotonic() - t0) * 1000))


def cmd_gss_stuffing(port):
    """GSSENCRequest with an SSLRequest behind it in the same write."""
    s = connect(port)
    s.sendall(struct.pack("!II", 8, GSS_CODE) + struct.pack("!II", 8, SSL_CODE))
    try:
        first = recv_exact(s, 1)
        if first != b"E":
            print("answered %s" % first.decode(errors="replace"))
            return
        ln = struct.unpack("!I", recv_exact(s, 4))[0]
        f = error_fields(recv_exact(s, ln - 4))
        print("E %s %s" % (f.get("C"), f.get("M")))
    except (EOFError, ConnectionResetError) as e:
        print("closed %s" % e)


def cmd_gss_then_direct(port):
    """GSSENCRequest answered N, then a direct-TLS ClientHello: not a connection's first bytes."""
    s = connect(port)
    s.sendall(struct.pack("!II", 8, GSS_CODE))
    recv_exact(s, 1)
    try:
        t = tls(s, alpn=["postgresql"])
    except (ssl.SSLError, OSError) as e:
        print("refused %s" % type(e).__name__)
        return
    t.sendall(startup_packet())
    st, _ = until_ready(t)
    print("accepted %s" % (st or "ready"))


def cmd_tls_packet(port, kind):
    """A startup packet inside TLS: proto4 (protocol 4.0) or nouser (no user name)."""
    t = tls_up(port)
    if kind == "proto4":
        body = struct.pack("!I", 0x40000) + b"user\0app\0\0"
    else:
        body = struct.pack("!I", 0x30000) + b"database\0app\0\0"
    t.sendall(struct.pack("!I", len(body) + 4) + body)
    typ, body = read_msg(t)
    f = error_fields(body)
    print("%s %s %s" % (typ.decode(), f.get("C"), f.get("M")))


def cmd_tls_startup(port):
    """Startup through TLS; prints the first answer and, in brackets, how long from
    connect to that answer (the interpreter's own start not counted)."""
    t0 = time.monotonic()
    t = session(port)
    typ, body = read_msg(t)
    ms = int((time.monotonic() - t0) * 1000)
    if typ == b"E":
        f = error_fields(body)
        print("E %s %s [%d ms]" % (f.get("C"), f.get("M"), ms))
    else:
        print("ok %s [%d ms]" % (typ.decode(), ms))


def cmd_tls_cancel(port, cert=None, keyfile=None):
    """A query cancelled by a CancelRequest inside TLS; every connection presents the
    client certificate cert (with keyfile) when given."""
    kw = {"cert": cert, "key": keyfile} if cert else {}
    a = session(port, **kw)
    st, key = until_ready(a)
    if st or not key:
        print("no session %s" % st)
        return
    t0 = time.monotonic()
    send_query(a, "select pg_sleep(20) -- tls-cancel")
    # cancel once the query runs: a cancel that arrives first is lost
    c = session(port, **kw)
    until_ready(c)
    for _ in range(100):
        if query_value(c, "select count(*) from pg_stat_activity where state = 'active' "
                          "and query like '%-- tls-cancel'") != "0":
            break
        time.sleep(0.1)
    c.close()
    b = connect(port)
    if ssl_request(b) != b"S":
        print("no S for cancel")
        return
    bt = tls(b, **kw)
    bt.sendall(struct.pack("!II", 8 + len(key), CANCEL_CODE) + key)
    bt.recv(1)  # the sidecar closes once the pooler has the cancel
    st, _ = until_ready(a)
    print("%s %.1f" % (st, time.monotonic() - t0))


def cmd_silent(port, partial):
    s = connect(port)
    s.settimeout(30)
    if partial == "ssl":
        s.sendall(struct.pack("!II", 8, SSL_CODE)[:5])
    t0 = time.monotonic()
    try:
        data = s.recv(100)
        print("eof %.1f %d" % (time.monotonic() - t0, len(data)))
    except ConnectionResetError:
        print("eof %.1f reset" % (time.monotonic() - t0))
    except socket.timeout:
        print("open %.1f" % (time.monotonic() - t0))


def cmd_close_notify(port):
    t = session(port)
    st, _ = until_ready(t)
    t.unwrap()  # send close_notify, wait for the server's
    print("unwrapped %s" % (st or "ready"))


def cmd_fatal_alert(port):
    """Make the client send a fatal alert: corrupt a server record on its way in."""
    s = connect(port)
    if ssl_request(s) != b"S":
        raise RuntimeError("no S")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            if out.pending:
                s.sendall(out.read())
            inc.write(s.recv(65536))
    if out.pending:
        s.sendall(out.read())
    obj.write(startup_packet())
    s.sendall(out.read())
    hdr = recv_exact(s, 5)
    body = bytearray(recv_exact(s, struct.unpack("!H", hdr[3:5])[0]))
    body[-1] ^= 0xFF
    inc.write(hdr + bytes(body))
    try:
        obj.read(100)
        print("no error")
        return
    except ssl.SSLError as e:
        reason = e.reason
    s.sendall(out.read())
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
        print("alert %s closed" % reason)
    except ConnectionResetError:
        print("alert %s reset" % reason)


def cmd_slowloris(port, n, timeout_s):
    """n clients: silent, partial SSLRequest, partial ClientHello, byte by byte.
    Prints how many the sidecar closed, and when the last one went."""
    import selectors
    n, timeout_s = int(n), float(timeout_s)
    sel = selectors.DefaultSelector()
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    ssl_req = struct.pack("!II", 8, SSL_CODE)
    socks = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", int(port)))
        socks.append((s, [b"", ssl_req[:7], hello][i % 3]))
    t0 = time.monotonic()
    time.sleep(0.2)
    for s, _ in socks:
        sel.register(s, selectors.EVENT_READ)
    ready()
    closed, last, sent = 0, 0.0, 0
    while closed < n and time.monotonic() - t0 < timeout_s:
        # dribble one more byte of each partial message every 100 ms
        if sent < 7:
            for s, msg in socks:
                if sent < len(msg):
                    try:
                        s.send(msg[sent:sent + 1])
                    except OSError:
                        pass
            sent += 1
        for key, _ in sel.select(0.1):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(key.fileobj)
                closed += 1
                last = time.monotonic() - t0
    print("closed %d of %d last %.1f" % (closed, n, last))


def cmd_garbage(port, kind):
    s = connect(port)
    payload = {
        "random": bytes(range(256)) * 4,
        "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "sslv2": b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10" + b"\x07\x00\xc0" * 7 + b"A" * 16,
        "tls-garbage": b"\x16\x03\x01\x00\x10" + b"\xff" * 16,
    }[kind]
    s.sendall(payload)
    s.settimeout(10)
    got = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            got += d
    except ConnectionResetError:
        pass
    print("closed %s %s" % (got[:1].hex() or "-", len(got)))


def cmd_flood(port, n, hold_s):
    """Open n TCP connections at once; count the ones closed by the server at once,
    and those of them told why with PostgreSQL's FATAL 53300 (too many clients)."""
    n = int(n)
    socks = [socket.create_connection(("127.0.0.1", int(port)), timeout=5) for _ in range(n)]
    ready()
    time.sleep(float(hold_s))
    closed = fatal = 0
    for s in socks:
        s.setblocking(False)
        got = b""
        try:
            while True:
                b = s.recv(4096)
                if not b:
                    closed += 1
                    break
                got += b
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
        if got[:1] == b"E" and b"SFATAL\x00" in got and b"C53300\x00" in got:
            fatal += 1
    for s in socks:
        s.close()
    print("refused %d of %d fatal %d" % (closed, n, fatal))


def cmd_rst_storm(port, n, how="rst"):
    """n sessions that, in the middle of a query, reset the connection (rst) or
    half-close it with a bare FIN and no close_notify (fin)."""
    n = int(n)
    for _ in range(n):
        t = session(port)
        until_ready(t)
        send_query(t, "select repeat('x', 100000)")
        if how == "fin":
            t.shutdown(socket.SHUT_WR)
            t.settimeout(10)
            try:
                while t.recv(65536):
                    pass
            except (OSError, ssl.SSLError):
                pass
        else:
            t.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        t.close()
    print("done %d" % n)


def cmd_query_fin(port, n):
    """n sessions that send a short query and, right behind it, a bare FIN (no
    close_notify); each must see the sidecar's EOF within 4 s. Prints "eof K of N"."""
    n, eofs = int(n), 0
    for _ in range(n):
        t = session(port)
        until_ready(t)
        send_query(t, "select 1")
        raw = socket.socket(fileno=t.detach())  # the FIN leaves with the query's record
        raw.shutdown(socket.SHUT_WR)
        raw.settimeout(4)
        try:
            while raw.recv(65536):
                pass
            eofs += 1
        except OSError:
            pass
        raw.close()
    print("eof %d of %d" % (eofs, n))


def cmd_echo_server(port, slow="0"):
    """A backend that echoes every byte back, reading and writing in random sizes;
    slow=1: a pause of a second after the first read, so that the sidecar's sends to
    it wait and its reads of the client stop.
    Logs the byte count of each connection at its EOF."""
    import random
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(64)

    def serve(c):
        rnd = random.Random()
        total = 0
        with c:
            while True:
                d = c.recv(rnd.randint(1, 65536))
                if not d:
                    print("eof %d" % total, flush=True)
                    c.shutdown(socket.SHUT_WR)
                    return
                total += len(d)
                if slow == "1" and total == len(d):
                    time.sleep(1.0)
                while d:
                    n = rnd.randint(1, len(d))
                    c.sendall(d[:n])
                    d = d[n:]

    print("listening", flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def cmd_stall_server(port):
    """A pooler that logs anyone in, answers each session's first query with the first
    15 bytes of a 105-byte DataRow, and then says nothing more."""
    import threading
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(16)

    def serve(c):
        with c:
            n = struct.unpack("!I", recv_exact(c, 4))[0]
            recv_exact(c, n - 4)  # the startup packet
            c.sendall(frame(b"R", struct.pack("!I", 0)) + frame(b"Z", b"I"))
            read_msg(c)
            c.sendall(b"D" + struct.pack("!I", 104) + b"\0\1" + b"x" * 8)
            time.sleep(120)

    print("listening", flush=True)
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def cmd_half_answer(port, max_s):
    """Log in, send a query, and read what comes back until the server closes (or max_s
    seconds pass; $PGWIRE_READY is written once 15 bytes came): prints "closed|open N
    bytes", and " FATAL" where an ErrorResponse of severity FATAL is among them."""
    t = session(port)
    err, _ = until_ready(t)
    if err:
        print("error %s" % err)
        return
    send_query(t, "select 1")
    t.settimeout(float(max_s))
    data, what = b"", "open"
    try:
        while True:
            d = t.recv(65536)
            if not d:
                what = "closed"
                break
            data += d
            if len(data) >= 15 and len(data) - len(d) < 15:
                ready()  # the partial answer is here
    except socket.timeout:
        pass
    except (ConnectionResetError, ssl.SSLError, OSError):
        what = "closed"
    print("%s %d bytes%s" % (what, len(data), " FATAL" if b"SFATAL\0" in data else ""))


def cmd_unsynced(port, table, wait_s):
    """An INSERT as an extended-protocol batch with no Sync (Parse, Bind, Execute, Flush),
    as pipelining clients send it; $PGWIRE_READY once its CommandComplete came, then
    wait_s seconds, then the Sync. Prints the message types that came after the Sync
    up to the close, e.g. "Z E57P01 closed"."""
    t = session(port)
    err, _ = until_ready(t)
    if err:
        print("error %s" % err)
        return
    sql = ("insert into %s values (1)" % table).encode() + b"\0"
    t.sendall(frame(b"P", b"\0" + sql + b"\0\0") + frame(b"B", b"\0\0" + b"\0\0" * 3)
              + frame(b"E", b"\0" + b"\0\0\0\0") + frame(b"H"))
    while True:
        typ, body = read_msg(t)
        if typ == b"C":
            break
        if typ == b"E":
            print("error before the Sync: %s" % error_fields(body).get("C"))
            return
    ready()
    time.sleep(float(wait_s))
    out = []
    try:
        t.sendall(frame(b"S"))
        t.settimeout(20)
        while True:
            typ, body = read_msg(t)
            out.append("E" + error_fields(body).get("C", "") if typ == b"E" else typ.decode())
    except (EOFError, ConnectionResetError, ssl.SSLError, OSError) as e:
        out.append("open" if isinstance(e, socket.timeout) else "closed")
    print(" ".join(out))


def cmd_flush_query(port, sleep_s, max_s):
    """select pg_sleep(sleep_s) as Parse, Bind, Execute and Flush with no Sync, as
    libpq's pipeline mode sends it with PQsendFlushRequest; then the Sync once its
    CommandComplete came. Prints the message types that came (e.g. "1 2 D C Z"),
    "E<SQLSTATE>" for an ErrorResponse, then "closed" or "open" (nothing for max_s
    seconds) where it did not get that far."""
    t = session(port)
    err, _ = until_ready(t)
    if err:
        print("error %s" % err)
        return
    sql = ("select pg_sleep(%s)" % float(sleep_s)).encode() + b"\0"
    t.sendall(frame(b"P", b"\0" + sql + b"\0\0") + frame(b"B", b"\0\0" + b"\0\0" * 3)
              + frame(b"E", b"\0" + b"\0\0\0\0") + frame(b"H"))
    t.settimeout(float(max_s))
    out = []
    try:
        while True:
            typ, body = read_msg(t)
            out.append("E" + error_fields(body).get("C", "") if typ == b"E" else typ.decode())
            if typ == b"C":
                t.sendall(frame(b"S"))
            if typ in (b"Z", b"E"):
                break
    except (EOFError, ConnectionResetError, ssl.SSLError, OSError) as e:
        out.append("open" if isinstance(e, socket.timeout) else "closed")
    print(" ".join(out))


def cmd_chunked(port, total_mb, seed, slow="0"):
    """Random payload in random TLS record sizes (1 B to 16 KB) through the sidecar to the
    echo backend; prints the SHA-256 of what was sent and of what came back. One thread:
    an SSL object must not be read and written from two threads at once. slow=1: reads
    of at most 4 KB into a small receive buffer, and after each MB read a pause in reading
    (not in writing), so that the sidecar's sends to us stall and its output queues up."""
    import hashlib
    import random
    import selectors
    rnd = random.Random(int(seed))
    total = int(float(total_mb) * 1024 * 1024)
    t = session(port)  # the StartupMessage is echoed back like everything else
    slow = slow == "1"
    if slow:
        t.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    first = startup_packet()
    sent, got = hashlib.sha256(first), hashlib.sha256()
    left = total + len(first)
    block = rnd.randbytes(1 << 20)
    done, chunk = 0, b""
    got_n, next_pause, pause_until = 0, 1 << 20, 0.0
    t.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(t, selectors.EVENT_READ | selectors.EVENT_WRITE)
    deadline = time.monotonic() + 300
    while left > 0 and time.monotonic() < deadline:
        if not chunk and done < total:
            n = min(rnd.randint(1, 16384), total - done)
            off = rnd.randint(0, len(block) - n)
            chunk = block[off:off + n]
        sel.modify(t, selectors.EVENT_READ | (selectors.EVENT_WRITE if chunk else 0))
        if not t.pending():  # what OpenSSL already decrypted does not wake select
            sel.select(1.0)
        if slow and got_n >= next_pause:  # stop reading for a while, go on writing
            next_pause += 1 << 20
            pause_until = time.monotonic() + 0.3
        paused = slow and time.monotonic() < pause_until
        while not paused:  # drain everything decrypted so far (slow: one read of 4 KB)
            try:
                d = t.recv(4096 if slow else 65536)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                break
            if not d:
                left = -left if left > 0 else left
                break
            got.update(d)
            got_n += len(d)
            left -= len(d)
            if slow:
                break
        if left <= 0:
            break
        wrote = False
        if chunk:
            try:
                t.send(chunk)  # one write, one record; on WantWrite the same chunk again
                sent.update(chunk)
                done += len(chunk)
                chunk, wrote = b"", True
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
        if paused and not wrote:
            time.sleep(0.01)
    print("%s %s %d" % (sent.hexdigest(), got.hexdigest(), abs(left)))


def cmd_send_close(port, kb, how):
    """Write kb KB in records of random size, as fast as the sidecar takes them, then
    end the stream at once: how=fin a TCP FIN with no close_notify, then read the echo
    until EOF and check it; how=notify a close_notify, then wait for EOF. Prints how
    many bytes the echo backend should log as received."""
    import random
    rnd = random.Random(7)
    t = session(port)
    data = rnd.randbytes(int(kb) * 1024)
    exp = startup_packet() + data  # what the echo backend gets, and sends back
    off = 0
    while off < len(data):
        n = rnd.randint(1, 16384)
        t.sendall(data[off:off + n])
        off += n
    if how == "notify":
        t.setblocking(False)
        try:
            t.unwrap()  # the close_notify goes out at once; the rest would wait for the peer's
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        t.settimeout(60)
        while socket.socket.recv(t, 65536):  # stay until the sidecar closes; the echo is ciphertext now
            pass
        print("%d closed" % len(exp))
        return
    socket.socket.shutdown(t, socket.SHUT_WR)  # SSLSocket.shutdown would drop the TLS layer
    got = b""
    t.settimeout(60)
    while True:
        d = t.recv(65536)
        if not d:
            break
        got += d
    i = next((k for k in range(min(len(got), len(exp))) if got[k] != exp[k]), -1)
    print(len(exp), "intact" if got == exp else "differs at %d: %r vs %r" % (i, got[i:i + 40], exp[i:i + 40]))


def cmd_idle_hold(port, n, hold_s):
    """Open n TLS sessions past ReadyForQuery and keep them idle for hold_s seconds.
    Prints "ready K" (K sessions logged in), plus " failed F SQLSTATE" when some got
    an ErrorResponse instead."""
    conns, failed, state = [], 0, None
    for _ in range(int(n)):
        t = session(port)
        err, _ = until_ready(t)
        if err:
            failed, state = failed + 1, err
        else:
            conns.append(t)
    print("ready %d" % len(conns) + (" failed %d %s" % (failed, state) if failed else ""), flush=True)
    time.sleep(float(hold_s))
    print("done")


def cmd_idle_wait(port, how, max_s):
    """A TLS session past ReadyForQuery, then quiet: "idle" sends nothing more, "half"
    half a Query message, "copy-ext" a COPY FROM STDIN over the extended protocol
    first, "sync-flush" a select over the extended protocol, its Sync and then a
    Flush (as some drivers send), then a Close of the statement and a Flush;
    "begin" a BEGIN. Prints "closed [N ms]" when the server ends it within max_s seconds (N
    counted from the last byte sent), with " fatal SQLSTATE: message" where it sent a
    FATAL first, else "open". "noread" and "kill": see below;
    they print "sent", hold the session max_s seconds without reading, and "done"."""
    t = session(port)
    err, _ = until_ready(t)
    if err:
        print("error %s" % err)
        return
    if how == "half":
        q = b"select 1\0"
        t.sendall(frame(b"Q", q)[:9])
    elif how in ("noread", "kill"):
        # a 20 MB answer never read; or the backend ends itself, and its error, close
        # and FIN are never read either: the client just sits there
        send_query(t, "select repeat('x', 1000000) from generate_series(1, 20)" if how == "noread"
                   else "select pg_terminate_backend(pg_backend_pid())")
        print("sent", flush=True)
        ready()
        time.sleep(float(max_s))
        print("done")
        return
    elif how == "begin":  # then idle inside the transaction
        send_query(t, "begin")
        while read_msg(t)[0] != b"Z":
            pass
    elif how == "sync-flush":
        t.sendall(frame(b"P", b"\0select 1\0\0\0") + frame(b"B", b"\0\0" + b"\0\0" * 3)
                  + frame(b"E", b"\0" + b"\0\0\0\0") + frame(b"S") + frame(b"H"))
        while read_msg(t)[0] != b"Z":
            pass
        t.sendall(frame(b"C", b"S\0") + frame(b"H"))  # and the unnamed statement closed
        while read_msg(t)[0] != b"3":
            pass
        ready()
    elif how == "copy-ext":
        # COPY FROM STDIN over the extended protocol, as libpq's PQexecParams sends it:
        # the Sync after Execute reaches the backend during the copy and is ignored
        sql = b"copy idle_in from stdin\0"
        t.sendall(frame(b"P", b"\0" + sql + b"\0\0") + frame(b"B", b"\0\0" + b"\0\0" * 3)
                  + frame(b"E", b"\0" + b"\0\0\0\0") + frame(b"S"))
        while read_msg(t)[0] != b"G":
            pass
        t.sendall(frame(b"d", b"a\n") + frame(b"c") + frame(b"S"))
        while read_msg(t)[0] != b"Z":
            pass
    t.settimeout(float(max_s))
    t0 = time.monotonic()
    fatal = ""
    try:
        # the server may say why before it closes: one FATAL ErrorResponse, nothing else
        typ, body = read_msg(t)
        what = "data %r" % typ
        if typ == b"E" and error_fields(body).get("S") == "FATAL":
            fatal = " fatal %s: %s" % (error_fields(body).get("C"), error_fields(body).get("M"))
            what = "closed" if not t.recv(100) else "data after the FATAL"
    except EOFError:
        what = "closed"
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        what = "open" if isinstance(e, socket.timeout) else "closed"
    print("%s [%d ms]%s" % (what, (time.monotonic() - t0) * 1000, fatal))


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    fn = {
        "gss-then-ssl": cmd_gss_then_ssl,
        "stuffing": cmd_stuffing,
        "plain-startup": cmd_plain_startup,
        "raw-length": cmd_raw_length,
        "direct": cmd_direct,
        "tls-startup": cmd_tls_startup,
        "gss-stuffing": cmd_gss_stuffing,
        "header-only": cmd_header_only,
        "unread-tail": cmd_unread_tail,
        "gss-then-direct": cmd_gss_then_direct,
        "tls-packet": cmd_tls_packet,
        "tls-cancel": cmd_tls_cancel,
        "silent": cmd_silent,
        "close-notify": cmd_close_notify,
        "fatal-alert": cmd_fatal_alert,
        "slowloris": cmd_slowloris,
        "garbage": cmd_garbage,
        "flood": cmd_flood,
        "rst-storm": cmd_rst_storm,
        "query-fin": cmd_query_fin,
        "echo-server": cmd_echo_server,
        "stall-server": cmd_stall_server,
        "half-answer": cmd_half_answer,
        "unsynced": cmd_unsynced,
        "flush-query": cmd_flush_query,
        "chunked": cmd_chunked,
        "send-close": cmd_send_close,
        "idle-hold": cmd_idle_hold,
        "idle-wait": cmd_idle_wait,
        "direct-frag": cmd_direct_frag,
        "late-startup": cmd_late_startup,
    }[cmd]
    try:
        fn(*args)
    except Exception as e:  # one line for the TAP diagnostics
        print("exception %s: %s" % (type(e).__name__, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
