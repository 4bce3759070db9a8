#!/usr/bin/env python3
"""Writes seed captures for the `capture` fuzz target into a directory
(default: corpus/capture next to this script), so that libFuzzer starts from
well-framed files of every format instead of finding the magic numbers
itself: pcap in both byte orders and resolutions, pcapng with two
interfaces and every packet block type, Ethernet/VLAN, SLL, SLL2, NULL and
raw links, IPv4 and IPv6, fragments, TCP options (MSS, window scale, SACK,
timestamps), a handshake, data out of order, a retransmission and FINs.

The seeds are generated, not committed (the corpus directory is ignored).
Run: python3 make-seeds.py [DIR]
"""

import os
import struct
import sys


def tcp(sport, dport, seq, ack, flags, payload=b"", options=b"", window=65535):
    while len(options) % 4:
        options += b"\x00"
    doff = (20 + len(options)) // 4
    m = 0xFFFFFFFF  # sequence numbers wrap
    head = struct.pack(
        ">HHIIBBHHH", sport, dport, seq & m, ack & m, doff << 4, flags, window, 0, 0
    )
    return head + options + payload


def ipv4(l4, ident=1, frag=0x4000, proto=6):
    return (
        struct.pack(
            ">BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(l4),
            ident,
            frag,
            64,
            proto,
            0,
            bytes([10, 0, 0, 1]),
            bytes([10, 0, 0, 2]),
        )
        + l4
    )


def ipv4_rev(l4):
    b = bytearray(ipv4(l4))
    b[12:16], b[16:20] = b[16:20], b[12:16]
    return bytes(b)


def ipv6(after, next_header=6):
    src = bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [1])
    dst = bytes([0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [2])
    return struct.pack(">IHBB", 0x60000000, len(after), next_header, 64) + src + dst + after


def ethernet(ip, vlan=None):
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    b = bytes([2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1])
    if vlan is not None:
        b += struct.pack(">HH", 0x8100, vlan)
    return b + struct.pack(">H", etype) + ip


def sll(ip):
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return bytes([0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]) + struct.pack(">H", etype) + ip


def sll2(ip):
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack(">HHIHBB", etype, 0, 3, 1, 0, 6) + bytes(8) + ip


def null(ip):
    return struct.pack("<I", 24 if ip[0] >> 4 == 6 else 2) + ip


SYN, FIN, ACK, PSH = 0x02, 0x01, 0x10, 0x08
SYN_OPTS = bytes([2, 4, 5, 0xB4, 1, 3, 3, 7, 4, 2])


def ts_opt(a, b):
    return bytes([1, 1, 8, 10]) + struct.pack(">II", a, b)


def sack_opt(*blocks):
    body = b"".join(struct.pack(">II", l & 0xFFFFFFFF, r & 0xFFFFFFFF) for l, r in blocks)
    return bytes([1, 1, 5, 2 + len(body)]) + body


def conversation():
    """Client 10.0.0.1:40000 -> server 10.0.0.2:80: handshake, data with a
    hole filled out of order and a retransmission, duplicate ACKs with SACK,
    FINs. Returns IPv4 packets."""
    c, s = 0xFFFFFF00, 5000
    pk = []
    up = lambda seq, ack, fl, pl=b"", op=b"": pk.append(ipv4(tcp(40000, 80, seq, ack, fl, pl, op)))
    down = lambda seq, ack, fl, pl=b"", op=b"": pk.append(ipv4_rev(tcp(80, 40000, seq, ack, fl, pl, op)))
    up(c, 0, SYN, op=SYN_OPTS)
    down(s, c + 1, SYN | ACK, op=SYN_OPTS)
    up(c + 1, s + 1, ACK)
    up(c + 1, s + 1, ACK | PSH, b"a" * 100, ts_opt(1, 2))
    up(c + 201, s + 1, ACK | PSH, b"c" * 100, ts_opt(2, 2))
    down(s + 1, c + 101, ACK, op=sack_opt((c + 201, c + 301)))
    down(s + 1, c + 101, ACK, op=sack_opt((c + 201, c + 301)))
    up(c + 101, s + 1, ACK | PSH, b"b" * 100, ts_opt(3, 2))
    up(c + 101, s + 1, ACK | PSH, b"b" * 100, ts_opt(4, 2))
    down(s + 1, c + 301, ACK, op=ts_opt(9, 4))
    up(c + 301, s + 1, FIN | ACK)
    down(s + 1, c + 302, FIN | ACK)
    up(c + 302, s + 2, ACK)
    return pk


def pcap(link, frames, big=False, nanos=False, snaplen=65535):
    e = ">" if big else "<"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, snaplen, link)
    for i, f in enumerate(frames):
        out += struct.pack(e + "IIII", 1_700_000_000 + i, i * 1000, len(f), len(f)) + f
    return out


def pcapng_block(btype, body):
    body += b"\x00" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def pcapng():
    shb = pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = pcapng_block(1, struct.pack("<HHI", 276, 0, 65535) + struct.pack("<HHB3x", 9, 1, 9) + bytes(4))
    idb1 = pcapng_block(1, struct.pack("<HHI", 0, 0, 96))
    out = shb + idb0 + idb1
    for i, p in enumerate(conversation()[:6]):
        iface = i % 2
        frame = sll2(p) if iface == 0 else null(p)[:96]
        body = struct.pack("<IIIII", iface, 0, i * 1000, len(frame), len(null(p)) if iface else len(frame))
        out += pcapng_block(6, body + frame)
    simple = sll2(ipv4(tcp(1, 2, 3, 4, ACK, b"simple")))
    out += pcapng_block(3, struct.pack("<I", len(simple)) + simple)
    out += pcapng_block(5, struct.pack("<IIIxxxx", 0, 0, 0))
    return out


def fragments():
    l4 = tcp(7, 8, 1, 1, ACK | PSH, bytes(range(200)))
    v4 = [ipv4(l4[:96], 77, 0x2000), ipv4(l4[96:], 77, 96 // 8)]
    v6 = []
    for off, more, piece in [(0, 1, l4[:104]), (104, 0, l4[104:])]:
        fh = struct.pack(">BBHI", 6, 0, (off // 8) << 3 | more, 9) + piece
        v6.append(ipv6(fh, 44))
    return v4[::-1] + v6


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "corpus", "capture")
    os.makedirs(out, exist_ok=True)
    conv = conversation()
    seeds = {
        "eth-le-us.pcap": pcap(1, [ethernet(p) for p in conv]),
        "vlan-be-ns.pcap": pcap(1, [ethernet(p, 7) for p in conv[:8]], big=True, nanos=True),
        "sll-snap.pcap": pcap(113, [sll(p)[:60] for p in conv[:6]], snaplen=60),
        "raw-fragments.pcap": pcap(101, fragments()),
        "two-interfaces.pcapng": pcapng(),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(data)
    print(f"{len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
