"""A small capture with a known retransmission and a known out-of-order
segment, written with `struct` (classic pcap, Ethernet, IPv4), for
`scripts/tcp-conformance --self-test`: both tools must agree on every flag.

The connection (client 10.0.0.1:40000 -> server 10.0.0.2:80, 10 ms initial
RTT, 100-byte segments A..E from the client):

    1  SYN                      t=0
    2  SYN-ACK                  t=5 ms
    3  ACK                      t=10 ms
    4  A  seq 1..100            t=20 ms
    5  C  seq 201..300          t=21 ms   jump: lost segment (B not yet seen)
    6  D  seq 301..400          t=22 ms
    7  B  seq 101..200          t=22.5 ms out-of-order: 0.5 ms after D, 1.5 ms
                                          after its hole opened, under 10 ms
    8  ACK 401                  t=30 ms
    9  E  seq 401..500          t=40 ms
   10  E  again                 t=400 ms  retransmission (360 ms of silence)
   11  ACK 501                  t=410 ms

Expected from both: R 1, O 1, L 1, every other flag 0.
"""

import struct

EXPECTED = {"R": 1, "O": 1, "L": 1}

CLIENT = (bytes([10, 0, 0, 1]), 40000)
SERVER = (bytes([10, 0, 0, 2]), 80)
ISN_C, ISN_S = 1000, 5000
SYN, ACK, PSH = 0x02, 0x10, 0x08


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(src, dst, seq, ack, flags, payload=b"", window=65535):
    tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, flags, window, 0, 0)
    pseudo = src[0] + dst[0] + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
    csum = _checksum(pseudo + tcp + payload)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, 6, 0, src[0], dst[0])
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + b"\x08\x00"
    return eth + ip + tcp + payload


def frames():
    """(seconds, frame bytes) of the connection above."""
    c, s = CLIENT, SERVER
    data = lambda n: bytes([0x41 + n]) * 100  # noqa: E731
    seq = lambda i: ISN_C + 1 + 100 * i  # noqa: E731
    ack_s = ISN_S + 1
    return [
        (0.000, _frame(c, s, ISN_C, 0, SYN)),
        (0.005, _frame(s, c, ISN_S, ISN_C + 1, SYN | ACK)),
        (0.010, _frame(c, s, ISN_C + 1, ack_s, ACK)),
        (0.020, _frame(c, s, seq(0), ack_s, ACK | PSH, data(0))),
        (0.021, _frame(c, s, seq(2), ack_s, ACK | PSH, data(2))),
        (0.022, _frame(c, s, seq(3), ack_s, ACK | PSH, data(3))),
        (0.0225, _frame(c, s, seq(1), ack_s, ACK | PSH, data(1))),
        (0.030, _frame(s, c, ack_s, seq(4), ACK)),
        (0.040, _frame(c, s, seq(4), ack_s, ACK | PSH, data(4))),
        (0.400, _frame(c, s, seq(4), ack_s, ACK | PSH, data(4))),
        (0.410, _frame(s, c, ack_s, seq(5), ACK)),
    ]


def write(path, base_s=1_700_000_000):
    """Writes the capture as microsecond pcap, Ethernet link type."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, frame in frames():
            us = round(t * 1e6)
            out.write(struct.pack("<IIII", base_s + us // 1_000_000, us % 1_000_000, len(frame), len(frame)))
            out.write(frame)
