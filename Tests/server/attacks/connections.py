"""Connection-level attacks: slow and idle connections, unauthenticated and oversized uploads,
request smuggling, cross-origin requests and Host reflection. Run by run.py (see its usage).

Attacking connections come from other loopback addresses (127.0.0.2 and up; Linux routes all of
127/8 to lo) so that the per-address limit (--max-connections-per-ip) applies to them and not to
the keyed client on 127.0.0.1, as it would for an attacker and a user on different hosts.
Memory bounds are on the server's peak resident memory (VmHWM, from /proc/PID/status) at the end of
a case minus its resident memory (VmRSS) at the start: any spike during the case counts, and an
earlier case's peak can only make the check stricter.
"""
import http.client
import json
import os
import select
import socket
import threading
import time
import urllib.parse

MIB = 1024 * 1024
# What one case may add to the server's peak resident memory: thread stacks and buffers, never bodies.
RSS_GROWTH_BOUND_KIB = 64 * 1024


def _quick():
    return os.environ.get("SCHNELL_ATTACKS_QUICK") == "1"


def _key():
    return os.environ.get("SCHNELL_API_KEY", "")


def _head_timeout():
    return float(os.environ.get("SCHNELL_HEAD_TIMEOUT", "10"))


def _address(url):
    parts = urllib.parse.urlsplit(url)
    return parts.hostname, parts.port or 80


def _memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def _rss_kib(pid):
    return _memory_kib(pid, "VmRSS")


def _peak_kib(pid):
    return _memory_kib(pid, "VmHWM")


