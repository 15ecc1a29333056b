#!/usr/bin/env bash
# Regenerates the audio test fixtures of crates/fadlora-audio/tests/fixtures.
#
# The fixtures are committed so that `cargo test` needs no external tool. This script is only
# run by hand when a fixture has to change. Every reference decode is made here by an
# independent implementation (the reference `flac` decoder, sox's resampler and mixer), so the
# Rust tests compare fadlora's decoding against other programs rather than against itself.
#
# Needs: sox (14.4), flac (1.4), ffmpeg (5.1, with libmp3lame, libvorbis and libopus).
# On Debian: apt-get install sox flac ffmpeg
set -euo pipefail

out="$(cd "$(dirname "$0")/../.." && pwd)/crates/fadlora-audio/tests/fixtures"
mkdir -p "$out"
cd "$out"

for tool in sox flac ffmpeg; do
    command -v "$tool" >/dev/null || { echo "error: '$tool' not found (apt-get install sox flac ffmpeg)" >&2; exit 1; }
done

# -D: no dither, so every bit depth quantises the same signal deterministically.
# -R: repeatable (fixed seed for the noise generators).
SOX="sox -D -R"

# A broadband, speech-like test signal: two partials, pink noise and a fade, so the FLAC
# encoder exercises several predictor orders and residual codings.
$SOX -n -r 16000 -c 1 -b 16 speechlike_16k_s16.flac \
    synth 0.5 sine 220 sine 1870 pinknoise remix - gain -n -3 fade q 0.02 0.5 0.05
# 24-bit stereo at 44.1 kHz: a different tone in each channel.
$SOX -n -r 44100 -c 2 -b 24 stereo_44k1_s24.flac \
    synth 0.2 sine 440 sine 3000 gain -n -2 fade q 0.01 0.2 0.01

# Reference decodes by the reference FLAC decoder: raw little-endian signed PCM at the
# file's own bit depth, interleaved.
for f in speechlike_16k_s16 stereo_44k1_s24; do
    bits=$(metaflac --show-bps "$f.flac")
    flac -s -f -d --force-raw-format --endian=little --sign=signed -o "$f.s${bits}le.raw" "$f.flac"
done

# The same 0.1 s, 440 Hz tone at -6 dBFS in every WAV sample format hound reads.
$SOX -n -r 16000 -c 1 -b 32 -e float tone_16k_f32.wav synth 0.1 sine 440 gain -6
$SOX tone_16k_f32.wav -b 8 -e unsigned tone_16k_u8.wav
$SOX tone_16k_f32.wav -b 16 -e signed tone_16k_s16.wav
$SOX tone_16k_f32.wav -b 24 -e signed tone_16k_s24.wav
$SOX tone_16k_f32.wav -b 32 -e signed tone_16k_s32.wav

# Three channels (sox writes WAVE_FORMAT_EXTENSIBLE for more than two) and sox's own
# mix-down of them (`remix -` averages the channels) as the mono reference.
$SOX -n -r 16000 -c 3 -b 16 -e signed three_channels_16k_s16.wav \
    synth 0.1 sine 300 sine 1100 sine 2500 gain -n -1
$SOX three_channels_16k_s16.wav -b 32 -e float three_channels_mono_reference_f32.wav remix -

# A 1 kHz tone at 44.1 kHz stereo, and sox's very-high-quality linear-phase resampling of its
# mono mix to 16 kHz: load_mono_16k must agree with it sample by sample (same timing).
$SOX -n -r 44100 -c 2 -b 16 tone_1k_44k1_stereo_s16.flac \
    synth 0.3 sine 1000 sine 1000 gain -n -6 fade h 0.05 0.3 0.05
$SOX tone_1k_44k1_stereo_s16.flac -b 32 -e float tone_1k_16k_sox_reference_f32.wav remix - rate -v -L 16000

# Lossy formats: encoded by the reference encoders (LAME, libvorbis, libopus, ffmpeg's AAC)
# and decoded by ffmpeg's decoders (libopus for Opus) into 32-bit float WAV at the stream's rate, so the Rust
# decoders (symphonia, opus-decoder) are compared with an independent implementation.
# A 0.5 s mono source at 16 kHz and a stereo one at 44.1 kHz with different content per channel.
$SOX -n -r 44100 -c 2 -b 16 lossy_source_44k1_stereo.wav \
    synth 0.5 sine 330 sine 2200 pinknoise remix 1,3 2,3 gain -n -4 fade q 0.02 0.5 0.05
# ffmpeg INPUT OPTIONS... OUTPUT, with no encoder tag or timestamps that would change each run.
ff() { local in="$1"; shift; ffmpeg -v error -y -i "$in" -map_metadata -1 -fflags +bitexact -flags:a +bitexact "$@"; }
# MP3 (MPEG-1 layer III, with an ID3v2 tag and a LAME Info frame that records delay/padding).
ff lossy_source_44k1_stereo.wav -c:a libmp3lame -b:a 128k -id3v2_version 3 \
    -metadata title=fixture lossy_44k1_stereo.mp3
# Ogg Vorbis, Opus and AAC from the mono speech-like signal.
ff speechlike_16k_s16.flac -c:a libvorbis -q:a 4 lossy_16k_mono.ogg
ff speechlike_16k_s16.flac -c:a libopus -b:a 32k lossy_16k_mono.opus
ff speechlike_16k_s16.flac -c:a aac -b:a 48k lossy_16k_mono.m4a
ff speechlike_16k_s16.flac -c:a aac -b:a 48k -f adts lossy_16k_mono.aac
rm lossy_source_44k1_stereo.wav
for f in lossy_44k1_stereo.mp3 lossy_16k_mono.ogg lossy_16k_mono.m4a lossy_16k_mono.aac; do
    ff "$f" -c:a pcm_f32le "${f%.*}_${f##*.}_ffmpeg_reference_f32.wav"
done
# Opus through libopus, the reference decoder (ffmpeg's native one resamples SILK differently).
ffmpeg -v error -y -c:a libopus -i lossy_16k_mono.opus -map_metadata -1 -fflags +bitexact \
    -flags:a +bitexact -c:a pcm_f32le lossy_16k_mono_opus_libopus_reference_f32.wav

ls -l "$out"
du -sh "$out"
