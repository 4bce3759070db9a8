"""Frame-by-frame comparison of tshark's flags with tcp-watch's events, and
the named reasons a differing frame is put under.

Each reason is a rule about *both* sides: what tshark flagged (and which of
its conditions held, from `tshark.annotate`) and what tcp-watch recorded for
that frame. A frame no rule fits is `UNEXPLAINED`, with both sides' labels:
either a tcp-watch bug or a rule missing here. The rules follow the module
documentation of `tcp-watch/src/analysis.rs` ("Rules, and where they differ
from Wireshark").
"""

from .ours import COUNTERS
from .tshark import ACK, FIN, FLAGS, INFO_FLAGS, OOO_DEFAULT_S, FAST_WINDOW_S, RST, SYN
from .tshark import MOD, gt_seq, le_seq

UNEXPLAINED = "UNEXPLAINED"
NOT_COMPARED = "not compared: tcp-watch's event list for this direction is capped (1024 records, 32 frames per duplicate-ACK run)"
FLAG_ORDER = [f for f, _ in FLAGS]
LONG = dict(FLAGS + INFO_FLAGS)

# Reasons shared by several flags.
COPY = "capture copy (same header and timestamp as the frame before it): tcp-watch counts it apart, tshark flags it"
ICMP = "TCP header quoted inside an ICMP error: tshark analyses it, tcp-watch does not"
NO_STREAM = "tcp-watch has no stream holding this frame (not decoded as a TCP segment)"
OOO_VS_RETX_SEEN = "tshark: out-of-order (within the initial RTT, or 3 ms, of the highest segment); tcp-watch: retransmission of bytes already seen"
OOO_VS_RETX_LATE = "tshark: out-of-order (within the initial RTT, or 3 ms, of the highest segment); tcp-watch: retransmission of a segment never seen, later than one RTT after its hole opened"
RETX_VS_OOO_END = "tshark: retransmission (tshark never calls a segment ending at its next expected seq out-of-order); tcp-watch: out-of-order (never seen, within one RTT of the hole)"
RETX_VS_OOO_LATE = "tshark: retransmission (later than its limit after the highest segment); tcp-watch: out-of-order (within one RTT of the hole's opening)"
PROBE_RETX = "tshark: retransmission; tcp-watch: window probe into a zero window"
PROBE_KA = "tshark: keep-alive; tcp-watch: window probe into a zero window"
DSACK = "tcp-watch: spurious by D-SACK (tshark ignores D-SACK)"
SACKED = "tcp-watch: spurious, every byte already SACKed when sent (tshark checks the cumulative ACK only)"
IP_CUT = "the frame holds fewer bytes than its IP header declares: tcp-watch takes the segment's length from the IP header (the rest is not captured), tshark the bytes in the frame"
IDLE = "tcp-watch's idle timeout ended the stream before this frame (it opens a new stream): tshark kept one connection"
DISORDER = "capture not in time order (this frame is earlier than one before it): timing rules of both tools read negative delays"
ACK_REORDER = "ACKs reordered: tcp-watch measures from the highest ACK, tshark from the last ACK (lower)"
SPLIT = "tshark started a new conversation between the two copies (a SYN it took for port reuse); tcp-watch kept one connection and compares them"
SYN_FIN_SPURIOUS = "tcp-watch: a SYN or FIN resent after the peer ACKed it is spurious; tshark calls only data spurious"
ACKED_UNSEEN_HOLE = "capture loss first shown by an ACK past the data seen: tcp-watch counts the hole at that ACK, tshark at the next data frame"


def tshark_labels(row):
    if row is None:
        return "no TCP frame"
    names = [LONG[f] for f in FLAG_ORDER + [f for f, _ in INFO_FLAGS] if f in row.labels]
    return ", ".join(names) or "nothing"


def _ms(s):
    return f"{1e3 * s:.3f} ms"


def _since_highest(row):
    b = row.before
    thr = b.get("irtt") or OOO_DEFAULT_S
    return row.ts - (b.get("nextseq_ts") or row.ts), thr


def _ends_at_next(row):
    b = row.before
    return b.get("nextseq") is not None and (row.seq + row.seq_len) % MOD == b["nextseq"]


