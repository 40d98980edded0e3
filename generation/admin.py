from django.contrib import admin

from generation.models import GenerationJob, Generator


@admin.register(Generator)
class GeneratorAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "code_version", "is_default", "references_registered_at", "created_at"]
    readonly_fields = [field.name for field in Generator._meta.fields]


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "title", "status", "progress", "created_by", "created_at"]
    list_filter = ["kind", "status"]
    exclude = ["prompt"]  # confidential: legal reads prompts through the cue's prompt endpoint
    readonly_fields = [field.name for field in GenerationJob._meta.fields if field.name != "prompt"]
