"""manage.py references import and manage.py similarity: folders with metadata, progress, rejections, calibration."""

import io

import pytest
from django.core.management import CommandError, call_command

from library.models import ReferenceWork, SimilarityCalibration
from library.services import cue_ingest, cue_render
from tests.factories import tune, tune_midi

pytestmark = pytest.mark.django_db


def run(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "references"
    (root / "film").mkdir(parents=True)
    (root / "film" / "main_theme.mid").write_bytes(tune_midi(tune(1)))
    (root / "film" / "love-theme.mid").write_bytes(tune_midi(tune(2)))
    (root / "broken.mid").write_bytes(b"not a MIDI file at all")
    (root / "readme.txt").write_text("not music")
    (root / "metadata.csv").write_text(
        "file,title,composers,iswc\nfilm/main_theme.mid,The Main Theme,A. Composer;B. Composer,T-034.524.680-1\n",
        encoding="utf-8",
    )
    return root


def test_a_folder_is_imported_with_its_metadata_a_progress_bar_and_a_list_of_rejections(legal, folder):
    with pytest.raises(CommandError, match="1 of 3 work"):
        out, err = run("references", "import", str(folder), "--user", legal.username, "--no-recheck")
    works = {work.title: work for work in ReferenceWork.objects.all()}
    assert set(works) == {"The Main Theme", "Love Theme"}
    assert works["The Main Theme"].composers == ["A. Composer", "B. Composer"]
    assert works["The Main Theme"].iswc == "T-034.524.680-1"


def test_the_summary_names_each_rejected_file_with_its_code(legal, folder):
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "references", "import", str(folder), "--user", legal.username, "--no-recheck", stdout=out, stderr=err
        )
    assert "Imported 2 of 3 reference work(s)" in out.getvalue()
    assert "broken.mid: midi_invalid:" in out.getvalue()
    progress = [line for line in err.getvalue().splitlines() if line.startswith("[")]
    assert len(progress) == 3 and progress[-1].startswith("[" + "#" * 30 + "] 3/3")


def test_metadata_that_names_no_file_stops_the_import_before_anything_is_written(legal, folder):
    (folder / "metadata.csv").write_text("file,title\nmissing.mid,Nothing\n", encoding="utf-8")
    with pytest.raises(CommandError, match="no MIDI or audio file matches 'missing.mid'"):
        run("references", "import", str(folder), "--user", legal.username)
    assert not ReferenceWork.objects.exists()


def test_only_legal_or_admin_users_import(producer, folder):
    with pytest.raises(CommandError, match="not a legal or admin user"):
        run("references", "import", str(folder), "--user", producer.username)


def test_calibrate_check_and_status(legal, producer, folder):
    (folder / "broken.mid").unlink()
    (folder / "third.mid").write_bytes(tune_midi(tune(3)))
    run("references", "import", str(folder), "--user", legal.username, "--no-recheck")

    out, err = run("similarity", "calibrate")
    assert "acoustic: threshold" in out and "symbolic: threshold" in out and "6 unrelated pairs" in out
    assert SimilarityCalibration.objects.count() == 2

    status, _ = run("similarity", "status")
    assert "3 work(s)" in status and "calibration #" in status

    cue = cue_ingest(created_by=producer, title="Copy", midi=tune_midi(tune(500), tune(1), transpose=2))
    cue_render(job_id=cue.jobs.get(kind="render").pk)
    report, _ = run("similarity", "check", cue.code)
    assert report.startswith(f"{cue.code}: flag") and "The Main Theme" in report


def test_calibrating_a_corpus_of_one_work_is_refused(legal, tmp_path):
    (tmp_path / "only.mid").write_bytes(tune_midi(tune(1)))
    run("references", "import", str(tmp_path), "--user", legal.username, "--no-recheck")
    with pytest.raises(CommandError, match="corpus_too_small"):
        run("similarity", "calibrate")
