#!/usr/bin/env python3
"""Runs the attack cases against a running `schnell serve`.

Usage: run.py URL PID [--api-key KEY] [--quick] [--head-timeout SECONDS] [--only SUBSTRING]

URL is the server's root (http://127.0.0.1:8080) and PID its process id (cases read its memory
from /proc/PID/status). The script starts nothing: start the server first, with the key, e.g.

    .build/debug/schnell serve --port 8080 --api-key sk-attack &
    python3 Tests/server/attacks/run.py http://127.0.0.1:8080 $! --api-key sk-attack

Every module in this folder (except this one and names starting with '_') is imported and each of
its functions named `case_<name>(url, pid)` is run in order; a case passes when it returns (a
returned string is printed as a note) and fails when it raises. After each case the server must
still be alive and answer /health.
Cases read their settings from the environment this script sets: SCHNELL_API_KEY (the key the
server accepts), SCHNELL_ATTACKS_QUICK=1 (smaller counts, for CI) and SCHNELL_HEAD_TIMEOUT (the
server's --head-timeout, so cases know when trickling connections must be gone).

Prints one line per case and a final 'N passed, N failed' line; exits 1 when any case failed.
"""
import argparse
import importlib.util
import inspect
import os
import sys
import time
import traceback
import urllib.request


def discover(folder):
    """(module name, case name, function) for every case, in file order then definition order."""
    cases = []
    for file_name in sorted(os.listdir(folder)):
        if not file_name.endswith(".py") or file_name.startswith("_") or file_name == os.path.basename(__file__):
            continue
        name = file_name[:-3]
        spec = importlib.util.spec_from_file_location(f"attacks_{name}", os.path.join(folder, file_name))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        functions = [(inspect.getsourcelines(function)[1], case_name, function)
                     for case_name, function in vars(module).items()
                     if case_name.startswith("case_") and inspect.isfunction(function)]
        cases += [(name, case_name, function) for _, case_name, function in sorted(functions, key=lambda item: item[0])]
    return cases


def still_serving(url, pid):
    """None when the process is alive and /health answers 200; otherwise what is wrong."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"the server process {pid} is gone"
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5) as reply:
            return None if reply.status == 200 else f"/health answered {reply.status}"
    except Exception as error:
        return f"/health failed: {error}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("pid", type=int)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--quick", action="store_true", help="smaller counts (CI)")
    parser.add_argument("--head-timeout", type=float, default=10, help="the server's --head-timeout (default 10)")
    parser.add_argument("--only", default="", help="run only cases whose module.case name contains this")
    args = parser.parse_args()
    url = args.url.rstrip("/")
    os.environ["SCHNELL_API_KEY"] = args.api_key
    os.environ["SCHNELL_ATTACKS_QUICK"] = "1" if args.quick else "0"
    os.environ["SCHNELL_HEAD_TIMEOUT"] = str(args.head_timeout)

    problem = still_serving(url, args.pid)
    if problem:
        print(f"FAIL before any case: {problem}")
        sys.exit(1)
    passed = failed = 0
    for module, case_name, function in discover(os.path.dirname(os.path.abspath(__file__))):
        label = f"{module}.{case_name[len('case_'):]}"
        if args.only not in label:
            continue
        started = time.monotonic()
        try:
            note = function(url, args.pid)
            problem = still_serving(url, args.pid)
            if problem:
                raise AssertionError(f"after the case: {problem}")
        except AssertionError as error:
            failed += 1
            print(f"FAIL {label} ({time.monotonic() - started:.1f} s): {error}", flush=True)
            continue
        except Exception:
            failed += 1
            reason = traceback.format_exc().strip().splitlines()[-1]
            print(f"FAIL {label} ({time.monotonic() - started:.1f} s): error {reason}", flush=True)
            continue
        passed += 1
        print(f"ok   {label} ({time.monotonic() - started:.1f} s){': ' + note if isinstance(note, str) else ''}", flush=True)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
