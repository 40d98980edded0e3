"""The acoustic detector, with real Chromaprint on synthesised tones and a short FluidSynth render."""

import io
import json

import numpy as np
import pretty_midi
import pytest
import soundfile

from library.fingerprints import FingerprintError
from library.fingerprints.acoustic import (
    DEFAULT_THRESHOLD,
    SECONDS_PER_ITEM,
    AcousticFingerprint,
    AcousticIndex,
    AcousticMatch,
    acoustic_fingerprint_blocks,
    acoustic_fingerprint_file,
)
from library.music.render import audio_render
from library.music.sketch import Sketch, sketch_midi

RATE = 22_050


def melody(seed: int, seconds: float) -> np.ndarray:
    """Mono float32 music-like audio: a random pentatonic tune of decaying harmonic tones over a drifting bass."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * RATE), dtype=np.float64)
    position = 0
    while position < len(out):
        length = int(RATE * rng.choice([0.2, 0.3, 0.4, 0.6]))
        pitch = 57 + rng.choice([0, 2, 4, 7, 9, 12, 14, 16, 19, 21])
        bass = 45 + rng.choice([0, 5, 7])
        t = np.arange(length) / RATE
        envelope = np.exp(-3.0 * t)
        tone = sum(np.sin(2 * np.pi * 440 * 2 ** ((pitch - 69) / 12) * k * t) / k for k in (1, 2, 3))
        tone += 0.5 * np.sin(2 * np.pi * 440 * 2 ** ((bass - 69) / 12) * t)
        end = min(len(out), position + length)
        out[position:end] = (0.25 * envelope * tone)[: end - position]
        position = end
    return out.astype(np.float32)


def fingerprint(audio: np.ndarray) -> AcousticFingerprint:
    return acoustic_fingerprint_blocks([audio[:, None]], sample_rate=RATE, channels=1)


@pytest.fixture(scope="module")
def tunes() -> dict[int, np.ndarray]:
    return {seed: melody(seed, 30.0) for seed in range(4)}


@pytest.fixture(scope="module")
def index(tunes) -> AcousticIndex:
    index = AcousticIndex()
    for seed in (0, 1, 2):
        index.add(100 + seed, fingerprint(tunes[seed]))
    index.freeze()
    return index


@pytest.fixture(scope="module")
def render(tmp_path_factory):
    score = pretty_midi.PrettyMIDI(io.BytesIO(sketch_midi(Sketch(tempo_bpm=160, bars=8, seed=3, drums=True))))
    out = tmp_path_factory.mktemp("render")
    return audio_render(score, out)


# --- fingerprinting ---


def test_every_supported_format_of_a_render_matches_its_flac(render, tmp_path):
    # given the FLAC of a FluidSynth render and its re-encodings as WAV, Ogg Vorbis and MP3
    samples, rate = soundfile.read(render.flac, dtype="float32")
    paths = {"wav": tmp_path / "a.wav", "ogg": render.preview, "mp3": tmp_path / "a.mp3"}
    soundfile.write(paths["wav"], samples, rate)
    soundfile.write(paths["mp3"], samples, rate, format="MP3", subtype="MPEG_LAYER_III")
    index = AcousticIndex()
    index.add(1, acoustic_fingerprint_file(render.flac))
    # when each file is fingerprinted and looked up
    results = {kind: index.query(acoustic_fingerprint_file(path)) for kind, path in paths.items()}
    # then each one matches the FLAC over most of its length, far above the default threshold
    for kind, matches in results.items():
        assert [m.reference_id for m in matches] == [1], kind
        assert matches[0].score > max(0.9, DEFAULT_THRESHOLD), kind
        assert matches[0].matched_seconds > render.seconds - 5, kind
        assert abs(matches[0].offset_seconds) < SECONDS_PER_ITEM, kind


def test_fingerprint_does_not_depend_on_block_size_or_sample_format(tunes):
    # given the same stereo audio as float32 in one block, and as int16 in uneven blocks
    stereo = np.repeat(tunes[0][:, None], 2, axis=1)
    as_int16 = np.round(stereo * 32767).astype(np.int16)
    pieces = np.array_split(as_int16, [1000, 1001, 50_000, 200_000])
    # when both are fingerprinted
    whole = acoustic_fingerprint_blocks([stereo], sample_rate=RATE, channels=2)
    split = acoustic_fingerprint_blocks(pieces, sample_rate=RATE, channels=2)
    # then the items are the same and the duration is the audio's
    assert np.array_equal(whole.items, split.items)
    assert whole.duration_seconds == pytest.approx(30.0)
    assert len(whole.items) == pytest.approx((30.0 - 2.7) / SECONDS_PER_ITEM, abs=3)


def test_fingerprint_bytes_round_trip_and_digest(tunes):
    # given a fingerprint
    original = fingerprint(tunes[1])
    # when it is encoded and decoded
    copy = AcousticFingerprint.from_bytes(original.to_bytes())
    # then nothing is lost, the digest is stable, and it is 4 bytes per item plus a small header
    assert np.array_equal(copy.items, original.items)
    assert copy.duration_seconds == original.duration_seconds
    assert copy.digest == original.digest and len(copy.digest) == 64
    assert len(original.to_bytes()) == 4 * len(original.items) + 24


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],
        lambda b: b[:10],
        lambda b: b"",
        lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],
        lambda b: b"XXXX" + b[4:],
        lambda b: "text",
    ],
    ids=["last-byte-missing", "truncated", "empty", "bit-flip", "bad-magic", "not-bytes"],
)
def test_damaged_fingerprint_bytes_are_rejected(tunes, damage):
    # given damaged fingerprint bytes
    data = damage(fingerprint(tunes[1]).to_bytes())
    # when they are decoded, then a stable error code says so
    with pytest.raises(FingerprintError) as error:
        AcousticFingerprint.from_bytes(data)
    assert error.value.code == "fingerprint_corrupt"


def test_unreadable_files_are_reported(tmp_path):
    # given a file that is not audio, a truncated FLAC and a path that does not exist
    garbage = tmp_path / "garbage.flac"
    garbage.write_bytes(b"not audio at all" * 100)
    truncated = tmp_path / "truncated.flac"
    soundfile.write(truncated, melody(5, 20.0), RATE)
    truncated.write_bytes(truncated.read_bytes()[:3000])
    for path in (garbage, tmp_path / "missing.wav", truncated):
        # when each is fingerprinted, then the error is audio_unreadable (or too short, for the surviving start)
        with pytest.raises(FingerprintError) as error:
            acoustic_fingerprint_file(path)
        assert error.value.code in {"audio_unreadable", "audio_too_short"}, path.name
    with pytest.raises(FingerprintError) as error:
        acoustic_fingerprint_file(garbage)
    assert error.value.code == "audio_unreadable"


@pytest.mark.parametrize(
    ("blocks", "code"),
    [
        ([np.zeros((RATE * 20, 1), dtype=np.float32)], "audio_silent"),
        ([np.full((RATE * 20, 1), 1e-5, dtype=np.float32)], "audio_silent"),
        ([melody(7, 4.0)[:, None]], "audio_too_short"),
        ([], "audio_too_short"),
        ([np.full((RATE, 1), np.nan, dtype=np.float32)], "audio_unreadable"),
        ([np.zeros((RATE, 3), dtype=np.float32)], "audio_unreadable"),
        ([np.zeros((RATE, 1), dtype=np.int32)], "audio_unreadable"),
    ],
    ids=["silence", "below-60dBFS", "four-seconds", "no-blocks", "nan", "wrong-channels", "int32"],
)
def test_bad_audio_gets_a_stable_error_code(blocks, code):
    # when bad audio is fingerprinted, then the error names the problem
    with pytest.raises(FingerprintError) as error:
        acoustic_fingerprint_blocks(blocks, sample_rate=RATE, channels=1)
    assert error.value.code == code


# --- matching ---


def test_exact_copy_matches_only_itself_with_full_score(index, tunes):
    # when a reference's own audio is the query
    matches = index.query(fingerprint(tunes[1]))
    # then it matches itself alone, perfectly, over its whole length
    assert [m.reference_id for m in matches] == [101]
    best = matches[0]
    assert best.score == 1.0 and best.offset_seconds == 0.0
    assert best.matched_seconds > 25
    assert all(ber == 0.0 for _, ber in best.ber_curve)


def test_exclude_leaves_the_reference_out(index, tunes):
    # when a reference is queried against the rest
    matches = index.query(fingerprint(tunes[1]), exclude=101)
    # then it does not find itself, and nothing else resembles it
    assert matches == []


def test_unrelated_audio_matches_nothing(index, tunes):
    assert index.query(fingerprint(tunes[3])) == []


def test_excerpt_is_found_with_its_time_alignment(index, tunes):
    # given a 15 s excerpt starting 10 s into a reference, at a sample offset that is not a whole item
    start = 10.0 + 0.03
    excerpt = tunes[2][int(start * RATE) : int((start + 15) * RATE)]
    # when it is looked up
    matches = index.query(fingerprint(excerpt))
    # then the reference is found with the cue's start aligned to about 10 s of the reference
    assert [m.reference_id for m in matches] == [102]
    best = matches[0]
    assert best.offset_seconds == pytest.approx(start, abs=SECONDS_PER_ITEM)
    segment = best.segments[0]
    assert segment.cue_start == pytest.approx(0.0, abs=1.0)
    assert segment.reference_start - segment.cue_start == pytest.approx(start, abs=SECONDS_PER_ITEM)
    assert segment.bit_error_rate < 0.15 and best.score > DEFAULT_THRESHOLD


def test_recording_embedded_in_a_longer_cue_is_located(index, tunes):
    # given a cue of unrelated music with 12 s of a reference (from its second 5) placed at second 8
    other = tunes[3]
    cue = np.concatenate([other[: 8 * RATE], tunes[0][5 * RATE : 17 * RATE], other[8 * RATE :]])
    # when it is looked up
    match = index.query(fingerprint(cue))[0]
    # then the reference is found, and the matching segment and the low part of the error curve sit at 8-20 s
    assert match.reference_id == 100
    assert len(match.segments) == 1
    segment = match.segments[0]
    assert 7.0 <= segment.cue_start <= 9.0 and 15.0 <= segment.cue_end <= 20.5
    assert segment.reference_start - segment.cue_start == pytest.approx(-3.0, abs=SECONDS_PER_ITEM)
    curve = dict(match.ber_curve)
    assert curve[12.0] < 0.1
    assert min(ber for second, ber in curve.items() if second >= 24) > 0.25


def test_a_looped_recording_scores_its_true_alignment():
    # given a reference whose 6 s backing repeats four times under a changing lead, so that it also aligns with
    # itself 6 and 12 s apart, less well than with no shift
    backing = np.tile(melody(11, 6.0), 4)
    lead = np.concatenate([melody(20 + n, 6.0) for n in range(4)])
    loop = (backing + 0.35 * lead).astype(np.float32)
    index = AcousticIndex()
    index.add(1, fingerprint(loop))
    # when the same recording is looked up
    match = index.query(fingerprint(loop))[0]
    # then the score is that of the perfect alignment, not diluted by the repetitions
    assert match.score == 1.0 and match.offset_seconds == 0.0


def test_light_edits_still_match(index, tunes):
    # given a reference made quieter and with noise 30 dB below the music
    rng = np.random.default_rng(0)
    audio = tunes[0]
    noisy = 0.5 * audio + rng.normal(0, 0.5 * np.sqrt(np.mean(audio**2)) * 10 ** (-30 / 20), len(audio))
    # when it is looked up, then it matches above the default threshold
    match = index.query(fingerprint(noisy.astype(np.float32)))[0]
    assert match.reference_id == 100 and match.score > DEFAULT_THRESHOLD


def test_drones_and_repetition_create_no_matches():
    # given references and queries that are held tones: the same drone, and a slowly swelling chord
    t = np.arange(20 * RATE) / RATE
    drone = (0.3 * np.sin(2 * np.pi * 110 * t)).astype(np.float32)
    chord = (sum(np.sin(2 * np.pi * f * t) for f in (220, 277.2, 329.6)) * 0.1 * (0.5 + t / 40)).astype(np.float32)
    index = AcousticIndex()
    index.add(1, fingerprint(drone))
    index.add(2, fingerprint(chord))
    # when the same sounds are looked up, then nothing matches: they carry no information
    assert index.query(fingerprint(drone)) == []
    assert index.query(fingerprint(chord)) == []


def test_empty_and_single_reference_indexes(tunes):
    # given an empty index and an index of one reference
    empty, single = AcousticIndex(), AcousticIndex()
    single.add(7, fingerprint(tunes[0]))
    query = fingerprint(tunes[0])
    # when queried, then the empty one finds nothing and the single one finds its reference
    assert len(empty) == 0 and empty.query(query) == []
    assert len(single) == 1 and [m.reference_id for m in single.query(query)] == [7]
    assert single.reference_ids() == [7]
    assert np.array_equal(single.fingerprint(7).items, query.items)


def test_adding_after_a_query_and_duplicate_ids(tunes):
    # given an index that has already answered a query
    index = AcousticIndex()
    index.add(1, fingerprint(tunes[0]))
    assert index.query(fingerprint(tunes[1])) == []
    # when another reference is added, then the next query sees it
    index.add(2, fingerprint(tunes[1]))
    assert [m.reference_id for m in index.query(fingerprint(tunes[1]))] == [2]
    # and an id cannot be added twice
    with pytest.raises(FingerprintError) as error:
        index.add(2, fingerprint(tunes[2]))
    assert error.value.code == "reference_duplicate"


def test_match_as_dict_is_json_safe(index, tunes):
    match = index.query(fingerprint(tunes[2][5 * RATE :]))[0]
    data = json.loads(json.dumps(match.as_dict()))
    assert isinstance(match, AcousticMatch)
    assert data["reference_id"] == 102
    assert data["segments"][0]["reference_start"] == pytest.approx(5.0, abs=0.2)
    assert len(data["ber_curve"]) >= 20 and all(len(point) == 2 for point in data["ber_curve"])


# --- persistence ---


def test_saved_index_answers_like_the_original(index, tunes, tmp_path):
    # given a saved and reloaded index
    path = tmp_path / "acoustic.idx"
    index.save(path)
    loaded = AcousticIndex.load(path)
    query = fingerprint(tunes[2][3 * RATE : 20 * RATE])
    # then it holds the same references and answers the same
    assert loaded.reference_ids() == index.reference_ids()
    assert loaded.memory_bytes() == index.memory_bytes()
    assert loaded.query(query) == index.query(query)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b[:-1],
        lambda b: b"",
        lambda b: b[:200] + bytes([b[200] ^ 0x10]) + b[201:],
        lambda b: b"\x00" * len(b),
    ],
    ids=["half", "last-byte-missing", "empty", "bit-flip", "zeros"],
)
def test_damaged_index_file_is_rejected(index, tmp_path, damage):
    # given an index file damaged the way a crash or a bad disk would
    path = tmp_path / "acoustic.idx"
    index.save(path)
    path.write_bytes(damage(path.read_bytes()))
    # when it is loaded, then a stable error code says so
    with pytest.raises(FingerprintError) as error:
        AcousticIndex.load(path)
    assert error.value.code == "index_corrupt"


def test_missing_index_file_is_reported_as_corrupt(tmp_path):
    with pytest.raises(FingerprintError) as error:
        AcousticIndex.load(tmp_path / "nothing.idx")
    assert error.value.code == "index_corrupt"
