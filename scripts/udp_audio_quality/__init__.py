"""Helpers of scripts/udp-audio-quality: the ITU-T G.711 Appendix I reference concealment
(appendix1), WAV files (wavio), scoring (score) and the table (report)."""