def _connect(url, source=None, timeout=5.0):
    host, port = _address(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source:
        try:
            sock.bind((source, 0))
        except OSError as error:
            sock.close()
            raise AssertionError(f"cannot bind the source address {source} ({error}); these cases need Linux loopback")
    sock.connect((host, port))
    return sock


def _closed_by_server(sock):
    """True when the server has closed (or reset) the connection; never blocks."""
    try:
        sock.setblocking(False)
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def _exchange(url, raw, timeout=5.0):
    """Sends raw bytes on a fresh connection and reads until the server closes it."""
    sock = _connect(url, timeout=timeout)
    try:
        sock.sendall(raw)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                raise AssertionError(f"the server neither answered nor closed within {timeout} s; got {received[:200]!r}")
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk
    finally:
        sock.close()


def _responses(data):
    """(status, JSON body or None) of every response in `data`, in order."""
    found = []
    while data.startswith(b"HTTP/1.1 "):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        body, data = rest[:length], rest[length:]
        try:
            document = json.loads(body) if body else None
        except ValueError:
            document = None
        found.append((int(lines[0].split()[1]), document))
    return found


def _request(url, method, path, body=None, headers=None, timeout=30):
    host, port = _address(url)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        all_headers = {"Authorization": f"Bearer {_key()}"} if _key() else {}
        all_headers.update(headers or {})
        connection.request(method, path, body=body, headers=all_headers)
        reply = connection.getresponse()
        data = reply.read()
        try:
            document = json.loads(data) if data else None
        except ValueError:
            document = None
        return reply.status, document
    finally:
        connection.close()


def _error_code(document):
    return ((document or {}).get("error") or {}).get("code")


def _expect_served(url, what):
    """A keyed client and /health are answered promptly."""
    started = time.monotonic()
    status, _ = _request(url, "GET", "/v1/models", timeout=5)
    assert status == 200, f"{what}: a keyed GET /v1/models got {status}"
    status, _ = _request(url, "GET", "/health", timeout=5)
    assert status == 200, f"{what}: /health got {status}"
    seconds = time.monotonic() - started
    assert seconds < 3, f"{what}: a keyed client waited {seconds:.1f} s"


def _hold_connections(url, count, source, trickle):
    """Opens `count` connections from `source` that start a request head and then, when
    `trickle`, send one more header byte every 0.5 s; returns (sockets, refused at once)."""
    sockets = []
    for _ in range(count):
        try:
            sock = _connect(url, source=source, timeout=5)
            if trickle:
                sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            sockets.append(sock)
        except (ConnectionResetError, ConnectionRefusedError, BrokenPipeError):
            continue
    time.sleep(0.3)
    refused = sum(1 for sock in sockets if _closed_by_server(sock))
    return sockets, refused


def _wait_until_all_closed(sockets, bound_seconds, trickle):
    """Seconds until the server closed every connection; fails after `bound_seconds`."""
    started = time.monotonic()
    open_sockets = list(sockets)
    while open_sockets:
        elapsed = time.monotonic() - started
        assert elapsed < bound_seconds, f"{len(open_sockets)} of {len(sockets)} connections still open after {bound_seconds:.0f} s"
        still_open = []
        for sock in open_sockets:
            if _closed_by_server(sock):
                continue
            if trickle:
                try:
                    sock.sendall(b"X")
                except OSError:
                    continue
            still_open.append(sock)
        open_sockets = still_open
        time.sleep(0.5)
    return time.monotonic() - started


def _slow_connections(url, pid, trickle, source):
    count = 64 if _quick() else 256
    before = _rss_kib(pid)
    sockets, refused = _hold_connections(url, count, source, trickle)
    try:
        _expect_served(url, f"with {count} {'trickling' if trickle else 'idle'} connections from {source}")
        # The head deadline runs from each connection's start; the watchdog looks every 0.25 s.
        closed_after = _wait_until_all_closed(sockets, _head_timeout() + 3, trickle)
        growth = _peak_kib(pid) - before
        assert growth < RSS_GROWTH_BOUND_KIB, f"server RSS grew by {growth // 1024} MiB"
        return (f"{count} from {source}: {refused} refused at once, the rest cut after {closed_after:.1f} s; "
                f"RSS +{growth // 1024} MiB")
    finally:
        for sock in sockets:
            sock.close()


def case_slowloris_trickling_heads_leave_keyed_clients_served(url, pid):
    return _slow_connections(url, pid, trickle=True, source="127.0.0.2")


def case_idle_connections_are_closed_at_the_head_deadline(url, pid):
    return _slow_connections(url, pid, trickle=False, source="127.0.0.3")


def _upload_heads(url, count, headers, send_bytes):
    """`count` concurrent POSTs announcing 32 MiB. Each sends its head and waits up to 1 s for an
    answer before sending any body byte; then it sends up to `send_bytes` of the body and stalls.
    Returns (answers as (status, code), None where none came before the body, sockets)."""
    head = ("POST /v1/images/edits HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {32 * MIB}\r\n{headers}\r\n").encode()
    answers = [None] * count
    sockets = [None] * count

    def upload(index):
        sock = _connect(url, timeout=3)
        sockets[index] = sock
        sock.sendall(head)
        readable, _, _ = select.select([sock], [], [], 1.0)
        if readable:
            found = _responses(sock.recv(65536))
            answers[index] = (found[0][0], _error_code(found[0][1])) if found else ("closed", None)
        sent = 0
        piece = b"x" * (256 * 1024)
        sock.settimeout(0.5)
        try:
            while sent < send_bytes:
                sock.sendall(piece)
                sent += len(piece)
        except OSError:
            pass

    threads = [threading.Thread(target=upload, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, sockets


def case_unauthenticated_32mib_uploads_are_refused_before_their_bodies(url, pid):
    assert _key(), "needs the server's key (--api-key) so that requests without it are refused"
    count = 8 if _quick() else 30
    before = _rss_kib(pid)
    started = time.monotonic()
    answers, sockets = _upload_heads(url, count, headers="", send_bytes=32 * MIB)
    seconds = time.monotonic() - started
    peak = _peak_kib(pid)
    for sock in sockets:
        if sock:
            sock.close()
    wrong = [answer for answer in answers if answer != (401, "invalid_api_key")]
    assert not wrong, f"{len(wrong)} of {count} uploads were not refused 401 invalid_api_key: {wrong[:3]}"
    growth = peak - before
    assert growth < RSS_GROWTH_BOUND_KIB, f"server RSS grew by {growth // 1024} MiB for {count} refused uploads"
    return f"{count} refused 401 in {seconds:.1f} s; RSS {before // 1024} MiB, peak {peak // 1024} MiB"


def case_keyed_uploads_beyond_the_body_memory_budget_are_refused(url, pid):
    assert _key(), "needs the server's key (--api-key)"
    count = 12 if _quick() else 30
    before = _rss_kib(pid)
    # Each sends 1 MiB of its announced 32 MiB and stalls, holding its reservation.
    answers, sockets = _upload_heads(url, count, headers=f"Authorization: Bearer {_key()}\r\n", send_bytes=MIB)
    peak = _peak_kib(pid)
    try:
        refused = [answer for answer in answers if answer is not None]
        held = count - len(refused)
        wrong = [answer for answer in refused if answer != (503, "server_busy")]
        assert not wrong, f"uploads were answered {wrong[:3]}, not 503 server_busy"
        assert refused, f"all {count} 32 MiB uploads were accepted at once; the body budget did not hold"
        growth = peak - before
        bound = RSS_GROWTH_BOUND_KIB + held * 1024 * 2
        assert growth < bound, f"server RSS grew by {growth // 1024} MiB holding {held} bodies of 1 MiB"
    finally:
        for sock in sockets:
            if sock:
                sock.close()
    # Closed uploads give their reservation back.
    time.sleep(0.5)
    status, document = _request(url, "POST", "/v1/images/generations", body=b"{}", headers={"Content-Type": "application/json"})
    assert status == 400, f"after the uploads closed, a small keyed request got {status} {document}"
    return f"{held} held, {len(refused)} refused 503 server_busy; RSS +{growth // 1024} MiB"


SMUGGLED = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _smuggle(url, raw, expected_status=400, expected_code="invalid_framing"):
    started = time.monotonic()
    data = _exchange(url, raw, timeout=5)
    seconds = time.monotonic() - started
    found = _responses(data)
    assert len(found) == 1, f"{len(found)} responses ({[status for status, _ in found]}); a request hidden in the body ran"
    status, document = found[0]
    assert (status, _error_code(document)) == (expected_status, expected_code), f"answered {status} {document}"
    assert seconds < 2, f"answered after {seconds:.1f} s"
    return f"{status} {expected_code} in {seconds * 1000:.0f} ms, connection closed"


def _post_head():
    key = f"Authorization: Bearer {_key()}\r\n" if _key() else ""
    return f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1\r\n{key}Content-Type: application/json\r\n".encode()


def case_duplicate_content_length(url, pid):
    return _smuggle(url, _post_head() + f"Content-Length: 2\r\nContent-Length: {2 + len(SMUGGLED)}\r\n\r\n{{}}".encode() + SMUGGLED)


def case_content_length_with_transfer_encoding(url, pid):
    return _smuggle(url, _post_head() + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED)


def case_space_before_the_colon(url, pid):
    return _smuggle(url, _post_head() + f"Content-Length : {2 + len(SMUGGLED)}\r\n\r\n{{}}".encode() + SMUGGLED)


def case_identity_chunked_does_not_hang(url, pid):
    return _smuggle(url, _post_head() + b"Transfer-Encoding: identity, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + SMUGGLED)


def case_duplicate_host(url, pid):
    return _smuggle(url, b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n")


def case_missing_host(url, pid):
    return _smuggle(url, b"GET /v1/models HTTP/1.1\r\n\r\n")


def case_chunked_body_is_length_required(url, pid):
    return _smuggle(url, _post_head() + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n" + SMUGGLED,
                    expected_status=411, expected_code="length_required")


def case_cross_origin_requests_are_refused(url, pid):
    # A plain HTML form posts multipart/form-data to any site without a preflight.
    form = (b"--b\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nx\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n--b--\r\n")
    checks = [
        ("form POST", "POST", "/v1/images/edits", form, {"Content-Type": "multipart/form-data; boundary=b"}),
        ("JSON POST", "POST", "/v1/images/generations", b'{"prompt": "x"}', {"Content-Type": "application/json"}),
        ("GET", "GET", "/v1/models", None, {}),
        ("preflight", "OPTIONS", "/v1/images/generations", None, {"Access-Control-Request-Method": "POST"}),
    ]
    for name, method, path, body, headers in checks:
        for origin in ["https://evil.example", "null"]:
            status, document = _request(url, method, path, body=body, headers={**headers, "Origin": origin})
            assert (status, _error_code(document)) == (403, "origin_not_allowed"), f"{name} from {origin}: {status} {document}"
    return "form, JSON, GET and preflight from two foreign origins: 403 origin_not_allowed"


def case_host_header_is_not_reflected_in_image_urls(url, pid):
    host, port = _address(url)
    connection = http.client.HTTPConnection(host, port, timeout=120)
    try:
        body = json.dumps({"prompt": "a lighthouse", "size": "64x64", "steps": 1, "response_format": "url"})
        headers = {"Host": "evil.example:666", "Content-Type": "application/json"}
        if _key():
            headers["Authorization"] = f"Bearer {_key()}"
        connection.putrequest("POST", "/v1/images/generations", skip_host=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body.encode())
        reply = connection.getresponse()
        document = json.loads(reply.read())
    finally:
        connection.close()
    assert reply.status == 200, f"generation got {reply.status} {document}"
    link = document["data"][0]["url"]
    assert "evil.example" not in link, f"the Host header was reflected: {link}"
    return f"url {link.split('/v1/')[0]}/..."
