"""Attacks on uploads, storage and the smaller request items of issue 15 (items 3, 7 and 8).

Each `case_*(url, pid)` runs against a live `schnell serve` (its base URL and process id) on
127.0.0.1, returns None when the server held, raises AssertionError when it did not, and takes a
few seconds at most. Cases that need a server configured otherwise (a full queue, a bad output
folder) start their own from the same binary and model, on a free port, and stop it.
Standard library only.
"""
import json
import os
import select
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zlib

BOMB_SIDE = 16384
# A bomb is refused from its header: the issue asks for under 100 ms and RSS unchanged (the
# body itself, about 1 MB, is the only memory it may cost; 16 MiB allows for allocator noise).
REFUSAL_SECONDS = 0.1
RSS_SLACK_BYTES = 16 << 20


# The running server's first --api-key, sent with every request (set by `use_server`); the private
# servers these cases start have no key and ignore it.
API_KEY = None


def server_arguments(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return [part.decode() for part in cmdline.read().split(b"\0") if part]


def flag_value(arguments, flag):
    for index, argument in enumerate(arguments):
        if argument == flag and index + 1 < len(arguments):
            return arguments[index + 1]
        if argument.startswith(flag + "="):
            return argument.split("=", 1)[1]
    return None


def use_server(pid):
    global API_KEY
    API_KEY = flag_value(server_arguments(pid), "--api-key")


def request(url, method="GET", body=None, headers=None, timeout=30):
    """(status, headers, body bytes); HTTP errors are answers, not exceptions."""
    headers = dict(headers or {})
    if API_KEY:
        headers["Authorization"] = f"Bearer {API_KEY}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def post_json(url, text):
    return request(url + "/v1/images/generations", "POST", text.encode(), {"Content-Type": "application/json"})


def post_edit(url, fields, files):
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value.encode() + b"\r\n"
    for name, data in files:
        body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return request(url + "/v1/images/edits", "POST", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def error_of(status, body, expected_status, param):
    assert status == expected_status, f"expected {expected_status}, got {status}: {body[:300]!r}"
    error = json.loads(body)["error"]
    assert error["param"] == param, f"expected param {param!r}: {error}"
    return error


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class PeakRSS:
    """Samples a process's RSS every 2 ms while in use: a decode frees its pixels before the answer,
    so only the peak shows it."""

    def __init__(self, pid):
        self.pid = pid
        self.before = rss_bytes(pid)
        self.peak = self.before
        self.running = True
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while self.running:
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.running = False
        self.thread.join()

    @property
    def grown(self):
        return self.peak - self.before


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width, height, rows=b""):
    """A PNG declaring width x height (RGBA, 8-bit) whose IDAT holds `rows` (zero rows: a bomb)."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b"")


def png_bomb():
    # About 1 MB, as in the issue: a header of 16384^2, some zero rows, then a megabyte of noise.
    return png(BOMB_SIDE, BOMB_SIDE, bytes(1 << 20)) + os.urandom(1 << 20)


def jpeg_bomb(url):
    """A real baseline JPEG from the server (64x64) whose frame header now declares 16384^2, padded
    to about 3 MB with comment segments before it, as in the issue: every marker is valid, so only
    the size can refuse it."""
    status, _, body = post_json(url, '{"prompt": "a", "size": "64x64", "steps": 1, "output_format": "jpeg"}')
    assert status == 200, f"{status} {body[:200]!r}"
    import base64
    jpeg = bytearray(base64.b64decode(json.loads(body)["data"][0]["b64_json"]))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", BOMB_SIDE, BOMB_SIDE)
    comment = b"\xff\xfe" + struct.pack(">H", 65535) + bytes(65533)
    return bytes(jpeg[:2] + comment * 48 + jpeg[2:])


def webp_bomb():
    # Lossless VP8L declaring 16384^2 (14-bit sizes minus one), about 10 KB like the issue's.
    bits = (BOMB_SIDE - 1) | (BOMB_SIDE - 1) << 14
    payload = b"\x2f" + struct.pack("<I", bits) + bytes(10_000)
    chunk = b"VP8L" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def assert_refused_fast(url, pid, files, param):
    """Sends the bomb three times; the fastest answer counts (a decode would make every one slow)."""
    fastest = float("inf")
    with PeakRSS(pid) as rss:
        for _ in range(3):
            started = time.monotonic()
            status, _, body = post_edit(url, [("prompt", "x")], files)
            fastest = min(fastest, time.monotonic() - started)
            error_of(status, body, 400, param)
    assert fastest < REFUSAL_SECONDS, f"refusal took {fastest * 1000:.0f} ms"
    assert rss.grown < RSS_SLACK_BYTES, f"RSS peaked {rss.grown >> 20} MiB above where it was"
    status, _, _ = request(url + "/health")
    assert status == 200, f"/health answered {status} afterwards"


def case_png_bomb_is_refused_from_its_header(url, pid):
    use_server(pid)
    assert_refused_fast(url, pid, [("image", png_bomb())], "image")


def case_jpeg_bomb_is_refused_from_its_header(url, pid):
    use_server(pid)
    assert_refused_fast(url, pid, [("image", jpeg_bomb(url))], "image")


def case_webp_bomb_is_refused_from_its_header(url, pid):
    use_server(pid)
    assert_refused_fast(url, pid, [("image", webp_bomb())], "image")


def case_bomb_as_mask_is_refused_from_its_header(url, pid):
    use_server(pid)
    assert_refused_fast(url, pid, [("image", png(64, 64, bytes(64 * 257))), ("mask", png_bomb())], "mask")


def case_three_bombs_at_once_leave_memory_alone(url, pid):
    use_server(pid)
    answers = []
    bomb = png_bomb()
    threads = [threading.Thread(target=lambda: answers.append(post_edit(url, [("prompt", "x")], [("image", bomb)])[0]))
               for _ in range(3)]
    with PeakRSS(pid) as rss:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert answers == [400, 400, 400], f"answers {answers}"
    # Three bodies of 2 MB are held at once.
    assert rss.grown < RSS_SLACK_BYTES, f"RSS peaked {rss.grown >> 20} MiB above where it was"


# --- A private server for the cases that need other options -------------------------------------

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_arguments(pid):
    """The running server's model flags (`--model DIR`, ...), to start another on the same model."""
    arguments = server_arguments(pid)
    model_flags = {"--model", "--transformer", "--vae", "--clip", "--t5", "--tokenizers", "--threads", "--precision"}
    kept = []
    index = arguments.index("serve") + 1 if "serve" in arguments else 1
    while index < len(arguments):
        flag = arguments[index].split("=", 1)[0]
        if flag in model_flags:
            kept.append(arguments[index])
            if "=" not in arguments[index] and index + 1 < len(arguments):
                kept.append(arguments[index + 1])
                index += 1
        index += 1
    cwd = os.readlink(f"/proc/{pid}/cwd")
    return os.readlink(f"/proc/{pid}/exe"), kept, cwd


def start_server(pid, extra, wait_ready=True):
    """Starts `schnell serve` on the running server's model with `extra` flags; (process, url)."""
    binary, model, cwd = model_arguments(pid)
    port = free_port()
    process = subprocess.Popen([binary, "serve", *model, "--port", str(port), *extra], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while wait_ready and time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the private server exited {process.returncode}: {process.stderr.read()[-500:]!r}")
        try:
            if request(url + "/health", timeout=1)[0] == 200:
                return process, url
        except OSError:
            pass
        time.sleep(0.1)
    if wait_ready:
        stop_server(process)
        raise AssertionError("the private server did not become ready in 20 s")
    return process, url


def stop_server(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    process.stderr.close()


def case_full_queue_answers_429_without_decoding(url, pid):
    use_server(pid)
    with tempfile.TemporaryDirectory() as folder:
        process, private = start_server(pid, ["--max-queue", "0", "--output-dir", folder])
        try:
            # Occupies the only slot for a few seconds.
            status, _, body = post_json(private, '{"prompt": "busy", "size": "512x512", "steps": 20, "async": true}')
            assert status == 202, f"{status} {body[:200]!r}"
            # 4096x4096 is within the budget (4 x 2048^2); decoding it would allocate 64 MiB and fail.
            upload = png(4096, 4096, bytes(1 << 20))
            with PeakRSS(process.pid) as rss:
                started = time.monotonic()
                status, _, body = post_edit(private, [("prompt", "x")], [("image", upload)])
                seconds = time.monotonic() - started
            error = json.loads(body)["error"]
            assert status == 429 and error["code"] == "rate_limit_exceeded", f"{status} {error}"
            assert seconds < REFUSAL_SECONDS, f"429 took {seconds * 1000:.0f} ms"
            assert rss.grown < RSS_SLACK_BYTES, f"RSS peaked {rss.grown >> 20} MiB higher: something was decoded"
        finally:
            stop_server(process)


def case_output_folder_others_can_write_is_refused_at_start(url, pid):
    use_server(pid)
    with tempfile.TemporaryDirectory() as parent:
        shared = os.path.join(parent, "shared")
        os.mkdir(shared)
        os.chmod(shared, 0o777)
        below_a_file = os.path.join(parent, "file", "below")
        open(os.path.join(parent, "file"), "w").close()
        for folder, reason in [(shared, "can be written by other users"), (below_a_file, "Not a directory")]:
            process, _ = start_server(pid, ["--output-dir", folder], wait_ready=False)
            try:
                code = process.wait(10)
                message = process.stderr.read().decode(errors="replace")
            finally:
                stop_server(process)
            assert code == 2, f"--output-dir {folder}: exit {code}, expected 2: {message[-300:]}"
            assert f"--output-dir '{folder}'" in message and reason in message, message[-300:]


def output_folder(pid):
    """The running server's --output-dir, or its default from the server's environment."""
    folder = flag_value(server_arguments(pid), "--output-dir")
    if folder is None:
        with open(f"/proc/{pid}/environ", "rb") as environ:
            environment = dict(part.decode(errors="replace").split("=", 1) for part in environ.read().split(b"\0") if b"=" in part)
        if environment.get("XDG_RUNTIME_DIR", "").startswith("/"):
            folder = os.path.join(environment["XDG_RUNTIME_DIR"], "schnell-server")
        else:
            cache = environment.get("XDG_CACHE_HOME", "")
            cache = cache if cache.startswith("/") else os.path.join(environment.get("HOME", "/"), ".cache")
            folder = os.path.join(cache, "schnell", "server")
    return os.path.join(os.readlink(f"/proc/{pid}/cwd"), folder)


def case_link_planted_in_the_output_folder_is_not_followed(url, pid):
    use_server(pid)
    images = os.path.join(output_folder(pid), "images")
    assert os.path.isdir(images), f"no images folder at {images}"
    mode = os.stat(os.path.dirname(images)).st_mode & 0o777
    assert mode & 0o022 == 0, f"the output folder is mode {mode:o}"
    with tempfile.NamedTemporaryFile() as secret:
        secret.write(b"secret")
        secret.flush()
        os.chmod(secret.name, 0o600)
        name = uuid.uuid4().hex + ".png"
        link = os.path.join(images, name)
        os.symlink(secret.name, link)
        try:
            status, _, body = request(f"{url}/v1/images/files/{name}")
        finally:
            os.unlink(link)
    assert status == 404 and b"secret" not in body, f"{status} {body[:100]!r}"


def case_head_on_an_image_reports_its_length(url, pid):
    use_server(pid)
    status, _, body = post_json(url, '{"prompt": "a", "size": "64x64", "steps": 1, "response_format": "url"}')
    assert status == 200, f"{status} {body[:200]!r}"
    path = "/" + json.loads(body)["data"][0]["url"].split("/", 3)[3]
    status, _, image = request(url + path)
    assert status == 200 and len(image) > 0
    status, headers, empty = request(url + path, "HEAD")
    assert status == 200 and empty == b"", f"{status} {len(empty)} bytes"
    assert headers.get("Content-Length") == str(len(image)), f"HEAD Content-Length {headers.get('Content-Length')}, GET {len(image)} bytes"


def case_nul_in_the_prompt_is_refused_up_front(url, pid):
    use_server(pid)
    started = time.monotonic()
    status, _, body = post_json(url, '{"prompt": "a cat\\u0000on a mat", "size": "1024x1024"}')
    seconds = time.monotonic() - started
    error = error_of(status, body, 400, "prompt")
    assert "NUL" in error["message"], error
    assert seconds < 0.5, f"took {seconds:.2f} s: the image was generated first"


def case_one_huge_grapheme_is_refused_at_once(url, pid):
    use_server(pid)
    # "e" and 8 million combining acute accents: one grapheme, 16 MB.
    body = json.dumps({"prompt": "e" + "\u0301" * 8_000_000}, ensure_ascii=False).encode()
    with PeakRSS(pid) as rss:
        started = time.monotonic()
        status, _, answer = request(url + "/v1/images/generations", "POST", body, {"Content-Type": "application/json"})
        seconds = time.monotonic() - started
    error_of(status, answer, 400, "prompt")
    # Receiving and parsing 16 MB in a debug build; the grapheme walk took 20 s and 852 MB. The body,
    # its copy for the handler and the parsed string are held at once.
    assert seconds < 3, f"took {seconds:.2f} s"
    assert rss.grown < 100 << 20, f"RSS peaked {rss.grown >> 20} MiB above where it was"


def case_duplicate_json_keys_are_refused(url, pid):
    use_server(pid)
    status, _, body = post_json(url, '{"prompt": "a", "size": "64x64", "n": 1, "n": 3}')
    error_of(status, body, 400, "n")


def case_seeds_near_the_top_are_never_reported_twice(url, pid):
    use_server(pid)
    top = 2**63 - 1
    status, _, body = post_json(url, f'{{"prompt": "a", "size": "64x64", "steps": 1, "n": 3, "seed": {top - 1}}}')
    error = error_of(status, body, 400, "seed")
    assert str(top - 2) in error["message"], error
    status, _, body = post_json(url, f'{{"prompt": "a", "size": "64x64", "steps": 1, "n": 3, "seed": {top - 2}}}')
    assert status == 200, f"{status} {body[:200]!r}"
    seeds = [item["seed"] for item in json.loads(body)["data"]]
    assert seeds == [top - 2, top - 1, top], seeds
