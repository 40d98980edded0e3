from django.contrib import admin

from library.models import Artifact, Cue, CueInstrument, Mood, ProcessingJob


class CueInstrumentInline(admin.TabularInline):
    model = CueInstrument
    extra = 0
    readonly_fields = ["program", "name", "family", "is_drum", "note_count"]


@admin.register(Cue)
class CueAdmin(admin.ModelAdmin):
    list_display = ["code", "title", "status", "source", "duration_seconds", "tempo_bpm", "key", "created_by"]
    list_filter = ["status", "source", "mode"]
    search_fields = ["title", "description"]
    readonly_fields = ["number", "midi", "audio", "preview", "waveform", "analysis_detail"]
    inlines = [CueInstrumentInline]


@admin.register(Artifact)
class ArtifactAdmin(admin.ModelAdmin):
    list_display = ["sha256", "media_type", "size", "created_at"]


@admin.register(ProcessingJob)
class ProcessingJobAdmin(admin.ModelAdmin):
    list_display = ["cue", "kind", "state", "progress", "attempts", "updated_at"]
    list_filter = ["state", "kind"]


admin.site.register(Mood)
