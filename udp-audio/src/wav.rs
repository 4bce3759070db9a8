//! WAV files in and out: [`Audio`] (interleaved 16-bit samples), [`read_wav`] with conversion
//! of other PCM depths and 32-bit float, [`write_wav`], and [`WavSink`] for long receives.
//!
//! The stream is L16, so everything becomes 16-bit on the way in. `hound` decodes; before it
//! runs, the file's own header is walked here (bounded reads, checked arithmetic) so that a
//! refusal names what the file holds (format tag, bit depth, channel count, rate, declared and
//! present data length) instead of hound's generic "unsupported". Accepted:
//!
//! | in the file                                  | becomes                                  |
//! |----------------------------------------------|------------------------------------------|
//! | 16-bit PCM, any rate and channel count       | as is                                    |
//! | 8-bit PCM (unsigned)                         | `(v - 128) << 8`                         |
//! | 24-bit and 32-bit PCM                        | `v / 2^(bits-16)`, rounded half up, clipped |
//! | 32-bit IEEE float                            | clipped to [-1, 1], `× 32768`, rounded, clipped to `i16` |
//! | the same inside `WAVE_FORMAT_EXTENSIBLE`     | the same (valid bits decide the depth)   |
//!
//! Everything else (A-law, µ-law, ADPCM, MP3, 64-bit float, RIFX/RF64, truncated data,
//! 0 channels, 0 Hz) is an [`Error::Wav`] whose reason says what was found.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// What the reader accepts, appended to every refusal.
const EXPECTED: &str = "expected 16-bit PCM (8/24/32-bit integer and 32-bit float are converted)";

/// `WAVE_FORMAT_PCM`.
const TAG_PCM: u16 = 0x0001;
/// `WAVE_FORMAT_IEEE_FLOAT`.
const TAG_FLOAT: u16 = 0x0003;
/// `WAVE_FORMAT_EXTENSIBLE`: the real format is the sub-format GUID.
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// The last 14 bytes of every `KSDATAFORMAT_SUBTYPE_*` GUID derived from a format tag
/// (`XXXXXXXX-0000-0010-8000-00AA00389B71`, the tag in the first two bytes).
const GUID_TAIL: [u8; 14] = [0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71];
/// hound counts data bytes in a `u32`; stop a little short of it (the header is in the RIFF
/// size too).
const MAX_DATA_BYTES: u64 = u32::MAX as u64 - 64;

/// Interleaved 16-bit audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Frames per second.
    pub rate: u32,
    /// Interleaved channels per frame.
    pub channels: u16,
    /// Samples, `channels` per frame.
    pub samples: Vec<i16>,
}

impl Audio {
    /// Sample frames (all channels of one instant); a trailing partial frame is not counted.
    pub fn frames(&self) -> usize {
        self.samples
            .len()
            .checked_div(usize::from(self.channels))
            .unwrap_or(0)
    }

    /// Length in seconds (0 for a 0 Hz rate).
    pub fn duration_secs(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.frames() as f64 / f64::from(self.rate)
        }
    }

    /// The channels mixed to one, as floats in [-1, 1) (`i16 / 32768`, averaged per frame).
    pub fn mono_f32(&self) -> Vec<f32> {
        let ch = usize::from(self.channels.max(1));
        let scale = 1.0 / (32768.0 * ch as f32);
        self.samples
            .chunks_exact(ch)
            .map(|frame| frame.iter().map(|&s| f32::from(s)).sum::<f32>() * scale)
            .collect()
    }
}

/// What the file held before conversion; shown as e.g. "16-bit PCM", "24-bit PCM",
/// "32-bit float".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceFormat {
    /// Bits per sample in the file (valid bits for `WAVE_FORMAT_EXTENSIBLE`).
    pub bits: u16,
    /// IEEE float samples rather than integer.
    pub float: bool,
    /// The samples were converted to 16-bit integer (anything but 16-bit PCM).
    pub converted: bool,
}

impl fmt::Display for SourceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-bit {}",
            self.bits,
            if self.float { "float" } else { "PCM" }
        )
    }
}

