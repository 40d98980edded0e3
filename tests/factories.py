"""Test data: users in roles, API clients, and MIDI files good and bad."""

import io
import itertools

import mido
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
