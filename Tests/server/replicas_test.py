#!/usr/bin/env python3
"""Two `schnell serve` replicas sharing one PostgreSQL task store (`--task-store`), on the
bundled model, checked as a load balancer would use them.

Usage: replicas_test.py SCHNELL_BINARY [--throughput N]

Needs SCHNELL_TEST_POSTGRES_URL and SCHNELL_TEST_POSTGRES_DIR (a server started with
Tests/server/postgres.sh, which this script stops and starts again); each run makes its own
database there. Checks:
  - a task created on A is polled on B, its image URL fetched from both, and a running task
    created on B is cancelled through A;
  - 20 async tasks sent alternately to A and B all complete, each exactly once (attempt 1), and
    both replicas ran some;
  - kill -9 of the replica running a task: after its lease (3 s) the other replica claims it
    again and completes it (attempt 2), nothing lost or duplicated;
  - PostgreSQL stopped with tasks in flight: async requests answer 503 task_store_unavailable,
    synchronous ones still 200, /health says unreachable; started again: async requests work
    again, without restarting the engines, and every task in flight completes.
Then measures throughput (async tasks of 64x64, 1 step, created then polled to completion, per
second) with one replica and with two on the store, and with one replica on its own output
folder (no store), N tasks each (default 20), so the store's cost per task shows. Every replica
computes on one thread, so two of them on a two-core machine do not fight over the cores. Exit 0 pass, 1 fail, 77 no PostgreSQL given.
"""
import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

from serverkit import free_port, wait_for
from serverkit import request as raw_request

KEY = "sk-replicas"


def request(port, method, path, body=None, timeout=120):
    return raw_request(port, method, path, body, key=KEY, timeout=timeout)
HERE = os.path.dirname(os.path.abspath(__file__))


class Replica:
    """`schnell serve` on a free port; with `url`, a replica of the shared store, else on its own."""
    def __init__(self, binary, url, name, folder):
        self.name = name
        self.port = free_port()
        self.log = open(os.path.join(folder, f"{name}.log"), "w")
        shared = ["--task-store", url, "--replica", name, "--task-lease", "3", "--task-attempts", "3"] if url else []
        self.process = subprocess.Popen(
            [binary, "serve", "--port", str(self.port), "--output-dir", os.path.join(folder, name), "--api-key", KEY,
             "--max-queue", "100", "--threads", "1"] + shared,
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: request(self.port, "GET", "/health", timeout=2)[0] == 200, 60, f"replica {name} becoming ready")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def create(port, body):
    status, answer = request(port, "POST", "/v1/images/generations", dict(body, **{"async": True}))
    assert status == 202, f"creating a task got {status} {answer}"
    return answer["id"]


def poll(port, task_id, statuses, seconds=120):
    answer = {}
    def reached():
        nonlocal answer
        status, answer = request(port, "GET", f"/v1/tasks/{task_id}", timeout=10)
        return status == 200 and answer.get("status") in statuses
    wait_for(reached, seconds, f"task {task_id} reaching {statuses} (last: {answer.get('status')})")
    return answer


def cross_replica(a, b):
    first = create(a.port, {"prompt": "a fox", "size": "64x64", "seed": 3})
    done = poll(b.port, first, {"completed", "failed"})
    assert done["status"] == "completed", done
    link = urllib.parse.urlparse(done["data"][0]["url"]).path
    for replica in (a, b):
        status, body = request(replica.port, "GET", link)
        assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n", f"{replica.name} served the image with {status}"
    slow = create(b.port, {"prompt": "slow", "size": "1024x1024", "steps": 50})
    poll(a.port, slow, {"running"})
    status, answer = request(a.port, "DELETE", f"/v1/tasks/{slow}")
    assert status == 200 and answer["status"] in ("cancelling", "cancelled"), (status, answer)
    final = poll(b.port, slow, {"cancelled", "completed", "failed"}, seconds=30)
    assert final["status"] == "cancelled", final
    print(f"ok   a task made on A is read on B and its image served by both; a running task made on B "
          f"is cancelled through A (ran on {final.get('replica', '?')})")


def spread(a, b, count=20):
    # Tasks long enough (about 0.1 s) that one replica cannot drain the queue between the other's polls.
    ids = [create((a, b)[index % 2].port, {"prompt": f"task {index}", "size": "256x256", "steps": 4}) for index in range(count)]
    finished = [poll(a.port, task_id, {"completed", "failed"}) for task_id in ids]
    statuses = {task["status"] for task in finished}
    assert statuses == {"completed"}, f"statuses {statuses}"
    attempts = {task.get("attempt") for task in finished}
    assert attempts == {1}, f"attempts {attempts}: a task ran twice"
    ran = {task.get("replica") for task in finished}
    assert ran == {"a", "b"}, f"only {ran} ran tasks"
    counts = {name: sum(task.get("replica") == name for task in finished) for name in ("a", "b")}
    print(f"ok   {count} tasks over both replicas all completed once each ({counts})")