/// Reads a WAV file as 16-bit audio, converting 8/24/32-bit PCM and 32-bit float (see the
/// module docs). Returns the audio and what the file held.
///
/// Errors: [`Error::Io`] when the file cannot be opened, [`Error::Wav`] naming the format
/// found when it is not one of those, is truncated, or declares 0 channels or 0 Hz.
pub fn read_wav(path: &Path) -> Result<(Audio, SourceFormat)> {
    let shown = path.display().to_string();
    let refuse = |reason: String| Error::Wav {
        path: shown.clone(),
        reason,
    };
    let mut file = crate::files::open_input(path)?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading {shown}"), e))?
        .len();
    let header = peek_header(&mut file, file_len).map_err(refuse)?;
    let source = header.accepted().map_err(refuse)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(format!("reading {shown}"), e))?;

    let describe =
        |e: hound::Error| refuse(format!("the decoder refused the file ({header}): {e}"));
    let mut reader = hound::WavReader::new(BufReader::new(file)).map_err(describe)?;
    let spec = reader.spec();
    // The header walk checked the declared length against the file, so this is bounded.
    let mut samples = Vec::with_capacity(reader.len() as usize);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => {
            for s in reader.samples::<i16>() {
                samples.push(s.map_err(describe)?);
            }
        }
        (hound::SampleFormat::Int, bits) => {
            for s in reader.samples::<i32>() {
                samples.push(int_to_i16(s.map_err(describe)?, bits));
            }
        }
        (hound::SampleFormat::Float, _) => {
            for s in reader.samples::<f32>() {
                samples.push(float_to_i16(s.map_err(describe)?));
            }
        }
    }
    let audio = Audio {
        rate: spec.sample_rate,
        channels: spec.channels,
        samples,
    };
    Ok((audio, source))
}

/// Writes `audio` as a 16-bit PCM WAV file (replacing the file).
pub fn write_wav(path: &Path, audio: &Audio) -> Result<()> {
    let mut sink = WavSink::create(path, audio.rate, audio.channels)?;
    sink.write(&audio.samples)?;
    sink.finish()
}

/// An integer sample of `bits` valid bits, as 16-bit: shifted, rounded half up, clipped.
fn int_to_i16(v: i32, bits: u16) -> i16 {
    if bits <= 16 {
        let shifted = i64::from(v) << (16 - bits);
        return shifted.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16;
    }
    let shift = u32::from(bits - 16).min(32);
    let rounded = (i64::from(v) + (1i64 << (shift - 1))) >> shift;
    rounded.clamp(i64::from(i16::MIN), i64::from(i16::MAX)) as i16
}

/// A float sample, clipped to [-1, 1], scaled by 32768, rounded and clipped to `i16`;
/// NaN becomes 0.
fn float_to_i16(v: f32) -> i16 {
    if v.is_nan() {
        return 0;
    }
    let scaled = (v.clamp(-1.0, 1.0) * 32768.0).round();
    scaled.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// The parts of a WAV header that decide whether we can read it.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// `wFormatTag` of the fmt chunk.
    tag: u16,
    /// For `WAVE_FORMAT_EXTENSIBLE`: the sub-format (a tag when the GUID is a derived one).
    sub: Option<SubFormat>,
    channels: u16,
    rate: u32,
    /// Bits per sample in the container (`wBitsPerSample`).
    bits: u16,
    /// Valid bits of an extensible header, when given (non-zero).
    valid_bits: Option<u16>,
    block_align: u16,
    /// Declared data length and the bytes that follow the data chunk header in the file.
    data: Option<(u32, u64)>,
}

#[derive(Debug, Clone, Copy)]
enum SubFormat {
    /// A GUID of the `XXXXXXXX-0000-0010-8000-00AA00389B71` family, carrying this tag.
    Tag(u16),
    /// Any other GUID.
    Other([u8; 16]),
}

impl Header {
    /// The format tag that decides the sample coding (the sub-format's for extensible).
    fn effective_tag(&self) -> Option<u16> {
        match (self.tag, self.sub) {
            (TAG_EXTENSIBLE, Some(SubFormat::Tag(t))) => Some(t),
            (TAG_EXTENSIBLE, _) => None,
            (t, _) => Some(t),
        }
    }

    fn depth(&self) -> u16 {
        self.valid_bits.unwrap_or(self.bits)
    }

