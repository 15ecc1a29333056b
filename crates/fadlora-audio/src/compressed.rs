//! Lossy formats through symphonia: MP3, Ogg Vorbis, AAC (in MP4/M4A or raw ADTS), and Opus,
//! whose packets symphonia's Ogg reader delivers but cannot decode, so `opus-decoder` does.
//!
//! Encoder delay and padding are removed where the container records them (LAME/Xing headers
//! in MP3, granule positions and pre-skip in Ogg), so a decode has the length of the encoded
//! signal. symphonia 0.5 does not read MP4 edit lists: AAC from MP4/M4A keeps the encoder's
//! priming samples (1024 or 2112 frames of near-silence at the start).

use std::fs::File;
use std::io;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CodecParameters, DecoderOptions, CODEC_TYPE_NULL, CODEC_TYPE_OPUS};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::decode::{corrupt, io_error, unsupported, AudioFormat, DecodedAudio};
use crate::AudioError;

/// Opus always decodes at 48 kHz: pre-skip and granule positions count 48 kHz frames.
const OPUS_RATE: u32 = 48_000;
/// The longest Opus packet: 120 ms at 48 kHz.
const OPUS_MAX_FRAMES_PER_PACKET: usize = 5_760;

/// Decodes a file that symphonia's probe recognises. `format` is what the caller's magic-byte
/// sniffing guessed; it is refined from the codec actually found (an Ogg file may hold Vorbis
/// or Opus).
pub(crate) fn decode_compressed(
    path: &Path,
    file: File,
    format: AudioFormat,
) -> Result<(DecodedAudio, AudioFormat), AudioError> {
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &options, &MetadataOptions::default())
        .map_err(|e| symphonia_error(path, e, "container header"))?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| corrupt(path, "no audio track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    if params.codec == CODEC_TYPE_OPUS {
        let audio = decode_opus(path, reader.as_mut(), track_id, &params)?;
        return Ok((audio, AudioFormat::Opus));
    }
    let format = match (format, params.codec) {
        (AudioFormat::Ogg, symphonia::core::codecs::CODEC_TYPE_VORBIS) => AudioFormat::Ogg,
        (AudioFormat::Ogg, other) => {
            return Err(unsupported(
                path,
                format!(
                    "an Ogg stream of codec {} (Vorbis and Opus are read)",
                    codec_name(other)
                ),
            ))
        }
        (format, _) => format,
    };
    let audio = decode_symphonia(path, reader.as_mut(), track_id, &params)?;
    Ok((audio, format))
}

fn codec_name(codec: symphonia::core::codecs::CodecType) -> String {
    symphonia::default::get_codecs()
        .get_codec(codec)
        .map(|d| d.short_name.to_owned())
        .unwrap_or_else(|| format!("{codec}"))
}

/// The next packet of `track_id`, or `None` at the end of the stream.
fn next_packet(
    path: &Path,
    reader: &mut dyn FormatReader,
    track_id: u32,
    frames_so_far: usize,
) -> Result<Option<Packet>, AudioError> {
    loop {
        match reader.next_packet() {
            Ok(packet) if packet.track_id() == track_id => return Ok(Some(packet)),
            Ok(_) => continue,
            // symphonia reports the end of a stream as an unexpected EOF; a cut inside a packet
            // shows up the same way and is caught by the frame count check afterwards.
            Err(SymphoniaError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(None)
            }
            Err(e) => {
                return Err(symphonia_error(
                    path,
                    e,
                    &format!("packet after frame {frames_so_far}"),
                ))
            }
        }
    }
}