def _explain_retx_vs_ooo(row, ours, f):
    """tshark out-of-order, tcp-watch a retransmission."""
    r = ours.frames["R"].get(f)
    if not r:
        return None
    dt, thr = _since_highest(row)
    detail = f"tcp-watch: {ours.label(f)}; tshark: {_ms(dt)} after frame {row.before.get('nextseq_frame')} (limit {_ms(thr)})"
    key = OOO_VS_RETX_SEEN if r.get("repeats_frame") is not None else OOO_VS_RETX_LATE
    return key, detail


def _explain_ooo_vs_retx(row, ours, f):
    """tcp-watch out-of-order, tshark a retransmission."""
    o = ours.frames["O"].get(f)
    if not o:
        return None
    if _ends_at_next(row):
        return RETX_VS_OOO_END, f"tcp-watch: {ours.label(f)}; tshark's next expected seq {row.before['nextseq']}"
    dt, thr = _since_highest(row)
    if dt >= thr:
        return RETX_VS_OOO_LATE, f"tcp-watch: {ours.label(f)}; tshark: {_ms(dt)} after frame {row.before.get('nextseq_frame')} (limit {_ms(thr)})"
    return None


def explain(flag, side, f, row, ours, ctx):
    """(reason, detail) for frame `f` that only `side` ("tshark" or
    "tcp-watch") flagged with `flag`."""
    both = f"tshark: {tshark_labels(row)}; tcp-watch: {ours.label(f)}"
    if row is not None:
        if row.in_icmp:
            return ICMP, both
        if row.before.get("copy_of") is not None and side == "tshark":
            return COPY, f"copy of frame {row.before['copy_of']}; {both}"
        if side == "tshark" and ours.stream_of(row.src, row.dst, f) is None:
            return NO_STREAM, both
        if side == "tshark" and (flag, row.direction) in ours.capped:
            return NOT_COMPARED, both
        split = ours.idle_split(row.src, row.dst, f)
        if split is not None:
            return IDLE, f"previous stream {split.id} ended at frame {split.last_frame}; {both}"
    if row is None:
        return UNEXPLAINED, both
    r = ours.frames["R"].get(f)
    if r and flag in ("R", "F", "S") and r.get("repeats_frame") is not None:
        first = ctx["by_frame"].get(r["repeats_frame"])
        if first is not None and first.stream != row.stream:
            return SPLIT, f"tshark stream {first.stream} then {row.stream}; {both}"
    rule = RULES.get((flag, side))
    got = rule(f, row, ours, ctx) if rule else None
    if got:
        return got
    b = row.before
    if b.get("ip_cut") or b.get("rev_ip_cut") or (row.ip_payload or 0) > row.length:
        return IP_CUT, both
    if b.get("time_disorder"):
        return DISORDER, both
    return UNEXPLAINED, both


# --- per flag and side ------------------------------------------------------


def _r_tshark(f, row, ours, ctx):
    if f in ours.probes:
        return PROBE_RETX, ours.label(f)
    got = _explain_ooo_vs_retx(row, ours, f)
    if got:
        return got
    if f in ours.frames["KA"]:
        return "tshark: retransmission; tcp-watch: keep-alive", ours.label(f)
    if row.before.get("nextseq_pure"):
        return (
            "tshark: a segment without data carried a higher seq before it (captured out of order), so this is a retransmission; tcp-watch: new data (a segment without data does not move the highest seq)",
            f"tshark's next expected seq from frame {row.before.get('nextseq_frame')}; tcp-watch: {ours.label(f)}",
        )
    return None


def _r_ours(f, row, ours, ctx):
    if "O" in row.labels:
        return _explain_retx_vs_ooo(row, ours, f)
    b = row.before
    if row.length > 1 and b.get("nextseq") is not None and (b["nextseq"] - 1) % MOD == row.seq:
        return (
            "tshark: a segment starting 1 byte below its next expected seq is new data (after a possible window probe); tcp-watch: retransmission",
            ours.label(f),
        )
    return None