    /// Whether the reader takes this file; the source format if so, the reason if not.
    fn accepted(&self) -> std::result::Result<SourceFormat, String> {
        if self.channels == 0 {
            return Err(format!(
                "fmt chunk declares 0 channels ({self}); {EXPECTED}"
            ));
        }
        if self.rate == 0 {
            return Err(format!(
                "fmt chunk declares a 0 Hz sample rate ({self}); {EXPECTED}"
            ));
        }
        let depth = self.depth();
        let float = match self.effective_tag() {
            Some(TAG_PCM) => false,
            Some(TAG_FLOAT) => true,
            Some(tag) => {
                let wrapper = if self.tag == TAG_EXTENSIBLE {
                    "WAVE_FORMAT_EXTENSIBLE sub-format"
                } else {
                    "format tag"
                };
                return Err(format!(
                    "{wrapper} 0x{tag:04X} ({}) is not PCM or IEEE float; {EXPECTED}",
                    tag_name(tag)
                ));
            }
            None => {
                let guid = match self.sub {
                    Some(SubFormat::Other(g)) => guid_text(&g),
                    _ => "missing".to_string(),
                };
                return Err(format!(
                    "WAVE_FORMAT_EXTENSIBLE sub-format GUID {guid} is not PCM or IEEE float; {EXPECTED}"
                ));
            }
        };
        let supported = if float {
            depth == 32
        } else {
            matches!(depth, 8 | 16 | 24 | 32)
        };
        if !supported {
            return Err(format!(
                "{depth}-bit {} is not supported ({self}); {EXPECTED}",
                if float { "IEEE float" } else { "PCM" }
            ));
        }
        let Some((declared, present)) = self.data else {
            return Err(format!("no data chunk after the fmt chunk ({self})"));
        };
        if u64::from(declared) > present {
            return Err(format!(
                "truncated: the data chunk declares {declared} bytes, the file holds {present} ({self})"
            ));
        }
        Ok(SourceFormat {
            bits: depth,
            float,
            converted: float || depth != 16,
        })
    }
}

impl fmt::Display for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag 0x{:04X} {}", self.tag, tag_name(self.tag))?;
        match self.sub {
            Some(SubFormat::Tag(t)) => write!(f, " of {}", tag_name(t))?,
            Some(SubFormat::Other(g)) => write!(f, " of {}", guid_text(&g))?,
            None => {}
        }
        write!(f, ", {} bits", self.bits)?;
        if let Some(v) = self.valid_bits {
            write!(f, " ({v} valid)")?;
        }
        write!(
            f,
            ", {} ch, {} Hz, block align {}",
            self.channels, self.rate, self.block_align
        )
    }
}

/// A name for a `wFormatTag` (mmreg.h), for error messages.
fn tag_name(tag: u16) -> &'static str {
    match tag {
        0x0001 => "PCM",
        0x0002 => "Microsoft ADPCM",
        0x0003 => "IEEE float",
        0x0006 => "A-law",
        0x0007 => "µ-law",
        0x0011 => "IMA ADPCM",
        0x0022 => "TrueSpeech",
        0x0031 => "GSM 6.10",
        0x0040 => "G.721 ADPCM",
        0x0050 => "MPEG",
        0x0055 => "MPEG layer 3",
        0x0160..=0x0163 => "Windows Media Audio",
        0x00FF | 0x1610 => "AAC",
        0xF1AC => "FLAC",
        0xFFFE => "WAVE_FORMAT_EXTENSIBLE",
        _ => "unknown",
    }
}

fn guid_text(g: &[u8; 16]) -> String {
    let d1 = u32::from_le_bytes([g[0], g[1], g[2], g[3]]);
    let d2 = u16::from_le_bytes([g[4], g[5]]);
    let d3 = u16::from_le_bytes([g[6], g[7]]);
    let tail: String = g[8..].iter().map(|b| format!("{b:02X}")).collect();
    format!("{d1:08X}-{d2:04X}-{d3:04X}-{}-{}", &tail[..4], &tail[4..])
}

