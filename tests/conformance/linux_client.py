#!/usr/bin/env python3
"""The Linux kernel's TCP client doing what `tcpshake probe` does, for the conformance suite.

Usage: linux_client.py ADDR PORT http|no-http REQUEST_HEX TIMEOUT_S LINGER_S SYN_RETRIES

connect (TCP_SYNCNT = SYN_RETRIES, as tcpshake's --retries); no-http: close at once.
http: send the request, read until the response head is complete, the server's FIN, or
TIMEOUT_S of silence (then abort with RST, as tcpshake resets a connection it gives up on),
then wait LINGER_S for the server's FIN and close. Prints one JSON line:
{"connect": "ok" | errno name, "response": status line | null, "eof": bool, "error": ...}.
"""
import errno
import json
import socket
import struct
import sys
import time


def name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else type(e).__name__


def main():
    addr, port, mode, req, timeout, linger, retries = sys.argv[1:8]
    timeout, linger = float(timeout), float(linger)
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, max(1, int(retries)))
    out = {"connect": None, "response": None, "eof": False, "error": None}
    try:
        s.connect((addr, int(port)))
    except OSError as e:
        out["connect"] = name(e)
        print(json.dumps(out))
        return 1
    out["connect"] = "ok"
    if mode == "http":
        try:
            s.sendall(bytes.fromhex(req))
            buf = b""
            deadline = time.monotonic() + timeout
            while b"\r\n\r\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    out["error"] = "timeout"
                    break
                s.settimeout(left)
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    out["eof"] = True
                    break
                buf += d
            if b"\r\n" in buf:
                out["response"] = buf.split(b"\r\n", 1)[0].decode("latin-1")
            if out["error"] == "timeout":
                # Give up as tcpshake does: reset.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif not out["eof"]:
                deadline = time.monotonic() + linger
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    try:
                        if not s.recv(65536):
                            out["eof"] = True
                            break
                    except socket.timeout:
                        break
        except OSError as e:
            out["error"] = name(e)
    s.close()
    print(json.dumps(out))
    return 0 if out["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