def _f_tshark(f, row, ours, ctx):
    r = ours.frames["R"].get(f)
    if r is None:
        if "O" in ours.labels.get(f, []) or f in ours.frames["O"]:
            return "tshark: fast retransmission; tcp-watch: out-of-order", ours.label(f)
        return None
    if r.get("classified_before"):
        return DSACK, ours.label(f)
    kind = r.get("kind")
    detail = f"tcp-watch: {ours.label(f)}; tshark: {row.before.get('rev_dupacks')} dup ACKs before"
    if kind == "sack":
        return (
            "tshark: fast (2 dup ACKs, seq at the ACK, within 20 ms); tcp-watch: SACK recovery (fast is only the first resend of the hole a duplicate-ACK run names)",
            detail,
        )
    if kind == "spurious":
        return SACKED, detail
    if kind == "rto":
        earlier = [
            x
            for x in ours.frames["R"].values()
            if x.get("direction") == r.get("direction")
            and x["frame"] < f
            and "rto" in (x.get("kind"), x.get("classified_before"))
            and (x.get("offset", 0) > 0 or x.get("len", 0) > 1)
        ]
        if earlier:
            return (
                "tshark: fast retransmission; tcp-watch: rto (a timeout recovery of this direction's data was still open)",
                f"{detail}; earlier rto at frame {earlier[-1]['frame']}"
                + (" (later found spurious by D-SACK)" if earlier[-1].get("classified_before") else ""),
            )
        return None
    return f"tshark: fast retransmission; tcp-watch: retransmission ({kind})", detail


def _f_ours(f, row, ours, ctx):
    r = ours.frames["F"][f]
    b = row.before
    n = r.get("duplicate_acks", 0)
    if b.get("rev_dupacks", 0) < 2:
        if n == 0:
            key = "tcp-watch: fast, a later resend in an ACK-driven recovery with no SACK block held (NewReno, RFC 6582: after a partial ACK); tshark needs 2 dup ACKs right before it"
        elif n == 1:
            key = "tshark needs 2 dup ACKs for fast, tcp-watch reports 1"
        else:
            key = "tshark needs 2 dup ACKs for fast (it saw fewer as duplicates), tcp-watch counted 2 or more"
        return (
            key,
            f"tcp-watch: {ours.label(f)}; tshark counted {b.get('rev_dupacks', 0)}; tshark: {tshark_labels(row)}",
        )
    if b.get("rev_lastack") != row.seq:
        return (
            "tshark: fast only when seq equals the last ACK; tcp-watch: the resend covers the ACKed point",
            f"seq {row.seq}, last ACK {b.get('rev_lastack')}; tshark: {tshark_labels(row)}",
        )
    since = row.ts - (b.get("rev_last_ts") or row.ts)
    if since >= FAST_WINDOW_S:
        return (
            "tshark: fast only within 20 ms of the last ACK; tcp-watch allows 1.5 initial RTT (capture far from the sender)",
            f"{_ms(since)} after the last ACK; tshark: {tshark_labels(row)}",
        )
    return None


def _s_ours(f, row, ours, ctx):
    r = ours.frames["S"][f]
    if r.get("classified_before"):
        return DSACK, ours.label(f)
    if row.length == 0 and row.flags & (SYN | FIN):
        return SYN_FIN_SPURIOUS, f"tcp-watch: {ours.label(f)}; tshark: {tshark_labels(row)}"
    b = row.before
    end = (row.seq + row.length) % MOD
    if b.get("rev_lastack") is None or not le_seq(end, b["rev_lastack"]):
        return SACKED, f"tcp-watch: {ours.label(f)}; tshark: {tshark_labels(row)}"
    if "KA" in row.labels:
        return "tshark: keep-alive; tcp-watch: spurious retransmission", ours.label(f)
    return None


def _s_tshark(f, row, ours, ctx):
    b = row.before
    if row.flags & FIN and b.get("rev_lastack") is not None:
        end = (row.seq + row.length) % MOD
        if le_seq(end, b["rev_lastack"]) and not le_seq((end + 1) % MOD, b["rev_lastack"]):
            return (
                "tshark: spurious (its data, not its FIN, was ACKed); tcp-watch: the FIN was not ACKed yet",
                ours.label(f),
            )
    return None


