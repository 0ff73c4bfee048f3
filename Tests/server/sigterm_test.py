#!/usr/bin/env python3
"""SIGTERM during a generation, again and again: `schnell serve` must exit 0 every time (no
crash), answer every client and leave every async task's final state on disk.

Usage: sigterm_test.py SCHNELL_BINARY [--rounds 20] [-- extra serve flags]

Each round starts `SCHNELL_BINARY serve` (the bundled model unless extra flags name another) on a
free port with a fresh output folder, then sends a synchronous 1024x1024 generation (it runs), an
async one, a second synchronous one and a streamed one (all queued), waits a varying moment (0 to 1.5 s, so the
signal lands in different stages), sends SIGTERM and checks:
  - the process exits by itself with status 0 within 20 s (a crash is a signal or another status);
  - both synchronous clients got an HTTP answer: 200 if their generation finished first, else
    503 with the OpenAI error code server_shutting_down;
  - the streamed client's stream ended with an `image_generation.completed` event or an `error`
    event carrying server_shutting_down;
  - the async task's record on disk is `completed` or `failed`, never `pending` or `running`.
Prints one line per round and 'N passed, N failed'; exits 1 when any round failed.
"""
import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

from serverkit import free_port, wait_for
from serverkit import request as raw_request

KEY = "sk-sigterm"


def request(port, method, path, body=None, timeout=60):
    return raw_request(port, method, path, body, key=KEY, timeout=timeout)


def generate_in_background(port, prompt, answers):
    def run():
        try:
            answers[prompt] = request(port, "POST", "/v1/images/generations",
                                      {"prompt": prompt, "size": "1024x1024", "steps": 8, "response_format": "b64_json"})
        except Exception as error:
            answers[prompt] = ("no answer", f"{type(error).__name__}: {error}")
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def stream_in_background(port, answers):
    """A streamed generation; records its last event's name and error code, or why there was none."""
    def run():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            body = {"prompt": "streamed", "size": "1024x1024", "steps": 8, "stream": True, "partial_images": 1}
            connection.request("POST", "/v1/images/generations", body=json.dumps(body),
                               headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            reply = connection.getresponse()
            text = reply.read().decode()
            blocks = [block for block in text.split("\n\n") if "data: " in block]
            if reply.status != 200 or not blocks:
                answers["streamed"] = (reply.status, text[:200])
                return
            name = blocks[-1].split("\n")[0].removeprefix("event: ")
            data = json.loads(blocks[-1].split("data: ", 1)[1])
            answers["streamed"] = (name, (data.get("error") or {}).get("code"))
        except Exception as error:
            answers["streamed"] = ("no answer", f"{type(error).__name__}: {error}")
        finally:
            connection.close()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def one_round(binary, extra, delay):
    port = free_port()
    output = tempfile.mkdtemp(prefix="schnell-sigterm-")
    log = open(os.path.join(output, "serve.log"), "w")
    server = subprocess.Popen([binary, "serve", "--port", str(port), "--output-dir", output, "--api-key", KEY] + extra,
                              stdout=log, stderr=subprocess.STDOUT)
    threads = []
    try:
        wait_for(lambda: request(port, "GET", "/health", timeout=2)[0] == 200, 60, "the server becoming ready")
        answers = {}
        threads.append(generate_in_background(port, "running", answers))
        wait_for(lambda: request(port, "GET", "/health", timeout=2)[1].get("queue_depth") == 0, 5, "the first generation starting")
        status, task = request(port, "POST", "/v1/images/generations",
                               {"prompt": "queued async", "size": "1024x1024", "steps": 8, "async": True})
        assert status == 202, f"the async request got {status} {task}"
        threads.append(generate_in_background(port, "queued", answers))
        threads.append(stream_in_background(port, answers))
        wait_for(lambda: request(port, "GET", "/health", timeout=2)[1].get("queue_depth") == 3, 5, "three jobs queued")
        time.sleep(delay)
        server.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            raise AssertionError("the server did not exit within 20 s of SIGTERM")
        seconds = time.monotonic() - signalled
        assert code == 0, f"the server exited with {code} ({'signal ' + str(-code) if code < 0 else 'status'}); log: {log.name}"
        for thread in threads:
            thread.join(timeout=5)
        for prompt in ["running", "queued"]:
            status, document = answers.get(prompt, ("no answer", None))
            code_text = ((document or {}).get("error") or {}).get("code") if isinstance(document, dict) else document
            assert status == 200 or (status == 503 and code_text == "server_shutting_down"), \
                f"the {prompt} client got {status} {code_text}"
        streamed = answers.get("streamed", ("no answer", None))
        assert streamed in (("image_generation.completed", None), ("error", "server_shutting_down")), \
            f"the streamed client's stream ended with {streamed}"
        record_path = os.path.join(output, "tasks", f"{task['id']}.json")
        with open(record_path) as record_file:
            record = json.load(record_file)
        assert record.get("status") in ("completed", "failed"), f"the async task was left '{record.get('status')}' on disk"
        return (f"exit 0 after {seconds:.1f} s; running {answers['running'][0]}, queued {answers['queued'][0]}, "
                f"streamed {streamed[0]}, async task {record['status']}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("extra", nargs="*", help="more `schnell serve` flags (after --)")
    args = parser.parse_args()
    delays = random.Random(15)
    passed = failed = 0
    for number in range(1, args.rounds + 1):
        delay = delays.uniform(0, 1.5)
        try:
            note = one_round(args.binary, args.extra, delay)
            passed += 1
            print(f"ok   round {number} (SIGTERM {delay:.2f} s into the generation): {note}", flush=True)
        except AssertionError as error:
            failed += 1
            print(f"FAIL round {number} (SIGTERM {delay:.2f} s into the generation): {error}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
