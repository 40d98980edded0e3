"""Importing reference works: identifiers, fingerprints, refusals that leave nothing behind, the corpus version."""

import io

import numpy as np
import pytest
import soundfile

from library.errors import LibraryError
from library.fingerprints.acoustic import AcousticFingerprint
from library.fingerprints.symbolic import SymbolicFingerprint
from library.models import Artifact, ReferenceWork
from library.services.references import ReferenceInput, isrc_normalise, iswc_normalise, reference_import
from library.services.similarity import corpus_version
from tests.factories import midi_from_tracks, notes, tune, tune_midi

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("given", "normalised"),
    [
        ("T-034.524.680-1", "T-034.524.680-1"),  # the example of ISO 15707's check digit
        ("t0345246801", "T-034.524.680-1"),
        ("T-000.000.001-0", "T-000.000.001-0"),
        ("", ""),
    ],
)
def test_iswcs_are_normalised(given, normalised):
    assert iswc_normalise(given) == normalised


@pytest.mark.parametrize("given", ["T-034.524.680-2", "T-034.524.68-1", "X-034.524.680-1", "T-034.524.680"])
def test_bad_iswcs_are_refused(given):
    with pytest.raises(LibraryError) as refused:
        iswc_normalise(given)
    assert refused.value.code == "iswc_invalid"


def test_isrcs_are_normalised_and_bad_ones_refused():
    assert isrc_normalise("us-rc1-76-07839") == "USRC17607839"
    for bad in ("USRC1760783", "U1RC17607839", "USRC17607839X"):
        with pytest.raises(LibraryError) as refused:
            isrc_normalise(bad)
        assert refused.value.code == "isrc_invalid"


def test_a_midi_reference_gets_both_fingerprints_and_bumps_the_corpus(legal):
    before = corpus_version()

    work = reference_import(
        created_by=legal,
        work=ReferenceInput(title=" Theme ", midi=tune_midi(tune(1)), composers=["A. Composer"], iswc="T0345246801"),
    )

    work.refresh_from_db()
    assert work.title == "Theme" and work.iswc == "T-034.524.680-1" and work.composers == ["A. Composer"]
    symbolic = SymbolicFingerprint.from_bytes(bytes(work.symbolic_fingerprint))
    assert symbolic.line_count == 2  # the melody, and the top line of the chords (one a bar, eight bars)
    assert symbolic.note_count == len(tune(1)) + 8
    assert AcousticFingerprint.from_bytes(bytes(work.acoustic_fingerprint)).duration_seconds > 15
    after = corpus_version()
    assert (after.revision, after.count) == (before.revision + 1, before.count + 1)
    assert after.digest != before.digest


def test_a_recording_is_decoded_and_fingerprinted(legal):
    seconds = np.arange(44_100 * 12) / 44_100
    tones = np.sin(2 * np.pi * (220 + 110 * np.floor(seconds * 2) % 440) * seconds) * 0.3
    wav = io.BytesIO()
    soundfile.write(wav, tones.astype(np.float32), 44_100, format="WAV")

    work = reference_import(created_by=legal, work=ReferenceInput(title="Recording", audio=wav.getvalue()))

    assert work.audio.media_type == "audio/wav" and work.midi is None
    assert work.symbolic_fingerprint is None and work.acoustic_fingerprint is not None


def test_a_drum_track_has_no_melody_but_still_sounds(legal):
    drums = midi_from_tracks(notes([36, 38, 42, 38] * 8, channel=9))

    work = reference_import(created_by=legal, work=ReferenceInput(title="Groove", midi=drums))

    assert work.symbolic_fingerprint is None
    assert work.fingerprint_notes["symbolic"]["code"] == "no_melodic_content"
    assert work.acoustic_fingerprint is not None


@pytest.mark.parametrize(
    ("work", "code"),
    [
        (ReferenceInput(title="", midi=b"MThd"), "title_required"),
        (ReferenceInput(title="No files"), "file_required"),
        (ReferenceInput(title="Garbage", midi=b"not a midi file"), "midi_invalid"),
        (ReferenceInput(title="Garbage audio", audio=b"RIFF....WAVEfmt nonsense"), "audio_unreadable"),
        (ReferenceInput(title="Empty", audio=b""), "file_empty"),
        (ReferenceInput(title="Bad id", midi=b"x", iswc="T-1"), "iswc_invalid"),
    ],
)
def test_refused_works_leave_no_row_no_file_and_no_corpus_change(legal, work, code, private_files):
    before = corpus_version()

    with pytest.raises(LibraryError) as refused:
        reference_import(created_by=legal, work=work)

    assert refused.value.code == code
    assert not ReferenceWork.objects.exists() and not Artifact.objects.exists()
    assert corpus_version() == before
    assert not [p for p in private_files.rglob("*") if p.is_file()] if private_files.exists() else True


def test_silent_audio_alone_is_refused_as_unusable(legal):
    wav = io.BytesIO()
    soundfile.write(wav, np.zeros(44_100 * 10, dtype=np.float32), 44_100, format="WAV")

    with pytest.raises(LibraryError) as refused:
        reference_import(created_by=legal, work=ReferenceInput(title="Silence", audio=wav.getvalue()))

    assert refused.value.code == "reference_unusable"
    assert "silent" in refused.value.detail