def _d_tshark(f, row, ours, ctx):
    b = row.before
    nxt = b.get("rev_nextseq")
    if nxt is None or le_seq(nxt, row.ack):
        return (
            "tshark: duplicate ACK with no data outstanding (RFC 5681 §2 needs outstanding data)",
            f"ACK {row.ack}, other side's next seq {nxt}",
        )
    return None


def _d_ours(f, row, ours, ctx):
    b = row.before
    if b.get("max_ack") is not None and row.ack == b["max_ack"] and b.get("lastack") is not None and row.ack != b["lastack"]:
        return ACK_REORDER, f"this ACK {row.ack} repeats the highest; the ACK before it was lower"
    if row.has_sack and b.get("prev_window") is not None and b["prev_window"] != row.window:
        return (
            "tcp-watch: an ACK with SACK blocks counts although its window changed (RFC 6675); tshark needs the same window",
            f"window {b['prev_window']} -> {row.window}",
        )
    if b.get("nextseq") is not None and row.seq != b["nextseq"]:
        return (
            "tshark: a duplicate ACK must carry the next expected seq of its sender",
            f"seq {row.seq}, tshark's next expected {b['nextseq']}",
        )
    if row.labels & {"KAA", "ZWPA"}:
        return "tshark: keep-alive or window-probe ACK, not a duplicate ACK", tshark_labels(row)
    return None


def _l_ours(f, row, ours, ctx):
    r = ours.frames["L"][f]
    if r.get("acked_unseen"):
        return ACKED_UNSEEN_HOLE, ours.label(f)
    return None


def _l_tshark(f, row, ours, ctx):
    if row.seq_len == 0:
        return (
            "tshark: a segment without data whose seq is past the data seen is a lost segment; tcp-watch looks for holes in data only",
            f"seq {row.seq}, tshark's next expected {row.before.get('nextseq')}",
        )
    for other, rec in ours.frames["L"].items():
        if rec.get("acked_unseen") and (rec.get("seq", 0) + rec.get("len", 0)) % MOD == row.seq:
            return ACKED_UNSEEN_HOLE, f"tcp-watch counted it at frame {other}"
    return None


def _al_ours(f, row, ours, ctx):
    if row.before.get("rev_al_latch"):
        return (
            "tshark: no second ACKed-unseen until the data side's own ACK changes (its dupacknum -1 latch); tcp-watch flags every ACK past the data seen",
            ours.label(f),
        )
    return None


def _al_tshark(f, row, ours, ctx):
    if not row.before.get("rev_sent_data"):
        return (
            "tshark: ACKed unseen in a direction that has sent no data in the capture yet (mid-stream start); tcp-watch needs data seen first",
            f"ACK {row.ack}",
        )
    nxt = row.before.get("rev_nextseq")
    if nxt is not None and le_seq(row.ack, nxt):
        return (
            "tshark: ACKed unseen below the highest data seen (its 'max seq to be ACKed' moves only on a segment starting exactly there); tcp-watch: the ACK is not past the data seen",
            f"ACK {row.ack}, highest data seen {nxt}",
        )
    return None


def _o_tshark(f, row, ours, ctx):
    return _explain_retx_vs_ooo(row, ours, f)


def _o_ours(f, row, ours, ctx):
    return _explain_ooo_vs_retx(row, ours, f)


def _ka_tshark(f, row, ours, ctx):
    if f in ours.probes:
        return PROBE_KA, ours.label(f)
    return None


def _wf_reorder(f, row, ours, ctx):
    b = row.before
    if b.get("rev_max_ack") is not None and b.get("rev_lastack") != b["rev_max_ack"]:
        return ACK_REORDER, f"last ACK {b.get('rev_lastack')}, highest {b['rev_max_ack']}"
    return None


def _wf_ours(f, row, ours, ctx):
    got = _wf_reorder(f, row, ours, ctx)
    if got:
        return got
    if row.stream not in ctx["syn_streams"]:
        return (
            "tshark: no window full without the handshake (scale unknown); tcp-watch: the window field is under 65535, so no shift can hide a larger window",
            ours.label(f),
        )
    return None


