"""The tcp-watch side of scripts/tcp-conformance: runs `tcp-watch analyze FILE
--json` and turns the document (schema 1) into per-flag counts and, from the
`events` records, per-flag frame sets with what tcp-watch said of each frame.

Counts (summed over streams and both directions), against tshark's flags:

    R  retransmissions.total      F  retransmissions.fast
    S  retransmissions.spurious   D  duplicate_acks
    L  lost_segments              AL acked_unseen
    O  out_of_order               ZW zero_window_segments
    WF window_full                KA keep_alives

Frames: R, F, S from `events.retransmissions` (by `kind`), O, L, AL, KA, WF
from their lists, D from the duplicate-ACK runs' `frames`. Each list holds
1024 records at most (32 frames per run): a direction whose list is shorter
than its count is *capped* for that flag, and its frames are not compared.
Zero-window segments have no frame list: `compare` derives them from
tcp-watch's rule (an ACK advertising a zero window, not SYN, not RST, not a
capture copy) and uses them only when that gives tcp-watch's own count.
"""

import json
import subprocess
from dataclasses import dataclass, field

from .tshark import normalise_endpoint

COUNTERS = {
    "R": ("retransmissions", "total"),
    "F": ("retransmissions", "fast"),
    "S": ("retransmissions", "spurious"),
    "D": ("duplicate_acks",),
    "L": ("lost_segments",),
    "AL": ("acked_unseen",),
    "O": ("out_of_order",),
    "ZW": ("zero_window_segments",),
    "WF": ("window_full",),
    "KA": ("keep_alives",),
}


def _get(d, path):
    for k in path:
        d = d.get(k, 0) if isinstance(d, dict) else 0
    return d if isinstance(d, int) else 0


@dataclass
class Stream:
    id: int
    client: str
    server: str
    first_frame: int
    last_frame: int
    close: str = ""


@dataclass
class Ours:
    """What tcp-watch said about one capture."""

    counts: dict
    # flag -> {frame: record dict}
    frames: dict
    # (flag, (src, dst)) whose list was capped
    capped: set
    # (src, dst) -> per-direction counts (for ZW)
    dir_counts: dict
    streams: list
    # frame -> [human labels]
    labels: dict = field(default_factory=dict)
    # window-probe frames (tcp-watch's zero-window episodes)
    probes: dict = field(default_factory=dict)
    decode: dict = field(default_factory=dict)

    def label(self, frame):
        return "; ".join(self.labels.get(frame, [])) or "nothing"

    def idle_split(self, src, dst, frame):
        """The stream that tcp-watch's idle timeout ended before `frame`,
        when `frame` opens the next stream of the same endpoints."""
        pair = {src, dst}
        same = sorted(
            (s for s in self.streams if {s.client, s.server} == pair),
            key=lambda s: s.first_frame,
        )
        for before, after in zip(same, same[1:]):
            if after.first_frame == frame and before.close == "idle_timeout":
                return before
        return None

    def stream_of(self, src, dst, frame):
        pair = {src, dst}
        for s in self.streams:
            if {s.client, s.server} == pair and s.first_frame <= frame <= s.last_frame:
                return s
        return None


def run(binary, path, timeout=600):
    """tcp-watch's JSON document for `path`, or raises RuntimeError."""
    out = subprocess.run(
        [str(binary), "analyze", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"tcp-watch exit {out.returncode}: {out.stderr.strip()[-300:]}"
        )
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"tcp-watch --json printed no single JSON document: {e}")


def _retx_label(r):
    text = f"retransmission ({r.get('kind')})"
    if r.get("repeats_frame") is not None:
        text += f" repeating frame {r['repeats_frame']}"
    else:
        text += " of bytes never seen"
    if r.get("kind") == "fast":
        text += f" after {r.get('duplicate_acks')} dup ACKs"
    if r.get("dsack_frame") is not None:
        text += f" (was {r.get('classified_before')}; D-SACK at frame {r['dsack_frame']})"
    return text


def parse(doc):
    counts = {flag: 0 for flag in COUNTERS}
    frames = {flag: {} for flag in COUNTERS}
    capped, dir_counts, streams, labels, probes = set(), {}, [], {}, {}

    def add(flag, frame, rec, text):
        frames[flag][frame] = rec
        labels.setdefault(frame, []).append(text)

    for st in doc.get("streams", []):
        client = normalise_endpoint(st.get("client", ""))
        server = normalise_endpoint(st.get("server", ""))
        streams.append(
            Stream(
                st.get("id", 0),
                client,
                server,
                st.get("first_frame", 0),
                st.get("last_frame", 0),
                st.get("close") or "",
            )
        )
        dirs = st.get("directions", {})
        for name, key in (
            ("client_to_server", (client, server)),
            ("server_to_client", (server, client)),
        ):
            d = dirs.get(name) or {}
            ev = d.get("events") or {}
            c = {flag: _get(d, path) for flag, path in COUNTERS.items()}
            dir_counts[key] = c
            for flag in COUNTERS:
                counts[flag] += c[flag]

            retx = ev.get("retransmissions") or []
            if len(retx) < c["R"]:
                capped.update({("R", key), ("F", key), ("S", key)})
            for r in retx:
                r = dict(r, direction=key)
                add("R", r["frame"], r, _retx_label(r))
                if r.get("kind") == "fast":
                    frames["F"][r["frame"]] = r
                if r.get("kind") == "spurious":
                    frames["S"][r["frame"]] = r

            simple = [
                ("O", "out_of_order", lambda r: r["frame"], "out-of-order"),
                ("L", "lost_segments", lambda r: r["frame"], None),
                ("AL", "acked_unseen", lambda r: r["frame"], "ACKed unseen data"),
                ("KA", "keep_alives", lambda r: r, "keep-alive"),
                ("WF", "window_full", lambda r: r, "window full"),
            ]
            for flag, lname, frame_of, text in simple:
                lst = ev.get(lname) or []
                if len(lst) < c[flag]:
                    capped.add((flag, key))
                for r in lst:
                    f = frame_of(r)
                    if flag == "L":
                        how = "opened by an ACK past the data seen" if r.get(
                            "acked_unseen"
                        ) else "data after a jump"
                        t = f"lost segment ({how}: {r.get('len')} B from seq {r.get('seq')})"
                        add(flag, f, r, t)
                    elif flag == "O":
                        add(
                            flag,
                            f,
                            r,
                            f"out-of-order ({1e3 * r.get('delay_s', 0):.3f} ms after frame {r.get('after_frame')})",
                        )
                    else:
                        add(flag, f, r, text)

            runs = ev.get("duplicate_ack_runs") or []
            listed = 0
            for run_ in runs:
                for f in run_.get("frames") or []:
                    listed += 1
                    add("D", f, run_, f"duplicate ACK of {run_.get('ack')}")
            if listed < c["D"]:
                capped.add(("D", key))

            for z in ev.get("zero_windows") or []:
                for f in z.get("probe_frames") or []:
                    probes[f] = z
                    labels.setdefault(f, []).append(
                        f"window probe into the zero window of frame {z.get('frame')}"
                    )
    return Ours(
        counts,
        frames,
        capped,
        dir_counts,
        streams,
        labels,
        probes,
        doc.get("decode") or {},
    )