def killed_replica(binary, url, folder, a, b):
    task = create(a.port, {"prompt": "survives", "size": "512x512", "steps": 8, "seed": 9})
    running = poll(b.port, task, {"running"})
    victim = a if running.get("replica") == "a" else b
    survivor = b if victim is a else a
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait()
    final = poll(survivor.port, task, {"completed", "failed"}, seconds=120)
    assert final["status"] == "completed", final
    assert final.get("replica") == survivor.name and final.get("attempt") == 2, final
    print(f"ok   kill -9 of replica {victim.name} while it ran a task: {survivor.name} claimed it again after the "
          f"lease and completed it (attempt 2)")
    return Replica(binary, url, victim.name, folder), survivor


def store_restart(a, postgres_dir, postgres_port):
    # Work in flight when the database goes: tasks waiting and one running.
    in_flight = [create(a.port, {"prompt": f"in flight {index}", "size": "256x256", "steps": 8}) for index in range(3)]
    poll(a.port, in_flight[0], {"running", "completed"})
    subprocess.run(["bash", os.path.join(HERE, "postgres.sh"), "stop", postgres_dir], check=True, capture_output=True)
    try:
        status, answer = request(a.port, "POST", "/v1/images/generations",
                                 {"prompt": "x", "size": "64x64", "async": True}, timeout=30)
        assert status == 503 and answer["error"]["code"] == "task_store_unavailable", (status, answer)
        status, _ = request(a.port, "POST", "/v1/images/generations", {"prompt": "x", "size": "64x64"})
        assert status == 200, f"a synchronous request got {status} while the store was away"
        health = request(a.port, "GET", "/health")[1]
        assert health.get("task_store") == "unreachable", health
    finally:
        subprocess.run(["bash", os.path.join(HERE, "postgres.sh"), "start", postgres_dir, str(postgres_port)],
                       check=True, capture_output=True)
    def recovered():
        status, answer = request(a.port, "POST", "/v1/images/generations", {"prompt": "back", "size": "64x64", "async": True})
        return status == 202
    wait_for(recovered, 30, "async requests working again")
    # A task that finished while the database was away could not be recorded: it runs again once
    # its lease runs out. Every task in flight ends completed.
    finals = [poll(a.port, task_id, {"completed", "failed"}, seconds=120) for task_id in in_flight]
    assert [task["status"] for task in finals] == ["completed"] * 3, finals
    attempts = [task.get("attempt") for task in finals]
    print(f"ok   PostgreSQL stopped with 3 tasks in flight: async 503 task_store_unavailable, sync 200, health "
          f"unreachable; started again: async works again without restarting the engines, and the tasks in flight "
          f"all completed (attempts {attempts})")


def throughput(replicas, count):
    start = time.monotonic()
    ids = [create(replicas[index % len(replicas)].port, {"prompt": f"t{index}", "size": "64x64", "steps": 1}) for index in range(count)]
    for task_id in ids:
        poll(replicas[0].port, task_id, {"completed", "failed"})
    return count / (time.monotonic() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("binary")
    parser.add_argument("--throughput", type=int, default=20)
    args = parser.parse_args()
    admin_url, postgres_dir = os.environ.get("SCHNELL_TEST_POSTGRES_URL"), os.environ.get("SCHNELL_TEST_POSTGRES_DIR")
    if not admin_url or not postgres_dir:
        print("skipped: set SCHNELL_TEST_POSTGRES_URL and SCHNELL_TEST_POSTGRES_DIR (Tests/server/postgres.sh start DIR PORT)")
        sys.exit(77)
    postgres_port = urllib.parse.urlparse(admin_url).port
    database = f"schnell_replicas_{random.randrange(1 << 30)}"
    socket_dir = os.path.join(postgres_dir, "socket")
    psql = ["psql", "-h", "127.0.0.1", "-p", str(postgres_port), "-U", "postgres", "-d", "postgres", "-qc"]
    subprocess.run(psql + [f"CREATE DATABASE {database}"], check=True, capture_output=True)
    url = admin_url.rsplit("/", 1)[0] + "/" + database
    folder = tempfile.mkdtemp(prefix="schnell-replicas-")
    replicas = []
    failed = False
    try:
        replicas = [Replica(args.binary, url, "a", folder), Replica(args.binary, url, "b", folder)]
        for name, check in [("cross", lambda: cross_replica(*replicas)), ("spread", lambda: spread(*replicas))]:
            check()
        replicas = list(killed_replica(args.binary, url, folder, *replicas))
        replicas.sort(key=lambda replica: replica.name)
        store_restart(replicas[0], postgres_dir, postgres_port)
        one = throughput(replicas[:1], args.throughput)
        two = throughput(replicas, args.throughput)
        for replica in replicas:
            replica.stop()
        replicas = [Replica(args.binary, None, "alone", folder)]
        alone = throughput(replicas, args.throughput)
        print(f"throughput, {args.throughput} async tasks of 64x64 and 1 step on the tiny model: one replica "
              f"{one:.2f} tasks/s, two replicas {two:.2f} tasks/s on the store; one server without a store "
              f"{alone:.2f} tasks/s (the store adds {1000 / one - 1000 / alone:.1f} ms a task)")
    except AssertionError as error:
        failed = True
        print(f"FAIL {error}; logs in {folder}")
    finally:
        for replica in replicas:
            replica.stop()
        subprocess.run(psql + [f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"], capture_output=True)
    print("failed" if failed else "passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
