#!/usr/bin/env python3
"""The playground page in a real browser: headless Chromium loads it from `schnell serve`, the
test types into it and clicks Generate, then reads the rendered image back.

Usage: playground_test.py SCHNELL_BINARY [--browser PATH] [--no-lora] [-- extra serve flags]

Starts `SCHNELL_BINARY serve` (the bundled model unless extra flags name another) with an API key
on a free port and a fresh output folder, with `--lora-dir` holding copies of
Tests/Fixtures/lora/{peft,kohya}.safetensors (made for the bundled model; --no-lora leaves them
out, and their checks, for another model), and Debian's `chromium` (or --browser, or
$SCHNELL_CHROMIUM) headless with a fresh profile, driven over the Chrome DevTools Protocol by a
small WebSocket client (standard library only). Checks, in the page:
  - without a key the page says the server needs one; with the key typed in, it names the model;
  - "remember" stores the key in localStorage only while ticked;
  - a 64x64 generation: the button is disabled while it runs, then the final image is decoded
    at 64x64 with its seed (the one typed) and a timings table, and no error is shown; when the
    server streams, at least one preview was shown first;
  - the "LoRA adapters" fieldset lists both adapters with their formats, each scale bounded by
    `lora_scale` and disabled until its box is ticked (with the space bar); with peft ticked at
    0.8 the request sends `loras: [{"name": "peft", "scale": 0.8}]`, the caption shows what the
    server echoed (`LoRA peft × 0.8`) and the image's pixels differ from the plain one's (read
    through a canvas); unticked, the next request sends no `loras`;
  - a refused request (size 65x65) shows the server's own 400 message;
  - the page reads the streaming contract whether or not this server streams yet: canned event
    streams (two previews then the final image; a preview then an error event), cut into
    chunks at awkward places (inside \r\n, inside UTF-8 characters), are fed to it through fetch;
    an echoed adapter name with markup in it is shown as text;
  - no script error and no Content-Security-Policy violation was reported.
Exit status: 0 passed, 1 a check failed, 77 skipped (no chromium installed).
"""
import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

SKIP = 77
KEY = "sk-playground"
SEED = 1234
LORA_FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "lora")
LORA_FILES = ["peft.safetensors", "kohya.safetensors"]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


