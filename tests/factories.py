"""Test data: users in roles, API clients, and MIDI files good and bad."""

import io
import itertools
import random

import mido
import pretty_midi
from rest_framework.test import APIClient

from cueledger.roles import user_create
from library.music.sketch import Sketch, sketch_midi

_names = itertools.count(1)


def user_in_role(role: str):
    user, token = user_create(username=f"{role}-{next(_names)}", role=role)
    user.api_token = token
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.api_token}")
    return client


def midi_sketch(**fields) -> bytes:
    return sketch_midi(Sketch(**fields))


def midi_from_tracks(*tracks: list[mido.Message | mido.MetaMessage], ticks_per_beat: int = 480, kind: int = 1) -> bytes:
    """A Standard MIDI File built message by message, for inputs the sketch writer would never make."""
    smf = mido.MidiFile(type=kind, ticks_per_beat=ticks_per_beat)
    for messages in tracks:
        smf.tracks.append(mido.MidiTrack(messages))
    buffer = io.BytesIO()
    smf.save(file=buffer)
    return buffer.getvalue()


def notes(pitches, *, ticks: int = 480, program: int | None = None, channel: int = 0) -> list:
    messages = [mido.Message("program_change", program=program, channel=channel)] if program is not None else []
    for pitch in pitches:
        messages += [
            mido.Message("note_on", note=pitch, velocity=90, channel=channel, time=0),
            mido.Message("note_off", note=pitch, velocity=0, channel=channel, time=ticks),
        ]
    return messages


def tune(seed: int, *, bars: int = 8) -> list[tuple[float, float, int]]:
    """A random-walk melody in 4/4 as (onset in beats, length in beats, MIDI pitch): leaps and steps, varied
    rhythms, so that tunes of different seeds are unrelated and a tune is not a scale."""
    rng = random.Random(seed)
    rhythms = ((1.0,), (0.5, 0.5), (1.5, 0.5), (0.5, 0.25, 0.25), (2.0,), (0.75, 0.25))
    pitch, melody, beat = 60 + rng.randrange(-5, 6), [], 0.0
    while beat < bars * 4:
        for length in rng.choice(rhythms):
            if beat >= bars * 4:
                break
            pitch = min(84, max(48, pitch + rng.choice((-7, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 7, 0))))
            melody.append((beat, length, pitch))
            beat += length
    return melody


def tune_midi(
    *parts: list[tuple[float, float, int]],
    tempo_bpm: float = 100.0,
    transpose: int = 0,
    program: int = 73,
    chords: bool = True,
) -> bytes:
    """Melodies played one after the other as one MIDI line (the first at beat 0), over held chords in a second
    part, so that the melody is not the only thing in the file."""
    beat = 60.0 / tempo_bpm
    score = pretty_midi.PrettyMIDI(initial_tempo=tempo_bpm)
    score.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    melody = pretty_midi.Instrument(program=program, name="Melody")
    harmony = pretty_midi.Instrument(program=48, name="Strings")
    offset = 0.0
    for part in parts:
        start = part[0][0]
        for onset, length, pitch in part:
            at = (offset + onset - start) * beat
            melody.notes.append(pretty_midi.Note(90, pitch + transpose, at, at + length * beat * 0.95))
        offset += max(onset + length for onset, length, _ in part) - start
    if chords:
        for bar in range(int(offset // 4)):
            root = 48 + (0, 5, 7, 3)[bar % 4]
            for step in (0, 4, 7):
                harmony.notes.append(pretty_midi.Note(60, root + step, bar * 4 * beat, (bar + 1) * 4 * beat))
        score.instruments.append(harmony)
    score.instruments.append(melody)
    buffer = io.BytesIO()
    score.write(buffer)
    return buffer.getvalue()
