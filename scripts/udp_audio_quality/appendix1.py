#!/usr/bin/env python3
"""ITU-T G.711 Appendix I packet loss concealment, as a reference to measure udp-audio against.

    appendix1.py IN.wav OUT.wav --lost 3,17,18 [--packet-frames 320]
    appendix1.py --self-test

Written from the Recommendation's description (Appendix I, "A high quality low-complexity
algorithm for packet loss concealment with G.711"), not from its C code. It works on 10 ms
frames; a lost 20 ms packet erases two of them. Every length below is the 8 kHz value and is
scaled by rate/8000 (16 kHz doubles them):

- the output is delayed by POVERLAPMAX (3.75 ms) so that, when an erasure starts, the last
  samples already in the history can still be blended into the first pitch period;
- at the start of an erasure the pitch is searched between PITCH_MIN and PITCH_MAX
  (5 to 15 ms) by normalised cross-correlation of the last CORRLEN samples (20 ms) against
  earlier ones, coarse (every NDEC-th lag and sample) then fine around the best;
- the last pitch period is repeated, its end blended into its start over a quarter period;
  the second and third erased frames widen the repeated stretch to two and three periods;
- from the second erased frame the output is attenuated 20 % per 10 ms, and after 60 ms of
  erasure it is silence;
- the first good frame after an erasure is blended with the continued repetition over a
  quarter period plus 4 ms per extra erased frame.

Input and output are 16-bit mono WAV; the output is aligned with the input (the delay is
taken out), so an unimpaired run gives the input back exactly.
"""
import argparse
import sys
import wave

import numpy as np

BASE_RATE = 8000
ATTENFAC = 0.2
CORRMINPOWER = 250.0


