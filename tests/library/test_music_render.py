"""Rendering with the real FluidSynth and libsndfile: formats, length, determinism, many parts, progress."""

import hashlib
import json

import numpy as np
import pretty_midi
import pytest
import soundfile

from library.music.midi import midi_read
from library.music.render import (
    OGG_SERIAL,
    PEAKS_SAMPLES_PER_PIXEL,
    SAMPLE_RATE,
    TAIL_SECONDS,
    audio_render,
    ogg_crc,
)
from tests.factories import midi_sketch


def render(tmp_path, data: bytes, **kwargs):
    out = tmp_path / hashlib.sha256(data).hexdigest()[:8]
    out.mkdir()
    return audio_render(midi_read(data, max_duration_seconds=1200), out, **kwargs)


def test_render_writes_lossless_flac_at_44_1_khz_for_the_whole_cue(tmp_path):
    data = midi_sketch(bars=4, tempo_bpm=120, drums=True)  # 8 seconds
    rendered = render(tmp_path, data)
    info = soundfile.info(rendered.flac)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", SAMPLE_RATE, 2)
    expected = pretty_midi.PrettyMIDI(str(_save(tmp_path, data))).get_end_time() + TAIL_SECONDS
    assert info.frames == rendered.frames
    assert info.frames / SAMPLE_RATE == pytest.approx(expected, abs=1 / SAMPLE_RATE)
    audio, _ = soundfile.read(rendered.flac, dtype="int16")
    assert np.abs(audio).max() > 1000  # there is sound, not silence


def test_preview_is_ogg_vorbis_of_the_same_length(tmp_path):
    rendered = render(tmp_path, midi_sketch(bars=4))
    info = soundfile.info(rendered.preview)
    assert (info.format, info.subtype, info.channels) == ("OGG", "VORBIS", 2)
    assert info.frames == pytest.approx(rendered.frames, abs=SAMPLE_RATE * 0.05)


def test_the_same_score_renders_to_the_same_bytes(tmp_path):
    data = midi_sketch(bars=4, drums=True, seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = render(tmp_path / "a", data), render(tmp_path / "b", data)
    for left, right in (
        (first.flac, second.flac),
        (first.preview, second.preview),
        (first.peaks, second.peaks),
    ):
        assert left.read_bytes() == right.read_bytes()


def test_peaks_follow_the_audiowaveform_json_format(tmp_path):
    rendered = render(tmp_path, midi_sketch(bars=2))
    peaks = json.loads(rendered.peaks.read_text())
    assert {k: peaks[k] for k in ("version", "channels", "sample_rate", "bits")} == {
        "version": 2,
        "channels": 1,
        "sample_rate": SAMPLE_RATE,
        "bits": 8,
    }
    assert peaks["samples_per_pixel"] == PEAKS_SAMPLES_PER_PIXEL
    assert peaks["length"] == -(-rendered.frames // PEAKS_SAMPLES_PER_PIXEL)
    assert len(peaks["data"]) == 2 * peaks["length"]
    assert all(-128 <= value <= 127 for value in peaks["data"])
    mins, maxes = peaks["data"][0::2], peaks["data"][1::2]
    assert all(low <= high for low, high in zip(mins, maxes, strict=True))


def test_more_than_fifteen_melodic_parts_are_all_heard(tmp_path):
    """Parts beyond one synthesiser's 15 melodic channels go to a second pass; a part played alone in the second
    pass must still be audible in the mix."""
    score = pretty_midi.PrettyMIDI()
    for program in range(16):  # 15 silent-ish parts (velocity 1) fill the first pass, the 16th is loud
        part = pretty_midi.Instrument(program=program)
        part.notes.append(pretty_midi.Note(1 if program < 15 else 120, 60, 0.0, 1.0))
        score.instruments.append(part)
    out = tmp_path / "many"
    out.mkdir()
    rendered = audio_render(score, out)
    audio, _ = soundfile.read(rendered.flac, dtype="int16")
    assert np.abs(audio[: SAMPLE_RATE // 2]).max() > 1000


def test_progress_is_reported_up_to_completion(tmp_path):
    shares: list[float] = []
    render(tmp_path, midi_sketch(bars=8), progress=shares.append)
    assert 5 <= len(shares) <= 21
    assert shares == sorted(shares)
    assert shares[-1] == pytest.approx(1.0)


def _save(tmp_path, data: bytes):
    path = tmp_path / "score.mid"
    path.write_bytes(data)
    return path


def test_ogg_crc_matches_the_checksums_libsndfile_wrote(tmp_path):
    """Every page of a preview as the encoder left it carries a checksum our CRC reproduces."""
    path = tmp_path / "raw.ogg"
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 2, format="OGG", subtype="VORBIS") as ogg:
        ogg.write((np.sin(np.arange(SAMPLE_RATE * 2) / 9) * 8000).astype(np.int16).repeat(2).reshape(-1, 2))
    data, position, pages = path.read_bytes(), 0, 0
    while position < len(data):
        segments = data[position + 26]
        end = position + 27 + segments + sum(data[position + 27 : position + 27 + segments])
        page = bytearray(data[position:end])
        stored = int.from_bytes(page[22:26], "little")
        page[22:26] = bytes(4)
        assert ogg_crc(bytes(page)) == stored
        position, pages = end, pages + 1
    assert pages >= 3


def test_a_preview_with_a_fixed_serial_still_decodes_completely(tmp_path):
    rendered = render(tmp_path, midi_sketch(bars=2))
    decoded, rate = soundfile.read(rendered.preview, dtype="int16")
    assert rate == SAMPLE_RATE and len(decoded) == pytest.approx(rendered.frames, abs=SAMPLE_RATE * 0.05)
    assert rendered.preview.read_bytes()[14:18] == OGG_SERIAL.to_bytes(4, "little")
