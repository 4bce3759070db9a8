"""The tshark side of scripts/tcp-conformance: one `tshark -T fields` pass per
capture, every frame's TCP header and `tcp.analysis.*` flags, and the little
state tshark's rules read (next expected sequence number, the reverse
direction's last ACK, ...) recomputed from those rows, so that a difference
can say which of tshark's conditions held.

The conditions are those of Wireshark 4.0's `tcp_analyze_sequence_number`
(`epan/dissectors/packet-tcp.c`), with default preferences:

* lost segment: seq beyond the next expected sequence number;
* fast retransmission: not advancing, at least 2 duplicate ACKs in the
  reverse direction, seq equal to the reverse direction's last ACK, within
  20 ms of the reverse direction's last segment;
* out-of-order: not advancing, sooner than the initial RTT (3 ms when
  unknown) after the segment that set the next expected sequence number,
  and not ending exactly at it;
* spurious: data ending at or below the reverse direction's *last* ACK;
* retransmission: any other segment that does not advance; R frames include
  the F and S frames (the dissector adds the retransmission expert info to
  both).
"""

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass, field

# (short name, tshark field under tcp.analysis.)
FLAGS = [
    ("R", "retransmission"),
    ("F", "fast_retransmission"),
    ("S", "spurious_retransmission"),
    ("D", "duplicate_ack"),
    ("L", "lost_segment"),
    ("AL", "ack_lost_segment"),
    ("O", "out_of_order"),
    ("ZW", "zero_window"),
    ("WF", "window_full"),
    ("KA", "keep_alive"),
]
# Reported for information, and read by the explanations.
INFO_FLAGS = [
    ("WU", "window_update"),
    ("RU", "reused_ports"),
    ("ZWP", "zero_window_probe"),
    ("KAA", "keep_alive_ack"),
    ("ZWPA", "zero_window_probe_ack"),
]

HEADER_FIELDS = [
    "frame.number",
    "frame.time_epoch",
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.len",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.hdr_len",
    "ip.len",
    "ip.hdr_len",
    "ipv6.plen",
    "ipv6.nxt",
    "tcp.options.sack_le",
    "icmp.type",
    "icmpv6.type",
    "tcp.analysis.duplicate_ack_num",
]
FIELDS = HEADER_FIELDS + ["tcp.analysis." + f for _, f in FLAGS + INFO_FLAGS]

SYN, FIN, RST, ACK = 0x02, 0x01, 0x04, 0x10
MOD = 1 << 32
# tshark's limits (packet-tcp.c, default preferences).
FAST_WINDOW_S = 0.020
OOO_DEFAULT_S = 0.003


def gt_seq(a, b):
    """a after b, modulo 2^32 (RFC 9293 §3.4)."""
    return 0 < (a - b) % MOD < (1 << 31)


def le_seq(a, b):
    return a == b or gt_seq(b, a)


