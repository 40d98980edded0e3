from django.db import migrations


def install(apps, schema_editor):
    from provenance.triggers import triggers_install

    triggers_install(schema_editor.connection)


def remove(apps, schema_editor):
    from provenance.triggers import triggers_remove_unsafe

    triggers_remove_unsafe(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [("provenance", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
