use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use crate::AudioError;

/// Samples as stored in the file, converted to `f32`.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Interleaved frames (`[l0, r0, l1, r1, ...]` for stereo). Integer PCM is scaled by
    /// `2^(bits - 1)`, so it lies in `[-1, 1)`; float WAV is passed through unchanged and may
    /// exceed that range.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: u16,
}

/// The container detected from a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    Wav,
    Flac,
    Mp3,
    /// Ogg Vorbis.
    Ogg,
    /// Opus in Ogg (`.opus`).
    Opus,
    /// AAC in an MP4/M4A container.
    Mp4,
    /// Raw AAC in ADTS frames (`.aac`).
    Adts,
}

impl std::fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AudioFormat::Wav => "WAV",
            AudioFormat::Flac => "FLAC",
            AudioFormat::Mp3 => "MP3",
            AudioFormat::Ogg => "Ogg Vorbis",
            AudioFormat::Opus => "Opus",
            AudioFormat::Mp4 => "MP4/M4A",
            AudioFormat::Adts => "AAC (ADTS)",
        })
    }
}

/// Shape of a decoded file without its samples: what a data check aggregates over a corpus
/// whose samples would not fit in memory together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioSummary {
    pub format: AudioFormat,
    pub sample_rate: u32,
    pub channels: u16,
    pub frames: usize,
}

impl AudioSummary {
    pub fn duration_seconds(&self) -> f64 {
        self.frames as f64 / f64::from(self.sample_rate)
    }
}

impl DecodedAudio {
    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    pub fn duration_seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// Mixes all channels into one by averaging them, as sox's `remix -` and librosa's
    /// `to_mono` do.
    pub fn to_mono(&self) -> Vec<f32> {
        let channels = usize::from(self.channels.max(1));
        if channels == 1 {
            return self.samples.clone();
        }
        let scale = 1.0 / channels as f32;
        self.samples
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale)
            .collect()
    }
}

/// Decodes a WAV, FLAC, MP3, Ogg Vorbis, Opus or AAC (MP4/M4A, ADTS) file. The format is
/// chosen from the file's first bytes, not its extension, so a FLAC file named `.wav` still
/// decodes. Decoder panics on hostile input are
/// caught and reported as [`AudioError::DecoderPanic`].
pub fn decode(path: &Path) -> Result<DecodedAudio, AudioError> {
    decode_with_format(path).map(|(audio, _)| audio)
}

/// Like [`decode`], but returns only the shape of the audio (after decoding every sample, so a
/// file that passes is known to decode completely).
pub fn summarize(path: &Path) -> Result<AudioSummary, AudioError> {
    let (audio, format) = decode_with_format(path)?;
    Ok(AudioSummary {
        format,
        sample_rate: audio.sample_rate,
        channels: audio.channels,
        frames: audio.frames(),
    })
}

fn decode_with_format(path: &Path) -> Result<(DecodedAudio, AudioFormat), AudioError> {
    let result = panic::catch_unwind(AssertUnwindSafe(|| decode_unguarded(path)));
    let (audio, format) = match result {
        Ok(result) => result?,
        Err(payload) => {
            let detail = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            return Err(AudioError::DecoderPanic {
                path: path.to_path_buf(),
                detail,
            });
        }
    };
    if audio.samples.is_empty() {
        return Err(AudioError::NoSamples {
            path: path.to_path_buf(),
        });
    }
    if audio.sample_rate == 0 {
        return Err(corrupt(path, "sample rate is 0 Hz"));
    }
    if audio.samples.iter().any(|s| !s.is_finite()) {
        return Err(corrupt(path, "contains NaN or infinite samples"));
    }
    Ok((audio, format))
}

