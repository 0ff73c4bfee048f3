"""What the scripts that drive a real `schnell serve` share: a free port, a JSON request with a
key, and waiting for a condition."""
import http.client
import json
import socket
import time


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def request(port, method, path, body=None, key=None, timeout=60):
    """(status, the JSON answer, or the raw bytes when it is not JSON; None when empty)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        reply = connection.getresponse()
        data = reply.read()
        if not data:
            return reply.status, None
        kind = reply.getheader("Content-Type", "")
        return reply.status, json.loads(data) if kind.startswith("application/json") else data
    finally:
        connection.close()


def wait_for(condition, seconds, what):
    """Calls `condition` until it is true (connection errors count as false); fails after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {seconds} s")