/// Walks the RIFF header of a file of `file_len` bytes up to the data chunk: the RIFF/WAVE
/// magic, chunk headers (skipped by seeking, so a huge declared size costs nothing) and at
/// most 40 bytes of the fmt chunk. Any read past the end, bad magic or missing fmt chunk
/// is a reason string; never a panic.
fn peek_header<R: Read + Seek>(r: &mut R, file_len: u64) -> std::result::Result<Header, String> {
    let mut riff = [0u8; 12];
    if file_len < 12 {
        let what = if file_len == 0 {
            "the file is empty".to_string()
        } else {
            format!("the file is {file_len} bytes")
        };
        return Err(format!(
            "not a WAV file: {what}, a RIFF/WAVE header needs 12; {EXPECTED}"
        ));
    }
    read_at(r, 0, &mut riff)?;
    match &riff[0..4] {
        b"RIFF" => {}
        b"RIFX" => return Err(format!("big-endian RIFX is not supported; {EXPECTED}")),
        b"RF64" => return Err(format!("RF64 (64-bit RIFF) is not supported; {EXPECTED}")),
        other => {
            return Err(format!(
                "not a WAV file: starts with {}, not RIFF; {EXPECTED}",
                show_magic(other)
            ));
        }
    }
    if &riff[8..12] != b"WAVE" {
        return Err(format!(
            "RIFF form type is {}, not WAVE; {EXPECTED}",
            show_magic(&riff[8..12])
        ));
    }
    let mut header: Option<Header> = None;
    let mut pos: u64 = 12;
    while pos + 8 <= file_len {
        let mut ch = [0u8; 8];
        read_at(r, pos, &mut ch)?;
        let size = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]);
        let body = pos + 8;
        match &ch[0..4] {
            b"fmt " => header = Some(parse_fmt(r, body, size, file_len)?),
            b"data" => {
                let Some(mut h) = header else {
                    return Err(format!(
                        "the data chunk comes before any fmt chunk; {EXPECTED}"
                    ));
                };
                h.data = Some((size, file_len - body));
                return Ok(h);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        pos = body + u64::from(size) + u64::from(size & 1);
    }
    match header {
        Some(h) => Ok(h),
        None => Err(format!(
            "no fmt chunk in the {file_len}-byte file (truncated or not audio); {EXPECTED}"
        )),
    }
}

fn parse_fmt<R: Read + Seek>(
    r: &mut R,
    body: u64,
    size: u32,
    file_len: u64,
) -> std::result::Result<Header, String> {
    if size < 16 {
        return Err(format!(
            "fmt chunk of {size} bytes is shorter than the 16 a WAVEFORMAT needs"
        ));
    }
    let avail = file_len.saturating_sub(body);
    if avail < 16 {
        return Err(format!(
            "truncated: the fmt chunk declares {size} bytes, the file holds {avail}"
        ));
    }
    let take = u64::from(size).min(40).min(avail) as usize;
    let mut b = [0u8; 40];
    read_at(r, body, &mut b[..take])?;
    let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let tag = u16_at(0);
    let mut h = Header {
        tag,
        sub: None,
        channels: u16_at(2),
        rate: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        bits: u16_at(14),
        valid_bits: None,
        block_align: u16_at(12),
        data: None,
    };
    if tag == TAG_EXTENSIBLE && take >= 40 {
        h.valid_bits = Some(u16_at(18)).filter(|&v| v != 0);
        let mut guid = [0u8; 16];
        guid.copy_from_slice(&b[24..40]);
        h.sub = Some(if guid[2..] == GUID_TAIL {
            SubFormat::Tag(u16_at(24))
        } else {
            SubFormat::Other(guid)
        });
    }
    Ok(h)
}

fn read_at<R: Read + Seek>(r: &mut R, pos: u64, buf: &mut [u8]) -> std::result::Result<(), String> {
    r.seek(SeekFrom::Start(pos))
        .and_then(|_| r.read_exact(buf))
        .map_err(|e| format!("reading {} header bytes at offset {pos}: {e}", buf.len()))
}

fn show_magic(m: &[u8]) -> String {
    if m.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("{:?}", String::from_utf8_lossy(m))
    } else {
        let hex: Vec<String> = m.iter().map(|b| format!("{b:02X}")).collect();
        format!("bytes {}", hex.join(" "))
    }
}

/// Incremental 16-bit PCM WAV writer for long receives (`hound::WavWriter` underneath).
///
/// The header's lengths are written by [`WavSink::finish`]; a sink dropped without it still
/// patches them (hound does so on drop) but cannot report an error.
pub struct WavSink {
    writer: hound::WavWriter<BufWriter<File>>,
    path: String,
    channels: u16,
    frames: u64,
}

impl fmt::Debug for WavSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("channels", &self.channels)
            .field("frames", &self.frames)
            .finish()
    }
}

