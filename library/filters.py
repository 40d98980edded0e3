from django_filters import rest_framework as filters

from library.models import Cue
from library.music.midi import DRUMS, GM_FAMILIES


class CueFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Cue.Status.choices)
    source = filters.ChoiceFilter(choices=Cue.Source.choices)
    mood = filters.CharFilter(field_name="moods__name", lookup_expr="iexact", distinct=True, label="Mood tag")
    tempo_min = filters.NumberFilter(field_name="tempo_bpm", lookup_expr="gte", label="Main tempo at least (BPM)")
    tempo_max = filters.NumberFilter(field_name="tempo_bpm", lookup_expr="lte", label="Main tempo at most (BPM)")
    duration_min = filters.NumberFilter(field_name="duration_seconds", lookup_expr="gte", label="At least (s)")
    duration_max = filters.NumberFilter(field_name="duration_seconds", lookup_expr="lte", label="At most (s)")
    key = filters.CharFilter(field_name="key", lookup_expr="iexact", label='Key, e.g. "A minor"')
    mode = filters.ChoiceFilter(choices=[("major", "major"), ("minor", "minor")])
    instrument_family = filters.ChoiceFilter(
        field_name="instruments__family",
        choices=[(family, family) for family in (*GM_FAMILIES, DRUMS)],
        distinct=True,
        label="General MIDI instrument family",
    )
    ordering = filters.OrderingFilter(fields=["created_at", "title", "tempo_bpm", "duration_seconds", "number"])

    class Meta:
        model = Cue
        fields: list[str] = []
