"""Scoring jobs of scripts/udp-audio-quality, each a plain function of picklable arguments so
that a multiprocessing pool can run them on every core: the Appendix I reference on one row's
losses, PESQ on one output, and `udp-audio eval` (the one implementation of SNR and LSD)."""
import json
import subprocess
import wave

import numpy as np

from . import appendix1


def read_wav(path):
    """(rate, float32 mono samples) of a 16-bit mono WAV file."""
    with wave.open(path) as w:
        return w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32)


def udp_audio_eval(exe, reference, degraded):
    """`udp-audio eval REF DEG --json`: SNR, segmental SNR, LSD, as eval.rs computes them."""
    res = subprocess.run([exe, "eval", reference, degraded, "--json"], check=True,
                         capture_output=True, text=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def reference_job(exe, reference, out_path, lost_packets, packet_frames):
    """Conceals `lost_packets` of `reference` with Appendix I into `out_path`; returns its
    `udp-audio eval` figures."""
    rate, x = appendix1.read_wav(reference)
    appendix1.write_wav(out_path, rate, appendix1.conceal(x, rate, lost_packets, packet_frames))
    return udp_audio_eval(exe, reference, out_path)


def pesq_job(reference, degraded, modes):
    """PESQ of `degraded` against `reference` for each of `modes` ('nb': P.862, 'wb':
    P.862.2). The shorter length is compared; PESQ aligns in time itself. A file PESQ cannot
    score (no utterance found) gives None."""
    from pesq import pesq

    fs, ref = read_wav(reference)
    _, deg = read_wav(degraded)
    n = min(len(ref), len(deg))
    out = {}
    for mode in modes:
        try:
            out[mode] = float(pesq(fs, ref[:n], deg[:n], mode))
        except Exception as e:  # the pesq package raises its own error types
            out[mode] = None
            out[f"{mode}_error"] = str(e)
    return out
