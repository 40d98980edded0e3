"""Pictures of a match that a person can judge: the notes of cue and reference overlaid as a piano roll on the
cue's time axis, and the bit error rate of an acoustic match second by second.

Both take the evidence of a match as stored in a report (``SymbolicMatch.as_dict()`` / ``AcousticMatch.as_dict()``)
and return PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from library.fingerprints import FingerprintError

WIDTH, HEIGHT = 1200, 520
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 70, 20, 50, 50
BACKGROUND = (255, 255, 255)
GRID = (225, 225, 225)
AXIS = (60, 60, 60)
CUE = (31, 119, 180)
CUE_FILL = (150, 190, 230)
REFERENCE = (214, 39, 40)
CURVE = (44, 110, 44)
THRESHOLD = (214, 39, 40)
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def piano_roll_png(evidence: dict, *, title: str = "") -> bytes:
    """The matched notes of the cue (full-height blue bars) and of the reference (thin red bars), the reference's
    moved onto the cue's time axis by the aligned spans and transposed by the match's transposition. A copied note
    shows as a red bar inside a blue one; a note of one side alone stands out on its own."""
    cue_notes = _notes(evidence.get("cue_notes"))
    reference_notes = _notes(evidence.get("reference_notes"))
    if not cue_notes or not reference_notes:
        raise FingerprintError("evidence_empty", "This match has no notes to draw.")
    cue_span, reference_span = evidence["cue_span"], evidence["reference_span"]
    scale = _ratio(cue_span, reference_span)
    shift = int(evidence.get("transposition", 0)) + 12 * int(evidence.get("octave_shift", 0))
    mapped = [
        (cue_span["start_seconds"] + (onset - reference_span["start_seconds"]) * scale, duration * scale, pitch + shift)
        for onset, duration, pitch in reference_notes
    ]
    start = min(n[0] for n in cue_notes + mapped)
    end = max(n[0] + n[1] for n in cue_notes + mapped)
    low = min(n[2] for n in cue_notes + mapped) - 2
    high = max(n[2] for n in cue_notes + mapped) + 2

    image, draw, font = _canvas()
    plot = _Plot(start, end, low, high)
    for pitch in range(low, high + 1):
        if pitch % 12 == 0:
            y = plot.y(pitch + 0.5)
            draw.line([(MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y)], fill=GRID)
            draw.text((8, y - 6), f"{_NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}", fill=AXIS, font=font)
    _time_axis(draw, font, plot, start, end, "cue time (s)")
    for onset, duration, pitch in cue_notes:
        draw.rectangle(plot.note(onset, duration, pitch, height=0.45), fill=CUE_FILL, outline=CUE)
    for onset, duration, pitch in mapped:
        draw.rectangle(plot.note(onset, duration, pitch, height=0.16), fill=REFERENCE)
    heading = title or "Matched notes"
    draw.text((MARGIN_LEFT, 8), heading[:120], fill=AXIS, font=font)
    draw.text(
        (MARGIN_LEFT, 26),
        f"blue: cue   red (inside): reference, transposed {shift:+d} semitones, time x{scale:.2f}   "
        f"bars {cue_span['start_bar']:.0f}-{cue_span['end_bar']:.0f} of the cue, "
        f"{reference_span['start_bar']:.0f}-{reference_span['end_bar']:.0f} of the reference",
        fill=AXIS,
        font=font,
    )
    return _png(image)


def bit_error_png(evidence: dict, *, threshold: float | None = None, title: str = "") -> bytes:
    """The bit error rate between the cue's and the reference's Chromaprint items, per second of the cue, over
    the aligned stretch. Copied audio sits near 0; unrelated audio near 0.5 (independent bits differ half the time).
    ``threshold``, when given, is drawn as the error rate below which the match counts (1 - score threshold)."""
    curve = [(float(t), float(ber)) for t, ber in evidence.get("ber_curve") or ()]
    if not curve:
        raise FingerprintError("evidence_empty", "This match has no bit error curve to draw.")
    start, end = curve[0][0], max(curve[-1][0], curve[0][0] + 1)
    image, draw, font = _canvas()
    plot = _Plot(start, end, 0.0, 0.6)
    for level in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6):
        y = plot.y(level)
        draw.line([(MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y)], fill=GRID)
        draw.text((20, y - 6), f"{level:.1f}", fill=AXIS, font=font)
    _time_axis(draw, font, plot, start, end, "cue time (s)")
    if threshold is not None:
        y = plot.y(threshold)
        draw.line([(MARGIN_LEFT, y), (WIDTH - MARGIN_RIGHT, y)], fill=THRESHOLD, width=1)
    points = [(plot.x(t), plot.y(min(ber, 0.6))) for t, ber in curve]
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([(x - 3, y - 3), (x + 3, y + 3)], fill=CURVE)
    else:
        draw.line(points, fill=CURVE, width=2)
    draw.text((MARGIN_LEFT, 8), (title or "Bit error rate per second")[:120], fill=AXIS, font=font)
    segments = evidence.get("segments") or ()
    summary = ", ".join(
        f"cue {s['cue_start']:.1f}-{s['cue_end']:.1f} s = reference {s['reference_start']:.1f}-"
        f"{s['reference_end']:.1f} s (BER {s['bit_error_rate']:.2f})"
        for s in segments[:3]
    )
    draw.text((MARGIN_LEFT, 26), summary[:160], fill=AXIS, font=font)
    return _png(image)


class _Plot:
    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1, self.y0, self.y1 = x0, max(x1, x0 + 1e-6), y0, max(y1, y0 + 1e-6)

    def x(self, value: float) -> float:
        return MARGIN_LEFT + (value - self.x0) / (self.x1 - self.x0) * (WIDTH - MARGIN_LEFT - MARGIN_RIGHT)

    def y(self, value: float) -> float:
        return HEIGHT - MARGIN_BOTTOM - (value - self.y0) / (self.y1 - self.y0) * (HEIGHT - MARGIN_TOP - MARGIN_BOTTOM)

    def note(self, onset: float, duration: float, pitch: int, *, height: float) -> list[tuple[float, float]]:
        left, right = self.x(onset), max(self.x(onset + duration), self.x(onset) + 2)
        return [(left, self.y(pitch + height)), (right, self.y(pitch - height))]


def _canvas():
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    return image, ImageDraw.Draw(image), ImageFont.load_default()


def _time_axis(draw, font, plot: _Plot, start: float, end: float, label: str) -> None:
    bottom = HEIGHT - MARGIN_BOTTOM
    draw.line([(MARGIN_LEFT, bottom), (WIDTH - MARGIN_RIGHT, bottom)], fill=AXIS)
    step = _tick_step(end - start)
    tick = (start // step) * step
    while tick <= end:
        if tick >= start:
            x = plot.x(tick)
            draw.line([(x, bottom), (x, bottom + 5)], fill=AXIS)
            draw.text((x - 10, bottom + 8), f"{tick:g}", fill=AXIS, font=font)
        tick += step
    draw.text((WIDTH // 2 - 40, HEIGHT - 18), label, fill=AXIS, font=font)


def _tick_step(span: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300):
        if span / step <= 12:
            return step
    return 600


def _ratio(cue_span: dict, reference_span: dict) -> float:
    reference_length = reference_span["end_seconds"] - reference_span["start_seconds"]
    cue_length = cue_span["end_seconds"] - cue_span["start_seconds"]
    return cue_length / reference_length if reference_length > 0 and cue_length > 0 else 1.0


def _notes(notes: Sequence | None) -> list[tuple[float, float, int]]:
    return [(float(onset), float(duration), int(pitch)) for onset, duration, pitch in notes or ()]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
