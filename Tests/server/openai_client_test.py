#!/usr/bin/env python3
"""Checks a running `schnell serve` with the official `openai` Python client, and with raw HTTP
where the client has no call for it (tasks, JSON edits, CORS).

Usage: openai_client_test.py BASE_URL [--api-key KEY] [--model ID] [--size WxH] [--cors-origin ORIGIN] [--lora NAME]

ORIGIN is one the server allows (`--cors-origin`); without it the CORS check is skipped. NAME is
a LoRA the server serves (`--lora-dir`); without it the LoRA check is skipped.

BASE_URL is the server's root or its /v1 (e.g. http://127.0.0.1:8080). The script installs
`openai` into a virtual environment ($SCHNELL_OPENAI_VENV, default ~/.cache/schnell/openai-venv)
on first use and re-runs itself there. Exit status: 0 all checks passed, 1 a check failed,
77 skipped (no venv/pip or the package could not be installed).
"""
import argparse
import base64
import os
import io
import json
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
import zlib

SKIP = 77
CACHE = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
VENV = os.environ.get("SCHNELL_OPENAI_VENV", os.path.join(CACHE, "schnell", "openai-venv"))


def skip(reason):
    print(f"skipped: {reason}")
    sys.exit(SKIP)


def ensure_openai():
    """Imports openai, or makes the venv, installs it there and re-executes this script."""
    try:
        import openai  # noqa: F401
        return
    except ImportError:
        pass
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(python):
        skip(f"the venv at {VENV} has no usable openai package")
    if not os.path.exists(python):
        made = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
        if made.returncode != 0:
            skip(f"cannot create a virtual environment ({made.stderr.strip().splitlines()[-1:]})")
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", "openai"], capture_output=True, text=True)
    if installed.returncode != 0:
        skip(f"pip could not install openai: {installed.stderr.strip().splitlines()[-1:]}")
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def png_size(data):
    """(width, height) from a PNG's IHDR, after checking the signature."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise AssertionError(f"not a PNG: starts with {data[:8]!r}")
    if data[12:16] != b"IHDR":
        raise AssertionError("PNG without IHDR first")
    return struct.unpack(">II", data[16:24])


def png(width, height, rgb=(200, 120, 40)):
    """A flat RGB PNG made with the standard library."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b"")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--api-key", default=os.environ.get("SCHNELL_API_KEY", "unused"))
    parser.add_argument("--model", default=None, help="model id; default: the first one listed")
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--cors-origin", default=None)
    parser.add_argument("--lora", default=None)
    args = parser.parse_args()
    ensure_openai()
    import openai

    base = args.base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    client = openai.OpenAI(base_url=base, api_key=args.api_key, timeout=600, max_retries=0)
    width, height = (int(side) for side in args.size.split("x"))
    failures = []

    def check(name, function):
        try:
            function()
            print(f"ok   {name}")
        except Exception as error:  # every failure is reported, then the next check runs
            failures.append(name)
            print(f"FAIL {name}: {type(error).__name__}: {error}")

    try:
        models = [model.id for model in client.models.list().data]
    except openai.APIError as error:
        print(f"FAIL cannot list models at {base}: {error}")
        sys.exit(1)
    print(f"models: {models}")
    if not models:
        print("FAIL no model is listed")
        sys.exit(1)
    model = args.model or models[0]

    def b64_json():
        response = client.images.generate(model=model, prompt="a red fox in the snow, watercolor", size=args.size,
                                          n=1, response_format="b64_json", extra_body={"seed": 42})
        assert len(response.data) == 1, f"{len(response.data)} images"
        size = png_size(base64.b64decode(response.data[0].b64_json))
        assert size == (width, height), f"image is {size}, asked for {args.size}"
        seed = (response.data[0].model_extra or {}).get("seed")
        assert seed == 42, f"seed echoed as {seed}"

    def url():
        response = client.images.generate(model=model, prompt="a lighthouse at dusk", size=args.size,
                                          response_format="url")
        link = response.data[0].url
        assert link and "/v1/images/files/" in link, f"url {link!r}"
        request = urllib.request.Request(link, headers={"Authorization": f"Bearer {args.api_key}"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            assert reply.headers.get("Content-Type") == "image/png", reply.headers.get("Content-Type")
            size = png_size(reply.read())
        assert size == (width, height), f"image is {size}, asked for {args.size}"

    def bad_size():
        try:
            client.images.generate(model=model, prompt="x", size="big")
        except openai.BadRequestError as error:
            body = error.body if isinstance(error.body, dict) else {}
            assert body.get("code") == "invalid_request" and body.get("param") == "size", body
            return
        raise AssertionError("size 'big' was accepted")

    def unknown_model():
        try:
            client.images.generate(model="no-such-model", prompt="x", size=args.size)
        except openai.NotFoundError as error:
            body = error.body if isinstance(error.body, dict) else {}
            assert body.get("code") == "model_not_found", body
            return
        raise AssertionError("an unknown model was accepted")

    root = base[: -len("/v1")]
    auth = {"Authorization": f"Bearer {args.api_key}"}

    def http(method, path, body=None, headers=None, key=True):
        """(status, headers, parsed JSON or raw bytes) of a raw request; errors are answers too."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        sent = dict(auth if key else {})
        if isinstance(body, dict):
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        request = urllib.request.Request(root + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=600) as reply:
                status, reply_headers, raw = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, reply_headers, raw = error.code, error.headers, error.read()
        kind = reply_headers.get("Content-Type", "")
        return status, reply_headers, json.loads(raw) if kind.startswith("application/json") else raw

    def stream_generate():
        events = list(client.images.generate(model=model, prompt="a kite over a beach", size=args.size, stream=True,
                                             partial_images=2, extra_body={"seed": 7}))
        kinds = [event.type for event in events]
        assert kinds == ["image_generation.partial_image"] * 2 + ["image_generation.completed"], kinds
        assert [event.partial_image_index for event in events[:2]] == [0, 1], events[:2]
        for event in events:
            assert png_size(base64.b64decode(event.b64_json)) == (width, height), event.type
        completed = events[-1]
        assert completed.usage.output_tokens == width // 16 * (height // 16), completed.usage
        assert completed.usage.input_tokens_details.text_tokens > 0, completed.usage
        plain = client.images.generate(model=model, prompt="a kite over a beach", size=args.size,
                                       response_format="b64_json", extra_body={"seed": 7})
        assert completed.b64_json == plain.data[0].b64_json, "the streamed image differs from the plain one"
        assert plain.usage.input_tokens == completed.usage.input_tokens, (plain.usage, completed.usage)

    def stream_edit():
        picture = png(width, height)
        extra = {"seed": 3, "strength": 1.0}
        events = list(client.images.edit(model=model, image=("in.png", picture, "image/png"), prompt="make it night",
                                         size=args.size, stream=True, partial_images=2, extra_body=extra))
        kinds = [event.type for event in events]
        assert kinds == ["image_edit.partial_image"] * 2 + ["image_edit.completed"], kinds
        plain = client.images.edit(model=model, image=("in.png", picture, "image/png"), prompt="make it night",
                                   size=args.size, extra_body=extra)
        assert events[-1].b64_json == plain.data[0].b64_json, "the streamed edit differs from the plain one"
        details = plain.usage.input_tokens_details
        assert details.image_tokens == width // 16 * (height // 16), plain.usage

    def bad_partial_images():
        try:
            client.images.generate(model=model, prompt="x", size=args.size, stream=True, partial_images=99)
        except openai.BadRequestError as error:
            assert (error.body or {}).get("param") == "partial_images", error.body
            return
        raise AssertionError("partial_images 99 was accepted")

    def json_edit():
        picture = "data:image/png;base64," + base64.b64encode(png(width, height)).decode()
        status, _, body = http("POST", "/v1/images/edits", {"model": model, "prompt": "a castle",
                                                             "images": [{"image_url": picture}], "size": args.size})
        assert status == 200, (status, body)
        assert png_size(base64.b64decode(body["data"][0]["b64_json"])) == (width, height)

    def image_url_generation():
        picture = "data:image/png;base64," + base64.b64encode(png(128, 64)).decode()
        response = client.images.generate(model=model, prompt="a castle", extra_body={"image_url": picture, "strength": 0.5})
        assert png_size(base64.b64decode(response.data[0].b64_json)) == (128, 64), "the reference's size is kept"
        assert response.usage.input_tokens_details.image_tokens == 8 * 4, response.usage
        try:
            client.images.generate(model=model, prompt="x", extra_body={"image_urls": [picture, picture]})
        except openai.BadRequestError as error:
            assert (error.body or {}).get("param") == "image_urls", error.body
            return
        raise AssertionError("two reference images were accepted")

    def poll(task_id, done):
        for _ in range(1200):
            status, _, body = http("GET", f"/v1/tasks/{task_id}")
            assert status == 200, (status, body)
            if body["status"] in done:
                return body
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} never reached {done}: {body}")

    def tasks():
        slow = {"model": model, "prompt": "a slow one", "size": "1024x1024", "steps": 50, "async": True}
        running = http("POST", "/v1/images/generations", slow)[2]
        queued = http("POST", "/v1/images/generations", slow)[2]
        assert queued["status"] == "pending" and queued["data"] == [], queued
        status, _, cancelled = http("DELETE", f"/v1/tasks/{queued['id']}")
        assert status == 200 and cancelled["status"] == "cancelled", (status, cancelled)
        poll(running["id"], {"running"})
        status, _, answer = http("POST", f"/v1/tasks/{running['id']}/cancel")
        assert status in (200, 202), (status, answer)
        final = poll(running["id"], {"cancelled", "completed", "failed"})
        assert final["status"] == "cancelled", final
        status, _, listing = http("GET", "/v1/tasks?limit=2")
        assert status == 200 and listing["object"] == "list", listing
        assert {task["id"] for task in listing["data"]} == {queued["id"], running["id"]}, listing["data"]
        done = http("POST", "/v1/images/generations", {"model": model, "prompt": "a quick one", "size": args.size,
                                                       "async": True})[2]
        finished = poll(done["id"], {"completed", "failed"})
        assert finished["status"] == "completed", finished
        link = finished["data"][0]["url"]
        with urllib.request.urlopen(link, timeout=60) as reply:  # no key: image URLs are capability links
            assert png_size(reply.read()) == (width, height)

    def models_shape():
        listed = client.models.list().data
        for entry in listed:
            extra = entry.model_extra or {}
            assert entry.created > 0, entry
            assert extra.get("modality") == "image", extra
            assert extra["allowedParams"]["supported_sizes"], extra
        status, _, text_only = http("GET", "/v1/models?modality=text")
        assert status == 200 and text_only["data"] == [], text_only
        status, _, images = http("GET", "/v1/models?modality=image")
        assert [entry["id"] for entry in images["data"]] == [entry.id for entry in listed], images
        alias = "flux-dev" if "dev" in model else "flux-schnell"
        assert client.models.retrieve(alias).id == model

    def cors():
        status, headers, _ = http("OPTIONS", "/v1/images/generations", key=False,
                                  headers={"Origin": args.cors_origin, "Access-Control-Request-Method": "POST",
                                           "Access-Control-Request-Headers": "authorization, content-type"})
        assert status == 204 and headers.get("Access-Control-Allow-Origin") == args.cors_origin, (status, dict(headers))
        status, _, _ = http("GET", "/v1/models", headers={"Origin": "https://elsewhere.example"})
        assert status == 403, status

    def variations():
        try:
            with warnings.catch_warnings():  # the client marks the call deprecated
                warnings.simplefilter("ignore", DeprecationWarning)
                client.images.create_variation(model=model, image=("in.png", png(64, 64), "image/png"))
        except openai.BadRequestError as error:
            assert "variation" in str(error).lower(), error
            return
        raise AssertionError("variations were accepted")

    def lora():
        listed = {entry["name"] for entry in (client.models.retrieve(model).model_extra or {}).get("loras", [])}
        assert args.lora in listed, listed
        def image(extra):
            response = client.images.generate(model=model, prompt="a harbour at night", size=args.size,
                                              response_format="b64_json", extra_body={"seed": 5, **extra})
            return response.data[0].b64_json, (response.model_extra or {}).get("loras")
        plain, _ = image({})
        adapted, echoed = image({"loras": [{"name": args.lora, "scale": 0.8}]})
        assert adapted != plain, "the LoRA left the image unchanged"
        assert echoed == [{"name": args.lora, "scale": 0.8}], echoed
        assert image({})[0] == plain, "the plain image after a LoRA request differs"
        assert image({"loras": [{"name": args.lora, "scale": 0.8}]})[0] == adapted, "the LoRA image is not reproducible"
        try:
            client.images.generate(model=model, prompt="x", size=args.size, extra_body={"loras": [{"name": "no-such-lora"}]})
        except openai.BadRequestError as error:
            assert (error.body or {}).get("param") == "loras", error.body
            return
        raise AssertionError("an unknown LoRA was accepted")

    check("generate b64_json", b64_json)
    check("generate url", url)
    check("size 'big' is a 400 naming size", bad_size)
    check("unknown model is a 404 model_not_found", unknown_model)
    check("generate stream: 2 partial images, then the plain image", stream_generate)
    check("edit stream: 2 partial images, then the plain edit", stream_edit)
    check("partial_images 99 is a 400", bad_partial_images)
    check("JSON edit with a data URL", json_edit)
    check("image_url data URL on generations", image_url_generation)
    check("tasks: cancel queued and running, list, URL without the key", tasks)
    check("models: shape, modality filter, alias", models_shape)
    check("variations are refused", variations)
    if args.cors_origin:
        check("CORS preflight", cors)
    if args.lora:
        check("LoRA: listed, applied, echoed; plain after it exact; unknown name a 400", lora)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
