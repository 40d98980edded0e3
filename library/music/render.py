"""Render a parsed MIDI score to audio with FluidSynth and pretty_midi's bundled General MIDI soundfont.

One pass of the synthesiser plays up to 15 melodic parts and the drums on their own MIDI channels (channel 10, index
9, is percussion in General MIDI). A score with more parts is split into passes that run in lockstep and are mixed.
Audio is produced in blocks and streamed to every sink (FLAC, Ogg Vorbis preview, waveform peaks), so memory stays flat
however long the cue is. The same score always renders to the same samples.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile

from library.music import MusicError

SAMPLE_RATE = 44_100
TAIL_SECONDS = 1.0  # lets the last notes' release and the reverb ring out
BLOCK_FRAMES = 8_192
DRUM_CHANNEL = 9
MELODIC_CHANNELS = tuple(c for c in range(16) if c != DRUM_CHANNEL)
PEAKS_SAMPLES_PER_PIXEL = 512
# libsndfile gives each Ogg stream a random serial number; a fixed one makes the preview reproducible.
OGG_SERIAL = int.from_bytes(b"CUE1", "big")
SOUNDFONT = Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")

# Sort order of simultaneous events: a note must end before the same note starts again, and controllers must be
# set before the notes they shape.
_NOTE_OFF, _CONTROL, _PROGRAM, _NOTE_ON = 0, 1, 1, 2

Progress = Callable[[float], None]


@dataclass(frozen=True)
class RenderedAudio:
    flac: Path
    preview: Path
    peaks: Path
    frames: int
    sample_rate: int = SAMPLE_RATE

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def audio_render(score: pretty_midi.PrettyMIDI, out_dir: Path, *, progress: Progress | None = None) -> RenderedAudio:
    """Render ``score`` into ``out_dir`` as ``audio.flac`` (16-bit stereo, lossless), ``preview.ogg`` (Ogg
    Vorbis: libsndfile's MP3 encoder manages only ~26x real time here, Vorbis ~130x) and ``peaks.json`` (the
    audiowaveform JSON format, version 2: 8-bit min/max pairs per 512 frames of the mono mix).

    ``progress`` is called with the share of frames done, about twenty times, the last time with 1.0.
    """
    total_frames = audio_frames(score)
    paths = RenderedAudio(out_dir / "audio.flac", out_dir / "preview.ogg", out_dir / "peaks.json", total_frames)
    peaks = _Peaks(PEAKS_SAMPLES_PER_PIXEL)
    reporter = _Reporter(total_frames, progress)
    with (
        soundfile.SoundFile(paths.flac, "w", SAMPLE_RATE, 2, format="FLAC", subtype="PCM_16") as flac,
        soundfile.SoundFile(paths.preview, "w", SAMPLE_RATE, 2, format="OGG", subtype="VORBIS") as preview,
    ):
        for block in audio_blocks(score):
            flac.write(block)
            preview.write(block)
            peaks.add(block)
            reporter.advance(len(block))
    ogg_set_serial(paths.preview, OGG_SERIAL)
    reporter.finish()
    paths.peaks.write_text(json.dumps(peaks.document(SAMPLE_RATE), separators=(",", ":")))
    return paths


def audio_frames(score: pretty_midi.PrettyMIDI) -> int:
    """How many frames ``audio_blocks`` yields for ``score``: its length plus the tail."""
    return math.ceil((score.get_end_time() + TAIL_SECONDS) * SAMPLE_RATE)


def audio_blocks(score: pretty_midi.PrettyMIDI) -> Iterator[np.ndarray]:
    """Synthesise ``score`` as (n, 2) int16 blocks at SAMPLE_RATE, at most BLOCK_FRAMES each, without keeping the
    whole performance in memory. Used for files (``audio_render``) and for fingerprints that need no file."""
    fluidsynth = _fluidsynth()
    passes = _assign_channels(score.instruments)
    total_frames = audio_frames(score)
    synths = [_synth(fluidsynth, layout) for layout in passes]
    try:
        cursor = 0
        for frame, _order, synth_index, action, args in sorted(_events(passes)):
            if frame > cursor:
                yield from _mix(synths, frame - cursor)
                cursor = frame
            getattr(synths[synth_index], action)(*args)
        yield from _mix(synths, total_frames - cursor)
    finally:
        for synth in synths:
            synth.delete()


def _fluidsynth():
    try:
        import fluidsynth
    except ImportError as exc:  # pyfluidsynth raises ImportError when libfluidsynth is not installed
        raise MusicError(
            "renderer_unavailable",
            f"FluidSynth cannot be loaded ({exc}); install the Debian package libfluidsynth3.",
        ) from None
    return fluidsynth


def _assign_channels(
    instruments: Iterable[pretty_midi.Instrument],
) -> list[list[tuple[int, pretty_midi.Instrument]]]:
    """Split the parts into synthesiser passes: each pass has 15 melodic channels and one drum channel."""
    passes: list[list[tuple[int, pretty_midi.Instrument]]] = []
    for instrument in instruments:
        if not instrument.notes:
            continue
        for layout in passes:
            used = {channel for channel, _ in layout}
            free = [DRUM_CHANNEL] if instrument.is_drum else [c for c in MELODIC_CHANNELS if c not in used]
            if instrument.is_drum and DRUM_CHANNEL in used:
                free = []
            if free:
                layout.append((free[0], instrument))
                break
        else:
            passes.append([(DRUM_CHANNEL if instrument.is_drum else MELODIC_CHANNELS[0], instrument)])
    return passes


def _synth(fluidsynth, layout: list[tuple[int, pretty_midi.Instrument]]):
    synth = fluidsynth.Synth(samplerate=float(SAMPLE_RATE))
    soundfont = synth.sfload(str(SOUNDFONT))
    if soundfont == -1:
        synth.delete()
        raise MusicError("renderer_unavailable", f"FluidSynth could not load the soundfont {SOUNDFONT}.")
    for channel, instrument in layout:
        synth.program_select(channel, soundfont, 128 if instrument.is_drum else 0, instrument.program)
    return synth


def _events(passes: list[list[tuple[int, pretty_midi.Instrument]]]):
    def frame(seconds: float) -> int:
        return max(0, round(seconds * SAMPLE_RATE))

    for synth_index, layout in enumerate(passes):
        for channel, inst in layout:
            for note in inst.notes:
                yield frame(note.start), _NOTE_ON, synth_index, "noteon", (channel, note.pitch, note.velocity)
                yield frame(note.end), _NOTE_OFF, synth_index, "noteoff", (channel, note.pitch)
            for change in inst.control_changes:
                yield frame(change.time), _CONTROL, synth_index, "cc", (channel, change.number, change.value)
            for bend in inst.pitch_bends:
                yield frame(bend.time), _CONTROL, synth_index, "pitch_bend", (channel, bend.pitch)


def _mix(synths, frames: int):
    """Yield (n, 2) int16 blocks of the summed synthesiser output, ``frames`` frames in all."""
    while frames > 0:
        size = min(frames, BLOCK_FRAMES)
        if len(synths) == 1:
            block = synths[0].get_samples(size).reshape(-1, 2)
        else:
            total = sum(s.get_samples(size).astype(np.int32) for s in synths)
            block = np.clip(total, -32768, 32767).astype(np.int16).reshape(-1, 2)
        yield block
        frames -= size


class _Peaks:
    """Min/max pairs of the mono mix per ``samples_per_pixel`` frames, as 8-bit values."""

    def __init__(self, samples_per_pixel: int) -> None:
        self.samples_per_pixel = samples_per_pixel
        self.pending = np.zeros(0, dtype=np.int32)
        self.data: list[int] = []

    def add(self, block: np.ndarray) -> None:
        mono = np.concatenate([self.pending, block.astype(np.int32).sum(axis=1) // 2])
        whole = len(mono) // self.samples_per_pixel * self.samples_per_pixel
        self._reduce(mono[:whole])
        self.pending = mono[whole:]

    def _reduce(self, mono: np.ndarray) -> None:
        if not len(mono):
            return
        pixels = mono.reshape(-1, self.samples_per_pixel)
        pairs = np.stack([pixels.min(axis=1), pixels.max(axis=1)], axis=1) >> 8
        self.data.extend(pairs.astype(int).ravel().tolist())

    def document(self, sample_rate: int) -> dict:
        self._reduce(np.pad(self.pending, (0, -len(self.pending) % self.samples_per_pixel)))
        self.pending = self.pending[:0]
        return {
            "version": 2,
            "channels": 1,
            "sample_rate": sample_rate,
            "samples_per_pixel": self.samples_per_pixel,
            "bits": 8,
            "length": len(self.data) // 2,
            "data": self.data,
        }


class _Reporter:
    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.callback, self.done, self.next_report = total, callback, 0, 0.05

    def finish(self) -> None:
        if self.callback:
            self.callback(1.0)

    def advance(self, frames: int) -> None:
        self.done += frames
        share = self.done / self.total if self.total else 1.0
        if self.callback and share >= self.next_report and share < 1.0:
            self.callback(share)
            self.next_report = share + 0.05


_BIT_REVERSED = bytes(int(f"{value:08b}"[::-1], 2) for value in range(256))


def ogg_set_serial(path: Path, serial: int) -> None:
    """Give every page of a single-stream Ogg file the stream serial number ``serial`` and fix its checksum.

    Page layout per RFC 3533 section 6: capture pattern "OggS" at 0, serial number at 14 (32-bit little-endian),
    CRC at 22, segment count at 26, then the segment table and the data.
    """
    data = bytearray(path.read_bytes())
    position = 0
    while position < len(data):
        if data[position : position + 4] != b"OggS" or position + 27 > len(data):
            raise MusicError("preview_invalid", f"The encoder wrote a malformed Ogg page at byte {position}.")
        segments = data[position + 26]
        end = position + 27 + segments + sum(data[position + 27 : position + 27 + segments])
        data[position + 14 : position + 18] = serial.to_bytes(4, "little")
        data[position + 22 : position + 26] = bytes(4)
        data[position + 22 : position + 26] = ogg_crc(bytes(data[position:end])).to_bytes(4, "little")
        position = end
    path.write_bytes(data)


def ogg_crc(page: bytes) -> int:
    """The Ogg page checksum (RFC 3533 section 6): CRC-32 with generator 0x04C11DB7, initial value 0, no final
    XOR, bits not reflected. zlib's CRC-32 is the reflected form of the same polynomial, so it is computed over
    bit-reversed bytes, with zlib's pre- and post-inversion undone, and the result bit-reversed."""
    reflected = zlib.crc32(page.translate(_BIT_REVERSED), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return int(f"{reflected:032b}"[::-1], 2)
