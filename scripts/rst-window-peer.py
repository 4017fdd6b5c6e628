#!/usr/bin/env python3
"""A scripted TCP peer that limits its RSTs the way FreeBSD and macOS do (for
scripts/bench-rst-window): SYN-ACK to a SYN for an open port, RST-ACK to any other, but
at most LIMIT RSTs in each second (FreeBSD's ppsratecheck with net.inet.icmp.icmplim =
LIMIT, 200 by default; macOS 250): the rest are dropped silently. SYN-ACKs are not
limited, as in FreeBSD.

It reads SYNs on an AF_PACKET socket (a classic BPF filter: SYN without ACK to ADDR) and
answers with frames of its own, so the kernel of its namespace must not see the TCP
segments (the bench drops them at input). A window is the whole second of the SYN's
kernel arrival time (SO_TIMESTAMPNS), so a peer running late still answers the SYNs a
real one would. On SIGTERM it writes what it saw as JSON to --stats.

Plain python3: no scapy. The filter is compiled by `tcpdump -ddd`.
"""
import argparse
import ctypes
import json
import os
import signal
import socket
import struct
import subprocess
import sys

SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
ETH_P_IP = 0x0800

ap = argparse.ArgumentParser()
ap.add_argument("--iface", required=True)
ap.add_argument("--addr", required=True)
ap.add_argument("--open", default="22,80", help="open ports, comma-separated")
ap.add_argument("--limit", type=int, default=0, help="RSTs a second; 0: no limit")
ap.add_argument("--stats", required=True)
ap.add_argument("--ready", required=True, help="a file created once listening")
a = ap.parse_args()

open_ports = {int(p) for p in a.open.split(",") if p}
my_ip = socket.inet_aton(a.addr)

expr = "ip dst %s and tcp and tcp[13] & 0x12 == 0x02" % a.addr
lines = subprocess.check_output(
    ["tcpdump", "-i", a.iface, "-ddd", expr], stderr=subprocess.DEVNULL
).decode().split("\n")
count = int(lines[0])
code = b"".join(struct.pack("HBBI", *map(int, l.split())) for l in lines[1 : 1 + count])
code_buf = ctypes.create_string_buffer(code)
prog = struct.pack("HL", count, ctypes.addressof(code_buf))

rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
rx.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
try:
    rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
except OSError:
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
rx.bind((a.iface, ETH_P_IP))
# What arrived before the filter was attached is not ours to answer.
rx.setblocking(False)
try:
    for _ in range(100000):
        rx.recv(65535)
except BlockingIOError:
    pass
rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reading resets the counters
rx.setblocking(True)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
tx.bind((a.iface, 0))

stats = {"syn_seen": 0, "synack_sent": 0, "rst_sent": 0, "limited": 0, "kernel_drops": 0}


def checksum(b):
    if len(b) & 1:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def stop(*_):
    _, drops = struct.unpack("II", rx.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    stats["kernel_drops"] += drops
    with open(a.stats, "w") as f:
        json.dump(stats, f)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
isn_key = int.from_bytes(os.urandom(4), "big")
window, in_window = None, 0
frame = bytearray(2048)
anc_size = socket.CMSG_SPACE(16)
open(a.ready, "w").close()
while True:
    n, anc, _, _ = rx.recvmsg_into([frame], anc_size)
    second = struct.unpack_from("qq", anc[0][2])[0] if anc else None
    ihl = (frame[14] & 15) * 4
    t = 14 + ihl
    if n < t + 20:
        continue
    stats["syn_seen"] += 1
    sport, dport, seq = struct.unpack_from("!HHI", frame, t)
    is_open = dport in open_ports
    if second != window:
        window, in_window = second, 0
    if a.limit > 0 and not is_open:
        if in_window >= a.limit:
            stats["limited"] += 1
            continue
        in_window += 1
    src_ip = bytes(frame[26:30])
    if is_open:
        isn = (isn_key ^ (sport << 16 | dport)) & 0xFFFFFFFF
        tcp = struct.pack("!HHIIBBHHH", dport, sport, isn, (seq + 1) & 0xFFFFFFFF,
                          6 << 4, 0x12, 65535, 0, 0) + struct.pack("!BBH", 2, 4, 1460)
        stats["synack_sent"] += 1
    else:
        tcp = struct.pack("!HHIIBBHHH", dport, sport, 0, (seq + 1) & 0xFFFFFFFF,
                          5 << 4, 0x14, 0, 0, 0)
        stats["rst_sent"] += 1
    pseudo = my_ip + src_ip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0,
                     my_ip, src_ip)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    tx.send(bytes(frame[6:12]) + bytes(frame[0:6]) + b"\x08\x00" + ip + tcp)
