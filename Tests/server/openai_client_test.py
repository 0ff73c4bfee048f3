#!/usr/bin/env python3
"""Checks a running `schnell serve` with the official `openai` Python client.

Usage: openai_client_test.py BASE_URL [--api-key KEY] [--model ID] [--size WxH]

BASE_URL is the server's root or its /v1 (e.g. http://127.0.0.1:8080). The script installs
`openai` into a virtual environment ($SCHNELL_OPENAI_VENV, default ~/.cache/schnell/openai-venv)
on first use and re-runs itself there. Exit status: 0 all checks passed, 1 a check failed,
77 skipped (no venv/pip or the package could not be installed).
"""
import argparse
import base64
import os
import struct
import subprocess
import sys
import urllib.request

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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base_url")
    parser.add_argument("--api-key", default=os.environ.get("SCHNELL_API_KEY", "unused"))
    parser.add_argument("--model", default=None, help="model id; default: the first one listed")
    parser.add_argument("--size", default="256x256")
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

    check("generate b64_json", b64_json)
    check("generate url", url)
    check("size 'big' is a 400 naming size", bad_size)
    check("unknown model is a 404 model_not_found", unknown_model)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")


if __name__ == "__main__":
    main()
