#!/usr/bin/env python3
"""Measures framed-echo server's process-wide limits against a release build.

    cargo build --release -p examples
    python3 examples/scripts/echo-limits.py [emfile|memory|idle]... [--bin PATH]

emfile: RLIMIT_NOFILE 256, 400 clients connect and send a frame before any is
        read; each is then read and closed in turn, and one more connects.
memory: 48 clients each send all but the last byte of an (8 MiB - 1) frame,
        default budget; the server's peak RSS (VmHWM), then a good client.
idle:   500 clients that send nothing; how many the server closes (default
        --idle-timeout 10s).
"""
import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BIN = os.path.join(target, "release", "framed-echo")


def start(extra, nofile=None):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    p = subprocess.Popen(
        [BIN, "server", "--listen", "127.0.0.1:0", "--json"] + extra,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=limit if nofile else None,
        env=dict(os.environ, RUST_LOG="warn"),
    )
    # With --json stdout carries only the final document: the address is
    # announced on stderr, among the logs. Lines before it are kept for stop().
    p.early_log = ""
    while True:
        line = p.stderr.readline().decode()
        if not line:
            raise RuntimeError("framed-echo server exited: " + p.early_log)
        if line.startswith("listening on "):
            break
        p.early_log += line
    host, port = line.split()[-1].rsplit(":", 1)
    return p, (host, int(port))


def stop(p):
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate()
    return json.loads(out.decode())["stats"], p.early_log + err.decode()


def peak_rss_mib(p):
    with open(f"/proc/{p.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    return -1


def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise EOFError("closed early")
        data += chunk
    return data


def emfile():
    p, addr = start([], nofile=256)
    t0 = time.time()
    conns = []
    for i in range(400):
        s = socket.create_connection(addr, timeout=10)
        s.sendall(struct.pack(">I", 64) + bytes([i % 256]) * 64)
        conns.append(s)
    for i, s in enumerate(conns):
        assert recv_exact(s, 68)[4:] == bytes([i % 256]) * 64
        s.close()
    s = socket.create_connection(addr, timeout=10)
    s.sendall(struct.pack(">I", 3) + b"new")
    assert recv_exact(s, 7)[4:] == b"new"
    s.close()
    dt = time.time() - t0
    st, err = stop(p)
    print(
        f"emfile: RLIMIT_NOFILE 256, 400 clients + 1 new: all served in {dt:.2f} s; "
        f"accepted {st['accepted']}, ran out {st['accept_exhausted']}x "
        f"({st['accept_failures']} failed accepts), 'accept failed' logged {err.count('accept failed')}x"
    )


def memory():
    p, addr = start([])
    n = 8 * 1024 * 1024 - 1
    held = []

    def hostile():
        try:
            s = socket.create_connection(addr)
            s.sendall(struct.pack(">I", n) + b"x" * (n - 1))
            held.append(s)
        except OSError:
            pass

    threads = [threading.Thread(target=hostile) for _ in range(48)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    good = subprocess.run(
        [BIN, "client", "--connect", f"{addr[0]}:{addr[1]}", "--count", "10000", "--size", "1000"],
        capture_output=True,
        text=True,
    )
    peak = peak_rss_mib(p)
    st, _ = stop(p)
    print(
        f"memory: 48 x (8 MiB - 1) partial frames, default 64 MiB budget: peak RSS {peak} MiB, "
        f"{st['over_budget']} closed over budget, peak buffered {st['peak_buffered_bytes'] / 2**20:.1f} MiB; "
        f"good client exit {good.returncode}: {good.stdout.strip()}"
    )


def idle():
    p, addr = start([])
    conns = [socket.create_connection(addr) for _ in range(500)]
    t0 = time.time()
    closed = 0
    for s in conns:
        s.settimeout(30)
        try:
            if s.recv(1) == b"":
                closed += 1
        except ConnectionResetError:
            closed += 1
    dt = time.time() - t0
    st, _ = stop(p)
    print(f"idle: 500 silent clients: {closed}/500 closed after {dt:.1f} s; timed_out {st['timed_out']}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--bin" in args:
        i = args.index("--bin")
        BIN = args[i + 1]
        del args[i : i + 2]
    for name in args or ["emfile", "memory", "idle"]:
        {"emfile": emfile, "memory": memory, "idle": idle}[name]()
