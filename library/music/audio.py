"""Recordings brought in from outside: what they are, and turning them into the catalog's FLAC master, Ogg preview
and waveform peaks (the same files ``render.audio_render`` makes from MIDI).

libsndfile decodes WAV, FLAC, Ogg Vorbis and MP3. The sample rate of the recording is kept: resampling would change
the uploader's audio, and Chromaprint resamples on its own for fingerprints.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from library.music import MusicError
from library.music.render import (
    BLOCK_FRAMES,
    OGG_SERIAL,
    PEAKS_SAMPLES_PER_PIXEL,
    Progress,
    RenderedAudio,
    _Peaks,
    _Reporter,
    ogg_set_serial,
)

# What libsndfile calls the containers accepted, and the media type each is stored under.
AUDIO_MEDIA_TYPES = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}


@dataclass(frozen=True)
class AudioInfo:
    media_type: str
    duration_seconds: float
    sample_rate: int
    channels: int


def audio_inspect(path: Path, *, max_duration_seconds: float) -> AudioInfo:
    """What a recording is, or a MusicError: ``audio_unreadable``, ``audio_unsupported``, ``audio_too_long``,
    ``audio_empty``."""
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise MusicError(
            "audio_unreadable", f"The audio file cannot be decoded as WAV, FLAC, Ogg or MP3 ({_reason(exc)})."
        ) from None
    media_type = AUDIO_MEDIA_TYPES.get(info.format)
    if media_type is None:
        raise MusicError("audio_unsupported", f"{info.format_info} audio is not accepted; use WAV, FLAC, Ogg or MP3.")
    if not math.isfinite(info.duration) or info.duration > max_duration_seconds:
        raise MusicError(
            "audio_too_long", f"The recording lasts {info.duration:.0f} s; the limit is {max_duration_seconds:.0f} s."
        )
    if info.frames <= 0 or info.channels <= 0:
        raise MusicError("audio_empty", "The recording holds no audio.")
    return AudioInfo(media_type, float(info.duration), int(info.samplerate), int(info.channels))


def audio_transcode(source: Path, out_dir: Path, *, progress: Progress | None = None) -> RenderedAudio:
    """Decode a recording in blocks into ``out_dir`` as ``audio.flac`` (16-bit stereo), ``preview.ogg`` (Ogg
    Vorbis) and ``peaks.json`` (audiowaveform JSON, version 2), at the recording's own sample rate. Mono is played
    on both sides; more than two channels are mixed down to both. Memory stays flat however long it is."""
    info = soundfile.info(str(source))
    rate = int(info.samplerate)
    paths = RenderedAudio(out_dir / "audio.flac", out_dir / "preview.ogg", out_dir / "peaks.json", 0, rate)
    peaks = _Peaks(PEAKS_SAMPLES_PER_PIXEL)
    reporter = _Reporter(int(info.frames), progress)
    frames = 0
    try:
        with (
            soundfile.SoundFile(paths.flac, "w", rate, 2, format="FLAC", subtype="PCM_16") as flac,
            soundfile.SoundFile(paths.preview, "w", rate, 2, format="OGG", subtype="VORBIS") as preview,
        ):
            for block in soundfile.blocks(str(source), blocksize=BLOCK_FRAMES, dtype="int16", always_2d=True):
                stereo = _stereo(block)
                flac.write(stereo)
                preview.write(stereo)
                peaks.add(stereo)
                reporter.advance(len(stereo))
                frames += len(stereo)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise MusicError(
            "audio_unreadable", f"The recording could not be decoded to the end ({_reason(exc)})."
        ) from None
    if not frames:
        raise MusicError("audio_empty", "The recording holds no audio.")
    ogg_set_serial(paths.preview, OGG_SERIAL)
    reporter.finish()
    paths.peaks.write_text(json.dumps(peaks.document(rate), separators=(",", ":")))
    return RenderedAudio(paths.flac, paths.preview, paths.peaks, frames, rate)


def _stereo(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 2:
        return block
    mono = block.astype(np.int32).mean(axis=1).astype(np.int16) if block.shape[1] > 2 else block[:, 0]
    return np.repeat(mono[:, None], 2, axis=1)


def _reason(exc: Exception) -> str:
    """libsndfile's reason without the file name it starts with (a scratch path on this server)."""
    text = str(exc)
    return text.rsplit(": ", 1)[-1].strip() if ": " in text else text