def _zw_ours(f, row, ours, ctx):
    if row.flags & FIN:
        return "tcp-watch: a FIN advertising a zero window counts (tshark skips FIN segments)", ""
    if "ZWP" in row.labels:
        return "tshark: a zero-window probe is not checked for a zero window", ""
    return None


def _zw_tshark(f, row, ours, ctx):
    if not row.flags & ACK:
        return "tshark: a segment without ACK advertising a zero window; tcp-watch reads the window of ACKs only", ""
    return None


RULES = {
    ("R", "tshark"): _r_tshark,
    ("R", "tcp-watch"): _r_ours,
    ("F", "tshark"): _f_tshark,
    ("F", "tcp-watch"): _f_ours,
    ("S", "tshark"): _s_tshark,
    ("S", "tcp-watch"): _s_ours,
    ("D", "tshark"): _d_tshark,
    ("D", "tcp-watch"): _d_ours,
    ("L", "tshark"): _l_tshark,
    ("L", "tcp-watch"): _l_ours,
    ("AL", "tshark"): _al_tshark,
    ("AL", "tcp-watch"): _al_ours,
    ("O", "tshark"): _o_tshark,
    ("O", "tcp-watch"): _o_ours,
    ("KA", "tshark"): _ka_tshark,
    ("WF", "tcp-watch"): _wf_ours,
    ("WF", "tshark"): _wf_reorder,
    ("ZW", "tshark"): _zw_tshark,
    ("ZW", "tcp-watch"): _zw_ours,
}


def _zero_window_frames(rows, ours):
    """tcp-watch's zero-window frames by its rule, per direction; the
    directions where the rule does not give tcp-watch's count are returned
    apart (not comparable frame by frame)."""
    by_dir = {}
    for r in rows:
        if r.in_icmp or r.flags & (SYN | RST) or not r.flags & ACK or r.window != 0:
            continue
        if r.before.get("copy_of") is not None:
            continue
        by_dir.setdefault(r.direction, []).append(r.frame)
    frames, bad = {}, []
    for key, c in ours.dir_counts.items():
        got = by_dir.get(key, [])
        if len(got) == c["ZW"]:
            frames.update({f: {} for f in got})
        else:
            bad.append((key, c["ZW"], len(got)))
    return frames, bad


def compare(rows, ours):
    """Per-flag counts and every differing frame with its reason."""
    by_frame = {}
    for r in rows:
        by_frame.setdefault(r.frame, r)
    ctx = {
        "by_frame": by_frame,
        "syn_streams": {r.stream for r in rows if r.flags & SYN},
    }
    tshark_frames = {flag: sorted({r.frame for r in rows if flag in r.labels}) for flag in FLAG_ORDER}
    zw, zw_bad = _zero_window_frames(rows, ours)
    ours_frames = {flag: ours.frames[flag] for flag in COUNTERS}
    ours_frames["ZW"] = zw
    for key, _, _ in zw_bad:
        ours.capped.add(("ZW", key))

    flags, diffs = {}, []
    for flag in FLAG_ORDER:
        t_count = len(tshark_frames[flag])
        o_count = ours.counts[flag]
        flags[flag] = {"tshark": t_count, "tcp-watch": o_count, "agree": t_count == o_count}
        t_set, o_set = set(tshark_frames[flag]), set(ours_frames[flag])
        for f in sorted(t_set ^ o_set):
            side = "tshark" if f in t_set else "tcp-watch"
            reason, detail = explain(flag, side, f, by_frame.get(f), ours, ctx)
            diffs.append({"flag": flag, "frame": f, "only": side, "reason": reason, "detail": detail})
        if flag == "ZW":
            for key, want, got in zw_bad:
                diffs.append(
                    {
                        "flag": flag,
                        "frame": None,
                        "only": "tcp-watch",
                        "reason": UNEXPLAINED,
                        "detail": f"direction {key[0]} -> {key[1]}: tcp-watch counts {want} zero-window segments, its rule finds {got} frames",
                    }
                )
    info = {f: sum(1 for r in rows if f in r.labels) for f, _ in INFO_FLAGS}
    return {"flags": flags, "differences": diffs, "info": info}