def post(port, body):
    """(status, Content-Type, body bytes) of a generation request made directly, not by the page."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/v1/images/generations", json.dumps(body),
                           {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        reply = connection.getresponse()
        return reply.status, reply.getheader("Content-Type", ""), reply.read()
    finally:
        connection.close()


class WebSocket:
    """A client for one WebSocket (RFC 6455): text frames out (masked), text frames in, enough
    for the DevTools Protocol, which never sends binary frames to a client that asks for none."""

    def __init__(self, url):
        assert url.startswith("ws://"), url
        host_port, _, path = url[len("ws://"):].partition("/")
        host, _, port = host_port.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("the DevTools WebSocket closed during the handshake")
            head += chunk
        head, _, self.pending = head.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise AssertionError(f"the DevTools WebSocket handshake failed: {head.decode(errors='replace')}")

    def send(self, text):
        payload = text.encode()
        header = bytes([0x81])  # FIN, text
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        elif len(payload) < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(payload))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)))

    def _read(self, count):
        while len(self.pending) < count:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("the DevTools WebSocket closed")
            self.pending += chunk
        data, self.pending = self.pending[:count], self.pending[count:]
        return data

    def receive(self):
        """The next whole text message; answers pings, joins fragments."""
        message = b""
        while True:
            first, second = self._read(2)
            opcode, length = first & 0x0F, second & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if second & 0x80 else None
            payload = self._read(length)
            if mask:
                payload = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
            if opcode == 0x9:  # ping
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
                continue
            if opcode == 0x8:
                raise AssertionError("the browser closed the DevTools WebSocket")
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self):
        self.sock.close()


class Page:
    """One browser tab over the DevTools Protocol: commands wait for their answer; events that
    arrive meanwhile are kept in `events`."""

    def __init__(self, socket_url):
        self.ws = WebSocket(socket_url)
        self.next_id = 0
        self.events = []

    def command(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method} failed: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression):
        """The JSON value of `expression` in the page (promises awaited); a thrown error fails."""
        result = self.command("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise AssertionError(f"the page threw on {expression!r}: "
                                 f"{details.get('exception', {}).get('description', details.get('text'))}")
        return result["result"].get("value")

    def wait(self, expression, seconds, what):
        """Polls `expression` until it is truthy; errors while the page loads are retried."""
        deadline = time.monotonic() + seconds
        last_error = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except AssertionError as error:
                last_error = error
            time.sleep(0.1)
        raise AssertionError(f"{what} did not happen within {seconds} s" + (f" (last: {last_error})" if last_error else ""))


def find_browser(explicit):
    for candidate in [explicit, os.environ.get("SCHNELL_CHROMIUM"), "chromium", "chromium-browser"]:
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)
    return None


def start_browser(path, profile):
    flags = ["--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-port=0",
             f"--user-data-dir={profile}", "about:blank"]
    if os.geteuid() == 0:
        flags.insert(0, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    os.makedirs(profile)
    log = open(os.path.join(profile, "browser.log"), "w")
    browser = subprocess.Popen([path] + flags, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # With port 0 the browser writes the port it chose, and its WebSocket path, into the profile.
    port_file = os.path.join(profile, "DevToolsActivePort")
    wait_for(lambda: os.path.exists(port_file) and len(open(port_file).read().split()) >= 2, 30,
             f"the browser writing {port_file} (log: {log.name})")
    port = int(open(port_file).read().split()[0])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
        targets = json.load(reply)
    tab = next(target for target in targets if target.get("type") == "page")
    return browser, tab["webSocketDebuggerUrl"]


def stop(process):
    """Ends a process this script started, and the children in its session (the browser's)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def set_field(page, element_id, value):
    """Types `value` into a field the way the page sees typing: value, then input and change."""
    page.evaluate(f"(() => {{ const field = document.getElementById({json.dumps(element_id)});"
                  f" field.value = {json.dumps(value)};"
                  " field.dispatchEvent(new Event('input', {bubbles: true}));"
                  " field.dispatchEvent(new Event('change', {bubbles: true})); })()")


def press_space(page):
    """A real key press on the focused element, as a keyboard user makes it."""
    for kind in ["keyDown", "keyUp"]:
        page.command("Input.dispatchKeyEvent", type=kind, key=" ", code="Space", windowsVirtualKeyCode=32,
                     **({"text": " "} if kind == "keyDown" else {}))


# The RGBA pixels of a decoded <img>, read through a canvas (blob: URLs are same-origin, so the
# canvas stays readable).
PIXELS = """window.pixelsOf = async (image) => {
    await image.decode();
    const canvas = document.createElement('canvas');
    canvas.width = image.naturalWidth;
    canvas.height = image.naturalHeight;
    const context = canvas.getContext('2d');
    context.drawImage(image, 0, 0);
    return Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data);
};"""


def check_loras(page):
    rows = page.evaluate("""(() => {
        const fieldset = document.getElementById('loras');
        return {hidden: fieldset.hidden, legend: fieldset.querySelector('legend').textContent,
                rows: [...fieldset.querySelectorAll('.lora')].map((row) => {
                    const box = row.querySelector('input[type=checkbox]'), scale = row.querySelector('input[type=number]');
                    return {label: box.labels[0].textContent, scaleLabel: scale.labels[0].textContent, checked: box.checked,
                            disabled: scale.disabled, min: scale.min, max: scale.max, step: scale.step, value: scale.value};
                })};
    })()""")
    assert not rows["hidden"], "the LoRA fieldset is hidden though the server offers adapters"
    labels = [row["label"] for row in rows["rows"]]
    assert labels == ["kohya (kohya)", "peft (diffusers)"], f"the adapters listed: {labels}"
    for row in rows["rows"]:
        assert not row["checked"] and row["disabled"], f"an adapter starts ticked or its scale editable: {row}"
        assert (row["min"], row["max"], row["step"], row["value"]) == ("-10", "10", "0.05", "1"), f"scale bounds: {row}"
        assert row["scaleLabel"] == f"scale of {row['label'].split()[0]}", f"scale label: {row['scaleLabel']!r}"
    print(f"ok   LoRA adapters listed: {labels}, scales -10..10 step 0.05 default 1, disabled until ticked")

    peft = "document.querySelector('#lora-list .lora[data-name=\"peft\"]')"
    page.evaluate(f"{peft}.querySelector('input[type=checkbox]').focus()")
    press_space(page)
    ticked = page.evaluate(f"[{peft}.querySelector('input[type=checkbox]').checked, {peft}.querySelector('input[type=number]').disabled]")
    assert ticked == [True, False], f"the space bar on peft's box left (checked, scale disabled) = {ticked}"
    page.evaluate(f"(() => {{ const scale = {peft}.querySelector('input[type=number]'); scale.value = '0.8';"
                  " scale.dispatchEvent(new Event('input', {bubbles: true})); scale.dispatchEvent(new Event('change', {bubbles: true})); })()")

    # Every generation request's body is kept, to see what the page sent.
    page.evaluate("""window.sentBodies = [];
        const sending = window.fetch;
        window.fetch = (url, init) => {
            if (String(url).includes('/v1/images/generations')) window.sentBodies.push(JSON.parse(init.body));
            return sending(url, init);
        };""")
    page.evaluate("document.getElementById('generate').click()")
    final = "document.querySelector('#results img[data-state=\"final\"]')"
    page.wait(f"{final} !== null && {final}.complete && !document.getElementById('generate').disabled", 45,
              "the image with the LoRA appearing")
    shown = page.evaluate(f"""(async () => {{
        const pixels = await window.pixelsOf({final});
        const plain = window.plainPixels;
        let differing = 0;
        for (let i = 0; i < pixels.length; i++) if (pixels[i] !== plain[i]) differing++;
        const line = {final}.closest('figure').querySelector('.applied-loras');
        return {{sent: window.sentBodies.at(-1).loras, line: line && line.textContent, differing, length: pixels.length,
                 caption: {final}.closest('figure').querySelector('figcaption').textContent,
                 error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent}};
    }})()""")
    assert shown["error"] is None, f"the LoRA generation shows an error: {shown['error']}"
    assert shown["sent"] == [{"name": "peft", "scale": 0.8}], f"the page sent loras {shown['sent']}"
    assert shown["line"] == "LoRA peft × 0.8", f"the caption's LoRA line is {shown['line']!r} ({shown['caption']!r})"
    assert f"Seed {SEED}" in shown["caption"], f"the LoRA image's seed is not {SEED}: {shown['caption']!r}"
    assert shown["length"] == 64 * 64 * 4 and shown["differing"] > 0, \
        f"the image with peft at 0.8 has the plain image's pixels ({shown['differing']} of {shown['length']} bytes differ)"
    print(f"ok   peft at 0.8: sent, echoed in the caption as '{shown['line']}', "
          f"{shown['differing']} of {shown['length']} pixel bytes differ from the plain image")

    page.evaluate(f"{peft}.querySelector('input[type=checkbox]').click()")
    assert page.evaluate(f"{peft}.querySelector('input[type=number]').disabled"), "unticking peft left its scale editable"


def check_page(page, server_port, loras):
    base = f"http://127.0.0.1:{server_port}"
    page.command("Runtime.enable")
    page.command("Log.enable")
    page.command("Page.enable")
    page.command("Page.navigate", url=f"{base}/")
    status = "document.getElementById('model-status').textContent"
    page.wait(f"{status}.includes('needs an API key')", 15, "the page asking for the API key")
    print("ok   without a key the page asks for one")

    set_field(page, "api-key", KEY)
    model_line = page.wait(f"{status}.startsWith('Model ') && {status}", 15, "the page naming the model")
    print(f"ok   with the key: '{model_line}'")

    stored = "localStorage.getItem('schnell.playground.apiKey')"
    assert page.evaluate(stored) is None, "the key was stored without 'remember' ticked"
    page.evaluate("document.getElementById('remember-key').click()")
    assert page.evaluate(stored) == KEY, "ticking 'remember' did not store the key"
    page.evaluate("document.getElementById('remember-key').click()")
    assert page.evaluate(stored) is None, "unticking 'remember' left the key stored"
    print("ok   the key is in localStorage only while 'remember' is ticked")

    # Previews are counted from the records of the image's state as it changes (each record keeps
    # the value it replaced, so a run fast enough to batch the records cannot hide them): every
    # preview is replaced by the next one or by the final image, once.
    page.evaluate("""window.previewsSeen = 0;
        new MutationObserver((changes) => { for (const change of changes)
            if (change.oldValue === 'preview') window.previewsSeen++; })
          .observe(document.getElementById('results'),
                   {subtree: true, attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});""")
    set_field(page, "prompt", "a lighthouse at dusk")
    set_field(page, "size", "64x64")
    set_field(page, "steps", "4")
    set_field(page, "seed", str(SEED))
    set_field(page, "count", "1")
    set_field(page, "previews", "2")
    started = time.monotonic()
    disabled = page.evaluate("document.getElementById('generate').click(); document.getElementById('generate').disabled")
    assert disabled, "the Generate button stayed enabled while the request ran"
    final = "document.querySelector('#results img[data-state=\"final\"]')"
    page.wait(f"{final} !== null && {final}.complete && !document.getElementById('generate').disabled", 45,
              "the final image appearing")
    image = page.evaluate(f"""(async () => {{
        const image = {final};
        await image.decode();
        const figure = image.closest('figure');
        return {{width: image.naturalWidth, height: image.naturalHeight, source: image.src.slice(0, 5), alt: image.alt,
                 caption: figure.querySelector('figcaption').textContent,
                 timingRows: figure.querySelectorAll('.timings tr').length,
                 error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
                 previews: window.previewsSeen}};
    }})()""")
    seconds = time.monotonic() - started
    assert image["error"] is None, f"the page shows an error: {image['error']}"
    assert (image["width"], image["height"]) == (64, 64), f"the image decoded at {image['width']}x{image['height']}, not 64x64"
    assert image["source"] == "blob:", f"the image is not shown from a blob: URL ({image['source']}...)"
    assert f"Seed {SEED}" in image["caption"], f"the seed {SEED} is not shown: {image['caption']!r}"
    assert image["timingRows"] >= 2, "no timings table under the image"
    streams = post(server_port, {"prompt": "probe", "size": "64x64", "steps": 1, "stream": True,
                                 "partial_images": 1, "response_format": "b64_json"})[1].startswith("text/event-stream")
    if streams:
        assert image["previews"] >= 1, "the server streams but the page showed no preview"
        note = f"{image['previews']} preview(s) first"
    else:
        note = "the server answers JSON, so no previews"
    print(f"ok   Generate: a decoded 64x64 image with seed {SEED} and {image['timingRows']} timing rows "
          f"in {seconds:.1f} s ({note})")

    if loras:
        page.evaluate(PIXELS)
        page.evaluate(f"(async () => {{ window.plainPixels = await window.pixelsOf({final}); }})()")
        check_loras(page)
    else:
        assert page.evaluate("document.getElementById('loras').hidden"), "the LoRA fieldset is shown without adapters"
        print("ok   no adapters: the LoRA fieldset stays hidden")

    body = {"prompt": "refused", "size": "65x65", "steps": 4, "seed": SEED, "n": 1, "stream": True,
            "partial_images": 2, "response_format": "b64_json"}
    code, _, answer = post(server_port, body)
    assert code == 400, f"the server answered 65x65 with {code}, not 400"
    expected = json.loads(answer)["error"]["message"]
    set_field(page, "size", "65x65")
    page.evaluate("document.getElementById('generate').click()")
    shown = page.wait("!document.getElementById('error').hidden && !document.getElementById('generate').disabled"
                      " && document.getElementById('error').innerText", 15, "the refusal appearing")
    assert expected in shown, f"the page shows {shown!r}, not the server's message {expected!r}"
    assert page.evaluate("document.querySelectorAll('#results figure').length") == 0, "a refused request left image frames"
    if loras:
        sent = page.evaluate("window.sentBodies.at(-1)")
        assert "loras" not in sent, f"with no adapter ticked the page still sent loras: {sent['loras']}"
    print(f"ok   size 65x65: the page shows {shown!r}")

    check_canned_streams(page, server_port)

    problems = []
    for event in page.events:
        if event["method"] == "Runtime.exceptionThrown":
            details = event["params"]["exceptionDetails"]
            problems.append(f"script error: {details.get('exception', {}).get('description', details.get('text'))}")
        elif event["method"] == "Log.entryAdded":
            entry = event["params"]["entry"]
            # The 401 of the first model request is a network error the page expects.
            if entry.get("level") == "error" and entry.get("source") != "network":
                problems.append(f"{entry.get('source')}: {entry.get('text')}")
    assert not problems, "the browser reported: " + "; ".join(problems)
    print("ok   no script error or CSP violation reported")


def sse(event, data, line_end="\n"):
    """One server-sent event; `data` is JSON split over two `data:` lines, as the format allows."""
    text = json.dumps(data)
    middle = text.index(",") + 1
    return line_end.join([": a comment", f"event: {event}", f"data: {text[:middle]}", f"data:{text[middle:]}", "", ""])


def check_canned_streams(page, server_port):
    # fetch is replaced for the next generation request only; chunk sizes cycle, so the cuts land
    # inside field names, line ends and multi-byte characters.
    page.evaluate("""window.feedStream = (text) => {
        const original = window.fetch;
        window.fetch = (url, init) => {
            if (!String(url).includes('/v1/images/generations')) return original(url, init);
            window.fetch = original;
            const bytes = new TextEncoder().encode(text), sizes = [1, 7, 2, 13, 3, 64, 5, 997];
            let offset = 0, turn = 0;
            const body = new ReadableStream({pull(controller) {
                if (offset >= bytes.length) return controller.close();
                const size = sizes[turn++ % sizes.length];
                controller.enqueue(bytes.slice(offset, offset + size));
                offset += size;
            }});
            return Promise.resolve(new Response(body, {status: 200, headers: {'Content-Type': 'text/event-stream'}}));
        };
    };""")
    code, _, answer = post(server_port, {"prompt": "canned", "size": "64x64", "steps": 1, "seed": 5,
                                         "response_format": "b64_json"})
    assert code == 200, f"the image for the canned stream was refused ({code})"
    png = json.loads(answer)["data"][0]["b64_json"]
    common = {"size": "64x64", "quality": "auto", "background": "opaque", "output_format": "png",
              "created_at": 1700000000, "image_index": 0}
    completed = sse("image_generation.completed", {
        "type": "image_generation.completed", "b64_json": png, **common, "seed": 99,
        "usage": {"input_tokens": 0, "output_tokens": 16, "total_tokens": 16},
        "timings": {"text encoders": 0.1, "step 1": 0.2, "step 2": 0.25, "vae decode": 0.05, "total": 0.7},
        "loras": [{"name": "<b>bold</b>", "scale": -0.5}]})
    stream = "".join([
        sse("image_generation.partial_image", {"type": "image_generation.partial_image", "b64_json": png,
                                               "partial_image_index": 0, **common}, "\r\n"),
        sse("image_generation.partial_image", {"type": "image_generation.partial_image", "b64_json": png,
                                               "partial_image_index": 1, **common}),
        completed,
    ])
    set_field(page, "size", "64x64")
    page.evaluate(f"window.previewsSeen = 0; window.feedStream({json.dumps(stream)});"
                  " document.getElementById('generate').click()")
    final = "document.querySelector('#results img[data-state=\"final\"]')"
    page.wait(f"{final} !== null && !document.getElementById('generate').disabled", 15, "the canned stream's image")
    shown = page.evaluate(f"""(async () => {{
        await {final}.decode();
        return {{width: {final}.naturalWidth, previews: window.previewsSeen,
                 caption: {final}.closest('figure').querySelector('figcaption').textContent,
                 markup: {final}.closest('figure').querySelectorAll('figcaption b').length,
                 progress: document.getElementById('progress').textContent,
                 error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent}};
    }})()""")
    assert shown["error"] is None, f"the canned stream shows an error: {shown['error']}"
    assert shown["width"] == 64 and shown["previews"] == 2, f"canned stream: {shown}"
    assert "Seed 99" in shown["caption"] and "denoising, 2 steps" in shown["caption"], f"canned stream caption: {shown['caption']!r}"
    assert "LoRA <b>bold</b> × -0.5" in shown["caption"] and shown["markup"] == 0, \
        f"the echoed adapter name was not shown as text: {shown['caption']!r}, {shown['markup']} <b> elements"
    print(f"ok   a canned event stream: 2 previews, then the image with seed 99, its steps and the echoed adapter as text "
          f"('{shown['progress']}')")

    message = "Generation failed: größe — the worker stopped"
    page.evaluate("window.feedStream(" + json.dumps(
        sse("image_generation.partial_image", {"type": "image_generation.partial_image", "b64_json": png,
                                               "partial_image_index": 0, **common})
        + sse("error", {"type": "error", "error": {"message": message, "type": "server_error", "code": "server_error"}}))
        + "); document.getElementById('generate').click()")
    shown = page.wait("!document.getElementById('error').hidden && !document.getElementById('generate').disabled"
                      " && document.getElementById('error').innerText", 15, "the canned error event")
    assert message in shown, f"the error event shows {shown!r}, not {message!r}"
    print(f"ok   a canned error event mid-stream shows '{message}'")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--browser", help="the Chromium binary (default: chromium on PATH)")
    parser.add_argument("--no-lora", action="store_true", help="serve no LoRA adapters and skip their checks")
    parser.add_argument("extra", nargs="*", help="more `schnell serve` flags (after --)")
    args = parser.parse_args()
    browser_path = find_browser(args.browser)
    if browser_path is None:
        print("skipped: no chromium installed (apt-get install chromium, or pass --browser)")
        sys.exit(SKIP)

    work = tempfile.mkdtemp(prefix="schnell-playground-")
    port = free_port()
    lora_flags = []
    if not args.no_lora:
        lora_dir = os.path.join(work, "loras")
        os.makedirs(lora_dir)
        for name in LORA_FILES:
            shutil.copy(os.path.join(LORA_FIXTURES, name), lora_dir)
        lora_flags = ["--lora-dir", lora_dir]
    server_log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen([args.binary, "serve", "--port", str(port), "--output-dir", os.path.join(work, "output"),
                               "--api-key", KEY] + lora_flags + args.extra,
                              stdout=server_log, stderr=subprocess.STDOUT, start_new_session=True)
    browser = None
    page = None
    failed = False
    try:
        def healthy():
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                return reply.status == 200
        wait_for(healthy, 60, "the server becoming ready")
        browser, socket_url = start_browser(browser_path, os.path.join(work, "profile"))
        page = Page(socket_url)
        check_page(page, port, loras=not args.no_lora)
    except (AssertionError, OSError) as error:
        failed = True
        print(f"FAIL {error}")
    finally:
        if page:
            page.ws.close()
        if browser:
            stop(browser)
        stop(server)
        server_log.close()
    if failed:
        print(f"server log: {server_log.name}")
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print("passed")


if __name__ == "__main__":
    main()