fn decode_symphonia(
    path: &Path,
    reader: &mut dyn FormatReader,
    track_id: u32,
    params: &CodecParameters,
) -> Result<DecodedAudio, AudioError> {
    let mut decoder = symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|e| symphonia_error(path, e, "codec setup"))?;
    let mut samples = Vec::new();
    let mut channels = 0u16;
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    let mut buffer: Option<SampleBuffer<f32>> = None;
    while let Some(packet) = next_packet(path, reader, track_id, frames(&samples, channels))? {
        let decoded = decoder.decode(&packet).map_err(|e| {
            symphonia_error(
                path,
                e,
                &format!("packet after frame {}", frames(&samples, channels)),
            )
        })?;
        let spec = *decoded.spec();
        let packet_channels = u16::try_from(spec.channels.count()).unwrap_or(0);
        if channels == 0 {
            channels = packet_channels;
            sample_rate = spec.rate;
        } else if packet_channels != channels || spec.rate != sample_rate {
            return Err(corrupt(
                path,
                format!(
                    "the stream changes from {channels} channels at {sample_rate} Hz to \
                     {packet_channels} at {} Hz",
                    spec.rate
                ),
            ));
        }
        if decoded.frames() == 0 {
            continue;
        }
        let needed = decoded.capacity() as u64;
        let buf = match &mut buffer {
            Some(buf) if buf.capacity() as u64 >= needed * u64::from(channels) => buf,
            _ => buffer.insert(SampleBuffer::new(needed, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        samples.extend_from_slice(buf.samples());
    }
    check_length(path, &samples, channels, params.n_frames)?;
    Ok(DecodedAudio {
        samples,
        sample_rate,
        channels,
    })
}

fn frames(samples: &[f32], channels: u16) -> usize {
    samples.len() / usize::from(channels.max(1))
}

/// A container that states its length (Xing/Info frame count, Ogg's last granule position,
/// an MP4 track duration) lets a cut file be told apart from a short one.
fn check_length(
    path: &Path,
    samples: &[f32],
    channels: u16,
    declared: Option<u64>,
) -> Result<(), AudioError> {
    let decoded = frames(samples, channels) as u64;
    match declared {
        Some(declared) if decoded < declared => Err(AudioError::Truncated {
            path: path.to_path_buf(),
            detail: format!("the container declares {declared} frames, {decoded} decode"),
        }),
        _ => Ok(()),
    }
}

/// The fields of the Ogg Opus identification header (RFC 7845 §5.1) decoding needs.
struct OpusHead {
    channels: usize,
    pre_skip: usize,
    gain: f32,
}

fn parse_opus_head(path: &Path, head: &[u8]) -> Result<OpusHead, AudioError> {
    if head.len() < 19 || &head[..8] != b"OpusHead" {
        return Err(corrupt(path, "missing or short OpusHead header"));
    }
    let channels = usize::from(head[9]);
    let pre_skip = usize::from(u16::from_le_bytes([head[10], head[11]]));
    // Q7.8 dB, to be applied to every output sample (RFC 7845 §5.1).
    let gain_db = f32::from(i16::from_le_bytes([head[16], head[17]])) / 256.0;
    let mapping_family = head[18];
    if mapping_family != 0 || !(1..=2).contains(&channels) {
        return Err(unsupported(
            path,
            format!(
                "multistream Opus (channel mapping family {mapping_family}, {channels} \
                 channels); mono and stereo Opus are read"
            ),
        ));
    }
    Ok(OpusHead {
        channels,
        pre_skip,
        gain: 10f32.powf(gain_db / 20.0),
    })
}

fn decode_opus(
    path: &Path,
    reader: &mut dyn FormatReader,
    track_id: u32,
    params: &CodecParameters,
) -> Result<DecodedAudio, AudioError> {
    let head = parse_opus_head(path, params.extra_data.as_deref().unwrap_or_default())?;
    let mut decoder = opus_decoder::OpusDecoder::new(OPUS_RATE, head.channels)
        .map_err(|e| corrupt(path, format!("Opus decoder setup: {e:?}")))?;
    let channels = u16::try_from(head.channels).unwrap_or(1);
    let mut pcm = vec![0f32; OPUS_MAX_FRAMES_PER_PACKET * head.channels];
    let mut samples = Vec::new();
    // symphonia's generic Ogg timing does not know Opus's pre-skip, so its packet trims are
    // ignored here and RFC 7845 §4 is applied directly: drop the first `pre_skip` frames, and
    // end where the last page's granule position (less the pre-skip) says the signal ends.
    while let Some(packet) = next_packet(path, reader, track_id, frames(&samples, channels))? {
        let decoded_frames = decoder
            .decode_float(&packet.data, &mut pcm, false)
            .map_err(|e| {
                corrupt(
                    path,
                    format!(
                        "Opus packet after frame {}: {e:?}",
                        frames(&samples, channels)
                    ),
                )
            })?;
        samples.extend(
            pcm[..decoded_frames * head.channels]
                .iter()
                .map(|s| s * head.gain),
        );
    }
    samples.drain(..(head.pre_skip * head.channels).min(samples.len()));
    // With gapless reading, symphonia's frame count for Ogg is the last granule position.
    let declared = params
        .n_frames
        .map(|n| (params.start_ts + n).saturating_sub(head.pre_skip as u64));
    if let Some(declared) = declared {
        let declared_samples = usize::try_from(declared)
            .unwrap_or(usize::MAX)
            .saturating_mul(head.channels);
        samples.truncate(declared_samples);
    }
    check_length(path, &samples, channels, declared)?;
    Ok(DecodedAudio {
        samples,
        sample_rate: OPUS_RATE,
        channels,
    })
}

fn symphonia_error(path: &Path, error: SymphoniaError, location: &str) -> AudioError {
    match error {
        SymphoniaError::IoError(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated {
                path: path.to_path_buf(),
                detail: format!("the stream ends inside its {location}"),
            }
        }
        SymphoniaError::IoError(source) => io_error(path, source),
        SymphoniaError::DecodeError(what) => corrupt(path, format!("{location}: {what}")),
        SymphoniaError::Unsupported(what) => unsupported(path, format!("{location}: {what}")),
        SymphoniaError::LimitError(what) => corrupt(path, format!("{location}: limit: {what}")),
        SymphoniaError::ResetRequired => unsupported(
            path,
            format!("{location}: the stream changes its parameters mid-way"),
        ),
        SymphoniaError::SeekError(_) => corrupt(path, format!("{location}: seek failed")),
    }
}