class Appendix1:
    """The concealer's state for one stream at `rate` Hz (a multiple of 8000)."""

    def __init__(self, rate):
        if rate % BASE_RATE:
            raise ValueError(f"rate {rate}: Appendix I works at multiples of 8000 Hz")
        k = rate // BASE_RATE
        self.rate = rate
        self.frame = 80 * k
        self.poverlapmax = 30 * k
        self.pitch_min = 40 * k
        self.pitch_max = 120 * k
        self.corrlen = 160 * k
        self.historylen = 3 * self.pitch_max + self.pitch_max // 4
        self.eoverlapincr = 32 * k
        self.ndec = 2 * k
        self.history = np.zeros(self.historylen)
        self.pitchbuf = np.zeros(self.historylen)
        self.lastq = np.zeros(self.poverlapmax)
        self.erasecnt = 0
        self.pitch = self.pitch_min
        self.poverlap = self.pitch // 4
        self.pitchblen = self.pitch
        self.poffset = 0

    # --- the two entry points: one 10 ms frame in, one 10 ms frame (delayed) out --------

    def good(self, frame):
        """A received frame (FRAME int16 samples): returns the delayed output frame."""
        s = np.asarray(frame, dtype=np.float64).copy()
        if self.erasecnt:
            olen = min(self.poverlap + (self.erasecnt - 1) * self.eoverlapincr, self.frame)
            f = self._read(olen)
            gain = max(0.0, 1.0 - (self.erasecnt - 1) * ATTENFAC)
            w = np.arange(1, olen + 1) / olen
            s[:olen] = (1.0 - w) * gain * f + w * s[:olen]
            s = _to_int16(s)
            self.erasecnt = 0
        return self._push(s)

    def erased(self):
        """A lost frame: returns the delayed output frame."""
        n = self.frame
        if self.erasecnt == 0:
            self.pitch = self.find_pitch()
            self.poverlap = self.pitch // 4
            self.pitchbuf = self.history.copy()
            self.lastq = self.pitchbuf[-self.poverlap:].copy() if self.poverlap else np.zeros(0)
            self.pitchblen = self.pitch
            self._blend_tail()
            # Not yet output (the output is delayed): the blend replaces them there too.
            if self.poverlap:
                self.history[-self.poverlap:] = _to_int16(self.pitchbuf[-self.poverlap:])
            self.poffset = 0
            out = self._read(n)
        elif self.erasecnt in (1, 2):
            before = self.poffset
            tmp = self._read(self.poverlap)
            self.poffset = before
            while self.poffset > self.pitch:
                self.poffset -= self.pitch
            self.pitchblen += self.pitch
            self._blend_tail()
            out = self._read(n)
            w = np.arange(1, self.poverlap + 1) / max(self.poverlap, 1)
            out[: self.poverlap] = (1.0 - w) * tmp + w * out[: self.poverlap]
            self._scale(out)
        elif self.erasecnt > 5:
            out = np.zeros(n)
        else:
            out = self._read(n)
            self._scale(out)
        self.erasecnt += 1
        return self._push(_to_int16(out))

    # --- pieces --------------------------------------------------------------------------

    def find_pitch(self):
        """The pitch period, samples: the lag whose segment best matches the last CORRLEN."""
        h = self.history
        l = h[self.historylen - self.corrlen:]
        rbase = self.historylen - self.corrlen - self.pitch_max
        last_j = self.pitch_max - self.pitch_min
        windows = np.lib.stride_tricks.sliding_window_view(h[rbase:], self.corrlen)[: last_j + 1]

        def scores(js, step):
            r = windows[js][:, ::step]
            corr = r @ l[::step]
            energy = np.einsum("ij,ij->i", r, r)
            return corr / np.sqrt(np.maximum(energy, CORRMINPOWER))

        coarse_j = np.arange(0, last_j + 1, self.ndec)
        c = scores(coarse_j, self.ndec)
        # `>=` in order: the last of equal scores (the larger j) wins.
        best = int(coarse_j[len(c) - 1 - int(np.argmax(c[::-1]))])
        lo = max(best - (self.ndec - 1), 0)
        hi = min(best + (self.ndec - 1), last_j)
        fine_j = np.arange(lo, hi + 1)
        f = scores(fine_j, 1)
        # Strict `>` from the lowest j: the first of equal scores wins.
        best = int(fine_j[int(np.argmax(f))])
        return self.pitch_max - best

    def _blend_tail(self):
        """The pitch buffer's last poverlap samples: lastq fading out into the poverlap
        samples before the repeated stretch's start, so its end joins its beginning."""
        p = self.poverlap
        if not p:
            return
        start = self.historylen - self.pitchblen
        w = np.arange(1, p + 1) / p
        self.pitchbuf[-p:] = (1.0 - w) * self.lastq + w * self.pitchbuf[start - p: start]

    def _read(self, count):
        """`count` samples of the repeated stretch [end - pitchblen, end), cyclically from
        poffset, which advances."""
        start = self.historylen - self.pitchblen
        out = np.empty(count)
        i = 0
        while i < count:
            cnt = min(self.pitchblen - self.poffset, count - i)
            out[i: i + cnt] = self.pitchbuf[start + self.poffset: start + self.poffset + cnt]
            self.poffset += cnt
            if self.poffset == self.pitchblen:
                self.poffset = 0
            i += cnt
        return out

    def _scale(self, out):
        """Attenuation: from 1 - (erasecnt - 1)·20 % at the frame start, 20 % less by its end."""
        g = 1.0 - (self.erasecnt - 1) * ATTENFAC
        out *= g - np.arange(len(out)) * (ATTENFAC / self.frame)

    def _push(self, frame):
        """Appends a frame to the history; returns the delayed output frame."""
        h = self.history
        h[: -self.frame] = h[self.frame:]
        h[-self.frame:] = frame
        end = self.historylen - self.poverlapmax
        return h[end - self.frame: end].astype(np.int16)


def _to_int16(x):
    return np.clip(np.rint(x), -32768, 32767)