def endpoint(ip, port):
    """`ip:port` as Rust's SocketAddr prints it, normalised by Python."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return f"{ip}:{port}"
    return f"[{addr}]:{port}" if addr.version == 6 else f"{addr}:{port}"


def normalise_endpoint(text):
    """The same normalisation for an endpoint string from tcp-watch."""
    host, _, port = text.rpartition(":")
    return endpoint(host.strip("[]"), port)


@dataclass
class Row:
    """One frame with a TCP header, as tshark dissected it."""

    frame: int
    ts: float
    stream: int
    src: str
    dst: str
    seq: int
    ack: int
    length: int
    flags: int
    window: int
    in_icmp: bool
    labels: set
    dupack_num: int
    # Payload length the IP header declares (None when unknown, e.g. IPv6
    # extension headers): more than `length` when the frame was cut.
    ip_payload: int = None
    has_sack: bool = False
    # Filled by `annotate`: what tshark's rules read before this frame.
    before: dict = field(default_factory=dict)

    @property
    def direction(self):
        return (self.src, self.dst)

    @property
    def seq_len(self):
        return self.length + (1 if self.flags & (SYN | FIN) else 0)


def _first(value):
    return value.split(",")[0] if value else ""


def _last(value):
    return value.split(",")[-1] if value else ""


def _int(value, base=10, default=0):
    try:
        return int(value, base)
    except (TypeError, ValueError):
        return default


def parse_rows(text):
    rows = []
    for line in text.splitlines():
        cols = line.split("\t")
        if len(cols) < len(FIELDS):
            cols += [""] * (len(FIELDS) - len(cols))
        v = dict(zip(FIELDS, cols))
        if not v["tcp.srcport"]:
            continue
        # Tunnels repeat the IP layer: the TCP header belongs to the last.
        src_ip = _last(v["ip.src"]) or _last(v["ipv6.src"])
        dst_ip = _last(v["ip.dst"]) or _last(v["ipv6.dst"])
        tcp_hdr = _int(_first(v["tcp.hdr_len"]))
        ip_payload = None
        if _last(v["ip.len"]):
            ip_payload = _int(_last(v["ip.len"])) - _int(_last(v["ip.hdr_len"])) - tcp_hdr
        elif _last(v["ipv6.plen"]) and _last(v["ipv6.nxt"]) == "6":
            ip_payload = _int(_last(v["ipv6.plen"])) - tcp_hdr
        labels = {short for short, f in FLAGS + INFO_FLAGS if v["tcp.analysis." + f]}
        rows.append(
            Row(
                frame=_int(v["frame.number"]),
                ts=float(v["frame.time_epoch"] or 0.0),
                stream=_int(_first(v["tcp.stream"])),
                src=endpoint(src_ip, _first(v["tcp.srcport"])),
                dst=endpoint(dst_ip, _first(v["tcp.dstport"])),
                seq=_int(_first(v["tcp.seq_raw"])),
                ack=_int(_first(v["tcp.ack_raw"])),
                length=_int(_first(v["tcp.len"])),
                flags=_int(_first(v["tcp.flags"]), 16),
                window=_int(_first(v["tcp.window_size_value"])),
                in_icmp=bool(v["icmp.type"] or v["icmpv6.type"]),
                labels=labels,
                dupack_num=_int(_first(v["tcp.analysis.duplicate_ack_num"])),
                ip_payload=ip_payload,
                has_sack=bool(v["tcp.options.sack_le"]),
            )
        )
    return rows


@dataclass
class _Dir:
    nextseq: int = None
    nextseq_ts: float = 0.0
    nextseq_frame: int = 0
    lastack: int = None
    last_ts: float = None
    window: int = None
    dupacknum: int = 0
    last_header: tuple = None
    last_frame: int = 0
    max_ack: int = None
    sent_data: bool = False
    # tshark's "dupacknum = -1" after an ACKed-unseen (no second one until
    # this direction's ACK changes).
    al_latch: bool = False
    nextseq_pure: bool = False
    ip_cut: bool = False


def annotate(rows):
    """Fills `row.before` with the state tshark's rules read for that frame.

    Keys: `nextseq`, `nextseq_ts`, `nextseq_frame` (this direction);
    `rev_lastack`, `rev_last_ts`, `rev_dupacks`, `rev_nextseq` (the other
    direction); `prev_window`; `copy_of` (the frame this one repeats header
    and timestamp of, as a capture copy); `irtt` (tshark's initial RTT, None
    when unknown); `max_ack`, `rev_max_ack`, `rev_window` (ACKs reordered
    when the last differs from the highest); `rev_sent_data`; `rev_al_latch`;
    `nextseq_pure` (the next expected seq came from a segment without data);
    `ip_cut`, `rev_ip_cut` (a segment of the direction so far had fewer
    bytes in the frame than its IP header declares); `time_disorder` (the
    frame is earlier than one before it).
    """
    dirs = {}
    syn_ts, irtt = {}, {}
    latest = None
    for r in rows:
        if r.in_icmp:
            continue
        disorder = latest is not None and r.ts < latest
        latest = r.ts if latest is None else max(latest, r.ts)
        me = dirs.setdefault((r.stream, r.src), _Dir())
        rev = dirs.setdefault((r.stream, r.dst), _Dir())
        header = (r.seq, r.ack, r.flags, r.length, r.window, r.ts)
        r.before = {
            "nextseq": me.nextseq,
            "nextseq_ts": me.nextseq_ts,
            "nextseq_frame": me.nextseq_frame,
            "rev_lastack": rev.lastack,
            "rev_last_ts": rev.last_ts,
            "rev_dupacks": rev.dupacknum,
            "rev_nextseq": rev.nextseq,
            "prev_window": me.window,
            "copy_of": me.last_frame if me.last_header == header else None,
            "irtt": irtt.get(r.stream),
            "lastack": me.lastack,
            "max_ack": me.max_ack,
            "rev_max_ack": rev.max_ack,
            "rev_window": rev.window,
            "rev_sent_data": rev.sent_data,
            "rev_al_latch": rev.al_latch,
            "nextseq_pure": me.nextseq_pure,
            "ip_cut": me.ip_cut,
            "rev_ip_cut": rev.ip_cut,
            "time_disorder": disorder,
        }
        if r.ip_payload is not None and r.ip_payload > r.length:
            me.ip_cut = True
        if "AL" in r.labels:
            rev.al_latch = True
        if me.lastack is not None and r.ack != me.lastack:
            me.al_latch = False
        if r.flags & ACK and (me.max_ack is None or gt_seq(r.ack, me.max_ack)):
            me.max_ack = r.ack
        if r.seq_len > 0:
            me.sent_data = True
        if r.flags & SYN and not r.flags & ACK:
            syn_ts.setdefault(r.stream, r.ts)
        elif (
            r.flags & ACK
            and not r.flags & SYN
            and r.stream in syn_ts
            and r.stream not in irtt
        ):
            irtt[r.stream] = r.ts - syn_ts[r.stream]
        # Duplicate-ACK counter of this direction, as tshark keeps it.
        if "D" in r.labels:
            me.dupacknum += 1
        if me.lastack is not None and r.ack != me.lastack:
            me.dupacknum = 0
        nxt = (r.seq + r.seq_len) % MOD
        if (me.nextseq is None or gt_seq(nxt, me.nextseq)) and "ZWP" not in r.labels:
            me.nextseq, me.nextseq_ts, me.nextseq_frame = nxt, r.ts, r.frame
            me.nextseq_pure = r.seq_len == 0
        me.lastack, me.last_ts, me.window = r.ack, r.ts, r.window
        me.last_header, me.last_frame = header, r.frame
    return rows


def ensure_installed():
    """tshark's path, installing the Debian package when it is missing."""
    path = shutil.which("tshark")
    if path:
        return path
    import os

    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = sudo + ["apt-get", "install", "-y", "--no-install-recommends", "tshark"]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update"], env=env)
        subprocess.run(cmd, env=env)
    return shutil.which("tshark")


def version(tshark):
    out = subprocess.run([tshark, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0].rstrip(".") if out.stdout else "tshark (unknown version)"


def run(tshark, path, timeout=600):
    """Every TCP frame of `path` as a `Row`, or raises RuntimeError."""
    cmd = [tshark, "-r", str(path), "-n", "-Y", "tcp", "-T", "fields"]
    cmd += ["-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    rows = parse_rows(out.stdout)
    if out.returncode != 0 and not rows:
        err = " ".join(
            line for line in out.stderr.splitlines() if "dangerous" not in line
        )
        raise RuntimeError(f"tshark exit {out.returncode}: {err.strip()[:300]}")
    return annotate(rows)