impl WavSink {
    /// Creates (or truncates) `path` for `channels`-channel 16-bit audio at `rate` Hz.
    pub fn create(path: &Path, rate: u32, channels: u16) -> Result<Self> {
        let shown = path.display().to_string();
        if rate == 0 || channels == 0 {
            return Err(Error::Wav {
                path: shown,
                reason: format!("cannot write {rate} Hz, {channels} channels"),
            });
        }
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let file = crate::files::create_output(path)?;
        let writer = hound::WavWriter::new(BufWriter::new(file), spec)
            .map_err(|e| hound_write_error(&shown, e))?;
        Ok(WavSink {
            writer,
            path: shown,
            channels,
            frames: 0,
        })
    }

    /// Appends interleaved samples: a whole number of frames ([`Error::PartialSamples`]
    /// otherwise, nothing written). A WAV holds at most 4 GiB of data; a write past that is
    /// refused with [`Error::Wav`].
    pub fn write(&mut self, samples: &[i16]) -> Result<()> {
        if samples.len() % usize::from(self.channels) != 0 {
            return Err(Error::PartialSamples {
                samples: samples.len(),
                channels: self.channels,
            });
        }
        let bytes_after = (self.frames * u64::from(self.channels) + samples.len() as u64) * 2;
        if bytes_after > MAX_DATA_BYTES {
            return Err(Error::Wav {
                path: self.path.clone(),
                reason: format!("{bytes_after} bytes of data do not fit a WAV file (4 GiB)"),
            });
        }
        // Bounded chunks keep hound's staging buffer small.
        for chunk in samples.chunks(1 << 16) {
            let mut w = self.writer.get_i16_writer(chunk.len() as u32);
            for &s in chunk {
                w.write_sample(s);
            }
            w.flush().map_err(|e| hound_write_error(&self.path, e))?;
        }
        self.frames += (samples.len() / usize::from(self.channels)) as u64;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Writes the final lengths into the header and flushes the file.
    pub fn finish(self) -> Result<()> {
        let WavSink { writer, path, .. } = self;
        writer.finalize().map_err(|e| hound_write_error(&path, e))
    }
}

fn hound_write_error(path: &str, e: hound::Error) -> Error {
    match e {
        hound::Error::IoError(io) => Error::io(format!("writing {path}"), io),
        other => Error::Wav {
            path: path.to_string(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod test {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;

    /// A fresh path under the temp directory, unique per test process and call.
    fn tmp(name: &str) -> std::path::PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!("udp-audio-wav-{}-{n}-{name}", std::process::id()))
    }

    /// Writes `samples` with hound at the given depth, reads them back with [`read_wav`].
    fn hound_round_trip<S: hound::Sample + Copy>(
        bits: u16,
        format: hound::SampleFormat,
        channels: u16,
        samples: &[S],
    ) -> (Audio, SourceFormat) {
        let path = tmp("rt.wav");
        let spec = hound::WavSpec {
            channels,
            sample_rate: 22_050,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let out = read_wav(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!((out.0.rate, out.0.channels), (22_050, channels));
        out
    }

    /// A WAV file from parts: fmt chunk body, optional extra chunks before data, data.
    fn build(fmt_body: &[u8], extra: &[u8], data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        v.extend_from_slice(&(fmt_body.len() as u32).to_le_bytes());
        v.extend_from_slice(fmt_body);
        v.extend_from_slice(extra);
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        let riff = (v.len() - 8) as u32;
        v[4..8].copy_from_slice(&riff.to_le_bytes());
        v
    }

    /// A WAVEFORMATEX body (with cbSize 0 when `ex`).
    fn fmt_ex(tag: u16, channels: u16, rate: u32, bits: u16, ex: bool) -> Vec<u8> {
        let align = channels * bits.div_ceil(8);
        let mut b = Vec::new();
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        b.extend_from_slice(&align.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        if ex {
            b.extend_from_slice(&0u16.to_le_bytes());
        }
        b
    }

    /// A WAVEFORMATEXTENSIBLE body whose sub-format GUID carries `sub_tag`.
    fn fmt_extensible(sub_tag: u16, channels: u16, rate: u32, bits: u16, valid: u16) -> Vec<u8> {
        let mut b = fmt_ex(TAG_EXTENSIBLE, channels, rate, bits, false);
        b.extend_from_slice(&22u16.to_le_bytes());
        b.extend_from_slice(&valid.to_le_bytes());
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&sub_tag.to_le_bytes());
        b.extend_from_slice(&GUID_TAIL);
        b
    }

    fn read_bytes(bytes: &[u8]) -> Result<(Audio, SourceFormat)> {
        let path = tmp("built.wav");
        std::fs::write(&path, bytes).unwrap();
        let r = read_wav(&path);
        std::fs::remove_file(&path).unwrap();
        r
    }

    fn wav_reason(r: Result<(Audio, SourceFormat)>) -> String {
        match r {
            Err(Error::Wav { reason, .. }) => reason,
            other => panic!("expected Error::Wav, got {other:?}"),
        }
    }

    #[test]
    fn sixteen_bit_round_trips_unchanged() {
        let audio = Audio {
            rate: 44_100,
            channels: 2,
            samples: vec![0, 1, -1, i16::MAX, i16::MIN, 1234, -4321, 7],
        };
        let path = tmp("16.wav");
        write_wav(&path, &audio).unwrap();
        let (back, source) = read_wav(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back, audio);
        assert_eq!(
            source,
            SourceFormat {
                bits: 16,
                float: false,
                converted: false
            }
        );
        assert_eq!(source.to_string(), "16-bit PCM");
        assert_eq!(back.frames(), 4);
        assert!((back.duration_secs() - 4.0 / 44_100.0).abs() < 1e-12);
    }

    #[test]
    fn eight_bit_is_shifted_up() {
        let (a, s) = hound_round_trip::<i8>(8, hound::SampleFormat::Int, 1, &[-128, -1, 0, 1, 127]);
        assert_eq!(a.samples, [-32768, -256, 0, 256, 32512]);
        assert_eq!(
            s,
            SourceFormat {
                bits: 8,
                float: false,
                converted: true
            }
        );
        assert_eq!(s.to_string(), "8-bit PCM");
    }

    #[test]
    fn twenty_four_bit_rounds_half_up_and_clips() {
        // hound writes 24-bit as WAVE_FORMAT_EXTENSIBLE.
        let input = [0x7F_FFFF, -0x80_0000, 128, 127, -129, 383, 0, -128];
        let (a, s) = hound_round_trip::<i32>(24, hound::SampleFormat::Int, 2, &input);
        assert_eq!(a.samples, [32767, -32768, 1, 0, -1, 1, 0, 0]);
        assert_eq!(s.to_string(), "24-bit PCM");
        assert!(s.converted);
    }

    #[test]
    fn thirty_two_bit_int_rounds_and_clips() {
        let input = [i32::MAX, i32::MIN, 32768, 32767, -32769, 0x1234_5678];
        let (a, s) = hound_round_trip::<i32>(32, hound::SampleFormat::Int, 1, &input);
        assert_eq!(a.samples, [32767, -32768, 1, 0, -1, 0x1234]);
        assert_eq!(
            s,
            SourceFormat {
                bits: 32,
                float: false,
                converted: true
            }
        );
    }

    #[test]
    fn float_is_clipped_and_scaled() {
        let input = [
            0.0f32,
            0.5,
            -0.5,
            1.0,
            -1.0,
            2.0,
            -3.0,
            1e-5,
            0.25 / 32768.0 * 3.0,
        ];
        let (a, s) = hound_round_trip::<f32>(32, hound::SampleFormat::Float, 1, &input);
        assert_eq!(
            a.samples,
            [0, 16384, -16384, 32767, -32768, 32767, -32768, 0, 1]
        );
        assert_eq!(
            s,
            SourceFormat {
                bits: 32,
                float: true,
                converted: true
            }
        );
        assert_eq!(s.to_string(), "32-bit float");
    }

    #[test]
    fn plain_waveformatex_24_bit_and_float_are_read() {
        let pcm24 = build(
            &fmt_ex(TAG_PCM, 1, 8000, 24, false),
            &[],
            &[0x80, 0x00, 0x00, 0xFF, 0xFF, 0xFF],
        );
        let (a, s) = read_bytes(&pcm24).unwrap();
        assert_eq!(
            (a.samples.as_slice(), s.bits, s.float),
            ([1i16, 0].as_slice(), 24, false)
        );

        let mut data = Vec::new();
        for v in [0.5f32, -0.25] {
            data.extend_from_slice(&v.to_le_bytes());
        }
        let float = build(
            &fmt_ex(TAG_FLOAT, 1, 8000, 32, true),
            b"fact\x04\0\0\0\x02\0\0\0",
            &data,
        );
        let (a, s) = read_bytes(&float).unwrap();
        assert_eq!(
            (a.samples.as_slice(), s.float),
            ([16384i16, -8192].as_slice(), true)
        );
    }

    #[test]
    fn extensible_sixteen_bit_is_not_converted() {
        let data: Vec<u8> = [100i16, -200, 300, -400, 500, -600]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let bytes = build(&fmt_extensible(TAG_PCM, 2, 48_000, 16, 16), &[], &data);
        let (a, s) = read_bytes(&bytes).unwrap();
        assert_eq!(
            a,
            Audio {
                rate: 48_000,
                channels: 2,
                samples: vec![100, -200, 300, -400, 500, -600]
            }
        );
        assert_eq!(
            s,
            SourceFormat {
                bits: 16,
                float: false,
                converted: false
            }
        );

        // hound itself writes extensible for more than two channels.
        let six: Vec<i16> = (0..60).map(|i| i * 100 - 3000).collect();
        let (a, s) = hound_round_trip::<i16>(16, hound::SampleFormat::Int, 6, &six);
        assert_eq!((a.samples, s.converted), (six, false));
    }

    #[test]
    fn alaw_is_refused_by_name() {
        let bytes = build(
            &fmt_ex(0x0006, 1, 8000, 8, true),
            b"fact\x04\0\0\0\x04\0\0\0",
            &[0xD5; 4],
        );
        let reason = wav_reason(read_bytes(&bytes));
        assert_eq!(
            reason,
            "format tag 0x0006 (A-law) is not PCM or IEEE float; \
             expected 16-bit PCM (8/24/32-bit integer and 32-bit float are converted)"
        );
    }

    #[test]
    fn other_codecs_are_refused_by_name() {
        for (tag, name) in [
            (0x0007, "µ-law"),
            (0x0002, "Microsoft ADPCM"),
            (0x0011, "IMA ADPCM"),
            (0x0055, "MPEG layer 3"),
            (0x1234, "unknown"),
        ] {
            let bytes = build(&fmt_ex(tag, 1, 8000, 8, true), &[], &[0; 4]);
            let reason = wav_reason(read_bytes(&bytes));
            assert!(
                reason.starts_with(&format!("format tag 0x{tag:04X} ({name})")),
                "{reason}"
            );
            assert!(reason.ends_with(EXPECTED), "{reason}");
        }
        let bytes = build(&fmt_extensible(0x0007, 1, 8000, 8, 8), &[], &[0; 4]);
        let reason = wav_reason(read_bytes(&bytes));
        assert!(
            reason.starts_with("WAVE_FORMAT_EXTENSIBLE sub-format 0x0007 (µ-law)"),
            "{reason}"
        );
        let mut odd_guid = fmt_extensible(TAG_PCM, 1, 8000, 16, 16);
        odd_guid[35] = 0x77;
        let reason = wav_reason(read_bytes(&build(&odd_guid, &[], &[0; 4])));
        assert!(
            reason.starts_with("WAVE_FORMAT_EXTENSIBLE sub-format GUID 00000001-0000-0010-8000-"),
            "{reason}"
        );
    }

    #[test]
    fn float64_and_odd_depths_are_refused_by_name() {
        let reason = wav_reason(read_bytes(&build(
            &fmt_ex(TAG_FLOAT, 1, 8000, 64, false),
            &[],
            &[0; 16],
        )));
        assert!(
            reason
                .starts_with("64-bit IEEE float is not supported (tag 0x0003 IEEE float, 64 bits"),
            "{reason}"
        );
        let reason = wav_reason(read_bytes(&build(
            &fmt_extensible(TAG_PCM, 1, 8000, 24, 20),
            &[],
            &[0; 6],
        )));
        assert!(
            reason.starts_with("20-bit PCM is not supported"),
            "{reason}"
        );
    }

    #[test]
    fn zero_channels_zero_rate_and_truncation_are_refused() {
        let mut zero_ch = fmt_ex(TAG_PCM, 1, 8000, 16, false);
        zero_ch[2] = 0;
        assert!(
            wav_reason(read_bytes(&build(&zero_ch, &[], &[0; 4])))
                .starts_with("fmt chunk declares 0 channels")
        );
        let zero_hz = fmt_ex(TAG_PCM, 1, 0, 16, false);
        assert!(
            wav_reason(read_bytes(&build(&zero_hz, &[], &[0; 4])))
                .starts_with("fmt chunk declares a 0 Hz")
        );

        let mut whole = build(&fmt_ex(TAG_PCM, 1, 8000, 16, false), &[], &[1; 100]);
        whole.truncate(whole.len() - 10);
        let reason = wav_reason(read_bytes(&whole));
        assert!(
            reason.starts_with("truncated: the data chunk declares 100 bytes, the file holds 90"),
            "{reason}"
        );
        // Cut inside the fmt chunk.
        let reason = wav_reason(read_bytes(&whole[..30]));
        assert!(
            reason.starts_with("truncated: the fmt chunk declares 16 bytes, the file holds 10"),
            "{reason}"
        );
        // No data chunk at all.
        let reason = wav_reason(read_bytes(&whole[..36]));
        assert!(reason.starts_with("no data chunk"), "{reason}");
    }

    #[test]
    fn empty_garbage_and_foreign_files_are_refused() {
        let reason = wav_reason(read_bytes(&[]));
        assert!(
            reason.starts_with("not a WAV file: the file is empty"),
            "{reason}"
        );
        let reason = wav_reason(read_bytes(b"OggS\0\x02\0\0\0\0\0\0\0\0\0\0"));
        assert!(
            reason.starts_with("not a WAV file: starts with \"OggS\""),
            "{reason}"
        );
        let reason = wav_reason(read_bytes(b"RIFF\x10\0\0\0AVI LIST"));
        assert!(reason.starts_with("RIFF form type is \"AVI \""), "{reason}");
        let reason = wav_reason(read_bytes(b"RF64\xff\xff\xff\xffWAVEds64"));
        assert!(reason.starts_with("RF64"), "{reason}");
        let reason = wav_reason(read_bytes(&[0xFF; 64]));
        assert!(
            reason.starts_with("not a WAV file: starts with bytes FF FF FF FF"),
            "{reason}"
        );
    }

    #[test]
    fn a_missing_file_is_an_io_error() {
        let r = read_wav(&tmp("does-not-exist.wav"));
        assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Arbitrary bytes, and arbitrary bytes behind a valid RIFF/WAVE/fmt prefix, never
        /// panic; whatever is accepted has whole frames.
        #[test]
        fn garbage_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200), prefix in 0usize..4) {
            let mut bytes = match prefix {
                0 => Vec::new(),
                1 => b"RIFF\xff\xff\xff\xffWAVE".to_vec(),
                2 => b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec(),
                _ => build(&fmt_ex(TAG_PCM, 2, 8000, 16, false), &[], &[])[..36].to_vec(),
            };
            bytes.extend_from_slice(&tail);
            match read_bytes(&bytes) {
                Ok((a, _)) => prop_assert_eq!(a.samples.len() % usize::from(a.channels), 0),
                Err(e) => prop_assert!(matches!(e, Error::Wav { .. }), "{:?}", e),
            }
        }
    }

    #[test]
    fn sink_writes_incrementally() {
        let path = tmp("sink.wav");
        let mut sink = WavSink::create(&path, 16_000, 2).unwrap();
        sink.write(&[1, 2, 3, 4]).unwrap();
        assert!(matches!(
            sink.write(&[5, 6, 7]),
            Err(Error::PartialSamples {
                samples: 3,
                channels: 2
            })
        ));
        sink.write(&[]).unwrap();
        let long: Vec<i16> = (0..200_000).map(|i| (i % 65_536 - 32_768) as i16).collect();
        sink.write(&long).unwrap();
        assert_eq!(sink.frames(), 2 + 100_000);
        sink.finish().unwrap();
        let (a, s) = read_wav(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            (a.rate, a.channels, a.frames(), s.converted),
            (16_000, 2, 100_002, false)
        );
        assert_eq!(&a.samples[..4], &[1, 2, 3, 4]);
        assert_eq!(&a.samples[4..], long.as_slice());
    }

    #[test]
    fn sink_refuses_zero_channels_or_rate() {
        assert!(matches!(
            WavSink::create(&tmp("z.wav"), 0, 1),
            Err(Error::Wav { .. })
        ));
        assert!(matches!(
            WavSink::create(&tmp("z.wav"), 8000, 0),
            Err(Error::Wav { .. })
        ));
    }

    #[test]
    fn mono_mix_averages_channels() {
        let a = Audio {
            rate: 8000,
            channels: 2,
            samples: vec![16384, 0, -32768, -32768, 100],
        };
        assert_eq!(a.frames(), 2);
        assert_eq!(a.mono_f32(), [0.25, -1.0]);
    }
}