fn decode_unguarded(path: &Path) -> Result<(DecodedAudio, AudioFormat), AudioError> {
    let file = File::open(path).map_err(|source| io_error(path, source))?;
    let file_len = file
        .metadata()
        .map_err(|source| io_error(path, source))?
        .len();
    if file_len == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 12];
    let magic_len = read_up_to(&mut reader, &mut magic).map_err(|source| io_error(path, source))?;
    let magic = &magic[..magic_len];
    reader
        .seek(SeekFrom::Start(0))
        .map_err(|source| io_error(path, source))?;

    if magic.starts_with(b"RIFF") && magic.get(8..12) == Some(b"WAVE") {
        decode_wav(path, reader, file_len).map(|audio| (audio, AudioFormat::Wav))
    } else if magic.starts_with(b"fLaC") {
        decode_flac(path, reader, file_len).map(|audio| (audio, AudioFormat::Flac))
    } else if magic.starts_with(b"ID3") {
        // Taggers put an ID3v2 block before MP3 frames, and some before a FLAC stream, which
        // claxon expects to start with `fLaC`.
        let tag_len = id3v2_len(magic).ok_or_else(|| corrupt(path, "malformed ID3v2 header"))?;
        reader
            .seek(SeekFrom::Start(tag_len))
            .map_err(|source| io_error(path, source))?;
        let mut inner_magic = [0u8; 4];
        let n =
            read_up_to(&mut reader, &mut inner_magic).map_err(|source| io_error(path, source))?;
        if &inner_magic[..n] == b"fLaC" {
            reader
                .seek(SeekFrom::Start(tag_len))
                .map_err(|source| io_error(path, source))?;
            decode_flac(path, reader, file_len - tag_len).map(|audio| (audio, AudioFormat::Flac))
        } else {
            compressed(path, reader, AudioFormat::Mp3)
        }
    } else if let Some(format) = compressed_format(magic) {
        compressed(path, reader, format)
    } else if magic.len() < 4 {
        Err(AudioError::Truncated {
            path: path.to_path_buf(),
            detail: format!("only {magic_len} bytes, too short for any audio header"),
        })
    } else {
        Err(unsupported(path, describe_unknown_magic(magic)))
    }
}

/// Lossy formats recognised by their first bytes; symphonia then probes them properly.
fn compressed_format(magic: &[u8]) -> Option<AudioFormat> {
    if magic.starts_with(b"OggS") {
        Some(AudioFormat::Ogg)
    } else if magic.get(4..8) == Some(b"ftyp") {
        Some(AudioFormat::Mp4)
    } else if magic.len() >= 2 && magic[0] == 0xFF && magic[1] & 0xE0 == 0xE0 {
        // An MPEG audio frame sync; layer bits 00 mark an ADTS (AAC) header instead.
        if magic[1] & 0x06 == 0 {
            Some(AudioFormat::Adts)
        } else {
            Some(AudioFormat::Mp3)
        }
    } else {
        None
    }
}

fn compressed(
    path: &Path,
    reader: BufReader<File>,
    format: AudioFormat,
) -> Result<(DecodedAudio, AudioFormat), AudioError> {
    let mut file = reader.into_inner();
    file.seek(SeekFrom::Start(0))
        .map_err(|source| io_error(path, source))?;
    crate::compressed::decode_compressed(path, file, format)
}

