"""Cues imported as recordings: stored as uploaded, transcoded to the catalog's files, checked acoustically."""

import io

import numpy as np
import pytest
import soundfile
from django.core.files.storage import default_storage

from library.errors import LibraryError
from library.models import Artifact, Cue, ProcessingJob
from library.services import cue_ingest, cue_render
from library.services.references import ReferenceInput, reference_import
from library.services.similarity import cue_similarity_check
from provenance.content_credentials import read as read_credentials
from provenance.models import OutboxRecord
from tests.factories import midi_sketch, tune, tune_midi

pytestmark = pytest.mark.django_db


def recording(*, seconds: float = 8.0, rate: int = 48_000, channels: int = 1, fmt: str = "WAV") -> bytes:
    """A chord that swells and fades, as a file in memory."""
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)) / 3
    signal = (0.5 * tone * np.sin(np.pi * t / seconds)).astype(np.float32)
    data = np.repeat(signal[:, None], channels, axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, data, rate, format=fmt, subtype="PCM_16" if fmt in ("WAV", "FLAC") else None)
    return buffer.getvalue()


def rendered(cue: Cue) -> Cue:
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    cue.refresh_from_db()
    return cue


def test_a_recording_alone_becomes_a_cue_analysed_from_its_audio(producer):
    data = recording(seconds=8.0, rate=48_000)

    cue = cue_ingest(
        created_by=producer, title="Field Recording", audio=data, claimed_origin={"tool": "Another Studio"}
    )

    assert cue.midi is None and cue.source_audio.media_type == "audio/wav"
    assert default_storage.open(cue.source_audio.storage_name).read() == data
    assert cue.duration_seconds == pytest.approx(8.0, abs=0.01) and cue.tempo_bpm is None
    assert cue.analysis_detail["analysed_from"] == "audio"
    record = OutboxRecord.objects.get()
    assert record.kind == "ingest"
    assert record.subjects == [[f"{cue.code}.source.wav", cue.source_audio_id]]
    assert record.predicate["artifact"] == {"media_type": "audio/wav", "size": len(data)}
    assert record.predicate["claimed_origin"] == {"tool": "Another Studio"}


def test_a_recording_is_transcoded_at_its_own_rate_to_stereo_flac_with_credentials(producer, settings):
    cue = rendered(cue_ingest(created_by=producer, title="Mono at 48k", audio=recording(rate=48_000, channels=1)))

    assert cue.status == Cue.Status.READY
    with default_storage.open(cue.audio.storage_name) as handle:
        info = soundfile.info(handle)
    assert (info.samplerate, info.channels, info.format) == (48_000, 2, "FLAC")
    assert info.duration == pytest.approx(8.0, abs=0.01)
    assert cue.midi_credentials is None and cue.preview_credentials is not None
    report = read_credentials(
        default_storage.path(cue.audio.storage_name),
        trust_anchors_pem=settings.CUELEDGER_C2PA_TRUST_ANCHORS.read_bytes(),
    )
    assert report.valid, report.errors
    assert [action["action"] for action in report.actions] == ["c2pa.opened"]  # received, not made here


def test_midi_and_recording_together_keep_the_recording_as_the_master(producer):
    midi = midi_sketch(tempo_bpm=120, bars=4)
    cue = cue_ingest(created_by=producer, title="Both", midi=midi, audio=recording(seconds=8.0, rate=44_100))
    record = OutboxRecord.objects.get(kind="ingest")
    assert [name for name, _ in record.subjects] == [f"{cue.code}.mid", f"{cue.code}.source.wav"]
    assert record.predicate["recording"]["media_type"] == "audio/wav"

    cue = rendered(cue)

    assert cue.tempo_bpm == 120.0 and cue.analysis_detail["analysed_from"] == "midi"
    with default_storage.open(cue.audio.storage_name) as handle:
        audio = soundfile.read(handle)[0]
    with default_storage.open(cue.source_audio.storage_name) as handle:
        source = soundfile.read(handle)[0]
    assert np.allclose(audio[:, 0], source, atol=1e-4)  # the uploaded sound, not a rendering of the MIDI


def test_a_recording_alone_is_checked_by_the_acoustic_detector_only(producer, legal):
    copied = tune_midi(tune(3), tempo_bpm=110)
    reference_import(created_by=legal, work=ReferenceInput(title="Protected", midi=copied), recheck=False)
    # The protected work, recorded elsewhere: our own rendering of it stands in for the recording.
    original = rendered(cue_ingest(created_by=producer, title="Source", midi=copied))
    with default_storage.open(original.audio.storage_name) as handle:
        recorded = handle.read()
    cue = rendered(cue_ingest(created_by=producer, title="Uploaded copy", audio=recorded))

    cue_similarity_check(job_id=cue.jobs.get(kind="similarity", state=ProcessingJob.State.QUEUED).pk)

    report = cue.similarity_reports.get()
    assert report.detectors["symbolic"]["ran"] is False and report.detectors["symbolic"]["code"] == "midi_missing"
    assert report.verdict == "flag"
    assert {m["detector"] for m in report.matches} == {"acoustic"}


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEnot really", "audio_unreadable"),
        (b"", "file_empty"),
    ],
)
def test_a_bad_recording_is_refused_and_leaves_nothing(producer, private_files, data, code):
    with pytest.raises(LibraryError) as refused:
        cue_ingest(created_by=producer, title="Broken", audio=data)
    assert refused.value.code == code
    assert not Cue.objects.exists() and not Artifact.objects.exists() and not OutboxRecord.objects.exists()
    media = private_files
    assert not media.exists() or not any(p.is_file() for p in media.rglob("*"))


def test_a_recording_over_the_duration_limit_is_refused(producer, settings):
    settings.CUELEDGER_MAX_DURATION_SECONDS = 5
    with pytest.raises(LibraryError) as refused:
        cue_ingest(created_by=producer, title="Too long", audio=recording(seconds=6.0))
    assert refused.value.code == "audio_too_long"
    assert not Cue.objects.exists()


def test_a_cue_needs_a_file(producer):
    with pytest.raises(LibraryError) as refused:
        cue_ingest(created_by=producer, title="Nothing")
    assert refused.value.code == "file_required"