def conceal(samples, rate, lost_packets, packet_frames=None):
    """`samples` (int16 mono) with the packets `lost_packets` (indices from 0, each
    `packet_frames` samples, default 20 ms) erased and concealed; aligned with the input and
    as long as it. Packet boundaries must fall on 10 ms frames."""
    plc = Appendix1(rate)
    n = plc.frame
    if packet_frames is None:
        packet_frames = rate // 50
    if packet_frames % n:
        raise ValueError(f"packets of {packet_frames} samples are not whole 10 ms frames")
    per_packet = packet_frames // n
    x = np.asarray(samples, dtype=np.int16)
    total = len(x)
    frames = -(-total // n) + -(-plc.poverlapmax // n)
    padded = np.zeros(frames * n, dtype=np.int16)
    padded[:total] = x
    lost = set(int(k) for k in lost_packets)
    out = np.empty_like(padded)
    for f in range(frames):
        frame = padded[f * n: (f + 1) * n]
        if f // per_packet in lost and f * n < total:
            out[f * n: (f + 1) * n] = plc.erased()
        else:
            out[f * n: (f + 1) * n] = plc.good(frame)
    return out[plc.poverlapmax: plc.poverlapmax + total]


def read_wav(path):
    with wave.open(path) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: 16-bit mono WAV expected")
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def write_wav(path, rate, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def self_test():
    """Checks the three properties the quality table relies on; returns failures."""
    failures = []
    rate = 8000
    n = np.arange(rate)
    tone = np.rint(8000 * np.sin(2 * np.pi * n / 57)).astype(np.int16)

    plc = Appendix1(rate)
    for f in range(10):
        plc.good(tone[f * 80: (f + 1) * 80])
    pitch = plc.find_pitch()
    # Every multiple of the period matches a pure tone exactly; the search is of the
    # Recommendation, which may settle on one within its range (57 or 114).
    if min(abs(pitch - m) for m in (57, 114)) > 1:
        failures.append(f"pitch of a 57-sample tone: {pitch}")
    print(f"pitch of a 57-sample tone: {pitch} samples", file=sys.stderr)

    # 20 ms packets 5.. lost: frames 10.. erased; after 6 erased frames (60 ms), silence.
    out = conceal(tone, rate, range(5, 10))
    lost_from = 5 * 160
    if np.any(out[lost_from + 480: 10 * 160] != 0):
        failures.append("not silent after 60 ms of erasure")
    if not np.any(out[lost_from: lost_from + 80] != 0):
        failures.append("the first erased frame is silent")
    if np.any(out[: lost_from - 30] != tone[: lost_from - 30]):
        failures.append("audio before the erasure changed")

    # The first erased frame continues a steady tone almost seamlessly.
    out1 = conceal(tone, rate, [5])
    err = np.abs(out1[lost_from: lost_from + 80].astype(float) - tone[lost_from: lost_from + 80])
    if err.max() > 0.1 * 8000:
        failures.append(f"the first concealed frame of a tone is off by {err.max():.0f}")

    for r in (8000, 16000):
        rng = np.random.default_rng(1)
        x = rng.integers(-20000, 20000, size=r + 123).astype(np.int16)
        if not np.array_equal(conceal(x, r, []), x):
            failures.append(f"{r} Hz: the output is not the input when nothing is lost")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", nargs="?")
    ap.add_argument("output", nargs="?")
    ap.add_argument("--lost", default="", help="lost packet indices, comma-separated")
    ap.add_argument("--packet-frames", type=int, help="samples per packet (default 20 ms)")
    ap.add_argument("--self-test", action="store_true", help="check the implementation and exit")
    args = ap.parse_args()
    if args.self_test:
        failures = self_test()
        for f in failures:
            print(f"FAIL: {f}", file=sys.stderr)
        print("appendix1 self-test: " + ("failed" if failures else "ok"))
        sys.exit(1 if failures else 0)
    if not (args.input and args.output):
        ap.error("IN.wav and OUT.wav are needed (or --self-test)")
    rate, x = read_wav(args.input)
    lost = [int(v) for v in args.lost.split(",") if v.strip()]
    write_wav(args.output, rate, conceal(x, rate, lost, args.packet_frames))


if __name__ == "__main__":
    main()