fn describe_unknown_magic(magic: &[u8]) -> String {
    let known = if magic.starts_with(b"RIFX") || magic.starts_with(b"RF64") {
        Some("big-endian or 64-bit WAV (RIFX/RF64)")
    } else if magic.starts_with(b"FORM") {
        Some("AIFF")
    } else {
        None
    };
    match known {
        Some(name) => format!("{name}; WAV, FLAC, MP3, Ogg Vorbis, Opus and AAC are read"),
        None => format!(
            "not a known audio file (first bytes {})",
            magic
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// Total length of an ID3v2 tag (header + body), from its syncsafe size field.
fn id3v2_len(header: &[u8]) -> Option<u64> {
    let size = header.get(6..10)?;
    if size.iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let body = size.iter().fold(0u64, |acc, &b| (acc << 7) | u64::from(b));
    let footer = if header.get(5)? & 0x10 != 0 { 10 } else { 0 };
    Some(10 + body + footer)
}

fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Preallocating from a header's claimed length would let a corrupt header ask for gigabytes;
/// cap it by what the file could possibly hold (times a generous compression ratio for FLAC).
fn capped_capacity(claimed: u64, file_len: u64, max_expansion: u64) -> usize {
    let plausible = file_len.saturating_mul(max_expansion);
    usize::try_from(claimed.min(plausible).min(1 << 28)).unwrap_or(0)
}

fn decode_wav(
    path: &Path,
    reader: BufReader<File>,
    file_len: u64,
) -> Result<DecodedAudio, AudioError> {
    let mut wav = hound::WavReader::new(reader).map_err(|e| wav_error(path, e))?;
    let spec = wav.spec();
    if spec.channels == 0 {
        return Err(corrupt(path, "header declares 0 channels"));
    }
    let claimed = u64::from(wav.len());
    let capacity = capped_capacity(claimed, file_len, 1);
    let mut samples = Vec::with_capacity(capacity);
    match spec.sample_format {
        hound::SampleFormat::Float => {
            if spec.bits_per_sample != 32 {
                return Err(unsupported(
                    path,
                    format!(
                        "{}-bit float WAV (only 32-bit float is read)",
                        spec.bits_per_sample
                    ),
                ));
            }
            for sample in wav.samples::<f32>() {
                samples
                    .push(sample.map_err(|e| wav_sample_error(path, e, samples.len(), claimed))?);
            }
        }
        hound::SampleFormat::Int => {
            if !(1..=32).contains(&spec.bits_per_sample) {
                return Err(unsupported(
                    path,
                    format!("{}-bit integer WAV", spec.bits_per_sample),
                ));
            }
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            for sample in wav.samples::<i32>() {
                let value =
                    sample.map_err(|e| wav_sample_error(path, e, samples.len(), claimed))?;
                samples.push((f64::from(value) * scale) as f32);
            }
        }
    }
    if samples.len() % usize::from(spec.channels) != 0 {
        return Err(AudioError::Truncated {
            path: path.to_path_buf(),
            detail: format!(
                "{} samples do not fill whole frames of {} channels",
                samples.len(),
                spec.channels
            ),
        });
    }
    Ok(DecodedAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    })
}

fn wav_error(path: &Path, error: hound::Error) -> AudioError {
    match error {
        hound::Error::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated {
                path: path.to_path_buf(),
                detail: "the WAV header ends early".to_owned(),
            }
        }
        hound::Error::IoError(source) => io_error(path, source),
        hound::Error::FormatError(what) => corrupt(path, format!("malformed WAV: {what}")),
        hound::Error::Unsupported => unsupported(
            path,
            "a WAV encoding other than integer PCM or 32-bit float".to_owned(),
        ),
        other => corrupt(path, format!("malformed WAV: {other}")),
    }
}

fn wav_sample_error(path: &Path, error: hound::Error, read: usize, claimed: u64) -> AudioError {
    match error {
        // hound reports a short read inside the data chunk as a custom `Other` error
        // ("Failed to read enough bytes."), not as `UnexpectedEof`.
        hound::Error::IoError(e)
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::Other
            ) =>
        {
            AudioError::Truncated {
                path: path.to_path_buf(),
                detail: format!("the header declares {claimed} samples, the file holds {read}"),
            }
        }
        other => wav_error(path, other),
    }
}

fn decode_flac(
    path: &Path,
    reader: BufReader<File>,
    file_len: u64,
) -> Result<DecodedAudio, AudioError> {
    let mut flac = claxon::FlacReader::new(reader).map_err(|e| flac_error(path, e, "header"))?;
    let info = flac.streaminfo();
    let channels = u16::try_from(info.channels)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| {
            corrupt(
                path,
                format!("STREAMINFO declares {} channels", info.channels),
            )
        })?;
    if !(1..=32).contains(&info.bits_per_sample) {
        return Err(corrupt(
            path,
            format!(
                "STREAMINFO declares {} bits per sample",
                info.bits_per_sample
            ),
        ));
    }
    let claimed_frames = info.samples;
    let claimed_samples = claimed_frames.map(|f| f.saturating_mul(u64::from(channels)));
    let mut samples =
        Vec::with_capacity(capped_capacity(claimed_samples.unwrap_or(0), file_len, 16));
    let scale = 1.0 / (1u64 << (info.bits_per_sample - 1)) as f64;

    let mut blocks = flac.blocks();
    let mut buffer = Vec::new();
    loop {
        let block = match blocks.read_next_or_eof(buffer) {
            Ok(Some(block)) => block,
            Ok(None) => break,
            Err(claxon::Error::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(flac_truncated(
                    path,
                    samples.len(),
                    channels,
                    claimed_frames,
                ));
            }
            Err(e) => {
                let frames_read = samples.len() / usize::from(channels);
                return Err(flac_error(
                    path,
                    e,
                    &format!("frame at sample {frames_read}"),
                ));
            }
        };
        if block.channels() != info.channels {
            return Err(corrupt(
                path,
                format!(
                    "a frame has {} channels, STREAMINFO declares {}",
                    block.channels(),
                    info.channels
                ),
            ));
        }
        for frame in 0..block.duration() {
            for channel in 0..block.channels() {
                samples.push((f64::from(block.sample(channel, frame)) * scale) as f32);
            }
        }
        buffer = block.into_buffer();
    }
    if let Some(claimed) = claimed_samples {
        if (samples.len() as u64) < claimed {
            return Err(flac_truncated(
                path,
                samples.len(),
                channels,
                claimed_frames,
            ));
        }
    }
    Ok(DecodedAudio {
        samples,
        sample_rate: info.sample_rate,
        channels,
    })
}

fn flac_truncated(
    path: &Path,
    samples_read: usize,
    channels: u16,
    claimed_frames: Option<u64>,
) -> AudioError {
    let frames_read = samples_read / usize::from(channels);
    let detail = match claimed_frames {
        Some(claimed) => {
            format!("STREAMINFO declares {claimed} frames, only {frames_read} decode before the data ends")
        }
        None => format!("the stream ends inside a frame after {frames_read} frames"),
    };
    AudioError::Truncated {
        path: path.to_path_buf(),
        detail,
    }
}

fn flac_error(path: &Path, error: claxon::Error, location: &str) -> AudioError {
    match error {
        claxon::Error::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated {
                path: path.to_path_buf(),
                detail: format!("the FLAC stream ends inside its {location}"),
            }
        }
        claxon::Error::IoError(source) => io_error(path, source),
        claxon::Error::FormatError(what) => {
            corrupt(path, format!("malformed FLAC {location}: {what}"))
        }
        claxon::Error::Unsupported(what) => unsupported(path, format!("FLAC feature: {what}")),
    }
}

pub(crate) fn io_error(path: &Path, source: io::Error) -> AudioError {
    if source.kind() == io::ErrorKind::NotFound {
        AudioError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        AudioError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> AudioError {
    AudioError::Corrupt {
        path: path.to_path_buf(),
        detail: detail.into(),
    }
}

pub(crate) fn unsupported(path: &Path, detail: String) -> AudioError {
    AudioError::Unsupported {
        path: path.to_path_buf(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id3v2_length_reads_syncsafe_size() {
        // Size bytes 0x00 0x00 0x02 0x01 = (2 << 7) | 1 = 257.
        let header = *b"ID3\x04\x00\x00\x00\x00\x02\x01";
        assert_eq!(id3v2_len(&header), Some(10 + 257));
        let with_footer = *b"ID3\x04\x00\x10\x00\x00\x02\x01";
        assert_eq!(id3v2_len(&with_footer), Some(20 + 257));
        let not_syncsafe = *b"ID3\x04\x00\x00\x80\x00\x00\x00";
        assert_eq!(id3v2_len(&not_syncsafe), None);
    }

    #[test]
    fn to_mono_averages_channels() {
        let audio = DecodedAudio {
            samples: vec![1.0, 0.0, -0.5, 0.5, 0.25, 0.25],
            sample_rate: 8000,
            channels: 2,
        };
        assert_eq!(audio.to_mono(), vec![0.5, 0.0, 0.25]);
        assert_eq!(audio.frames(), 3);
        assert!((audio.duration_seconds() - 3.0 / 8000.0).abs() < 1e-12);
    }

    #[test]
    fn unknown_magic_names_common_formats() {
        assert!(describe_unknown_magic(b"FORM\0\0\0\0AIFF").contains("AIFF"));
        assert!(describe_unknown_magic(b"abcdefgh").contains("61 62 63"));
    }

    #[test]
    fn lossy_formats_are_told_apart_by_their_first_bytes() {
        assert_eq!(compressed_format(b"OggS\0\x02"), Some(AudioFormat::Ogg));
        assert_eq!(
            compressed_format(b"\0\0\0\x20ftypM4A "),
            Some(AudioFormat::Mp4)
        );
        // MPEG-1 layer III frame sync versus an ADTS header (layer bits 00).
        assert_eq!(
            compressed_format(b"\xff\xfb\x90\x00"),
            Some(AudioFormat::Mp3)
        );
        assert_eq!(
            compressed_format(b"\xff\xf1\x60\x40"),
            Some(AudioFormat::Adts)
        );
        assert_eq!(compressed_format(b"RIFF"), None);
    }
}
