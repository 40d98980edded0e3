"""``manage.py references import PATH...``: bring reference works in from folders of MIDI and audio files."""

import csv
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cueledger.progress import ProgressBar
from cueledger.roles import ADMIN, LEGAL, has_role
from library.errors import LibraryError
from library.services.references import ReferenceInput, reference_import, references_changed
from library.services.similarity import corpus_version

MIDI_SUFFIXES = {".mid", ".midi", ".smf"}
AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga"}
METADATA_FILE = "metadata.csv"
CSV_COLUMNS = ("file", "title", "composers", "rightsholders", "iswc", "isrc", "source", "notes")


@dataclass
class _Work:
    """The files of one work: a MIDI and/or an audio file with the same name in the same folder."""

    key: tuple[Path, str]
    midi: Path | None = None
    audio: Path | None = None
    metadata: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.midi or self.audio)


class Command(BaseCommand):
    help = "Reference works: import folders of MIDI and audio files, with an optional CSV of metadata."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        importing = sub.add_parser(
            "import",
            help="import MIDI (.mid) and audio (.wav .flac .mp3 .ogg) files; a MIDI and an audio file with the "
            "same name in one folder are one work",
        )
        importing.add_argument("paths", nargs="+", type=Path, help="files or folders (searched recursively)")
        importing.add_argument(
            "--metadata",
            type=Path,
            help=f"a CSV with the columns {', '.join(CSV_COLUMNS)} (file names relative to the CSV's folder; "
            f"names separated by ';'); by default {METADATA_FILE} in a given folder, if there is one",
        )
        importing.add_argument("--user", required=True, help="who imports (a legal or admin user)")
        importing.add_argument("--source", default="", help="where the files came from, when the CSV does not say")
        importing.add_argument("--no-recheck", action="store_true", help="do not re-check cues afterwards")

    def handle(self, *args, action, **options):
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None or not has_role(user, LEGAL, ADMIN):
            raise CommandError(f"{options['user']!r} is not a legal or admin user.")
        works = _works(options["paths"], options["metadata"])
        if not works:
            raise CommandError("No MIDI or audio files were found under the given paths.")

        progress = ProgressBar(len(works), self.stderr)
        imported, rejected = 0, []
        for work in works:
            progress.step(work.label)
            if work.problems:
                rejected.append((work.label, "metadata_invalid", "; ".join(work.problems)))
                continue
            try:
                reference_import(created_by=user, work=_input(work, options["source"]), recheck=False)
            except LibraryError as exc:
                rejected.append((work.label, exc.code, exc.detail))
            else:
                imported += 1
        progress.finish()

        version = corpus_version()
        self.stdout.write(
            f"Imported {imported} of {len(works)} reference work(s). Corpus: revision {version.revision}, "
            f"{version.count} work(s), digest {version.digest[:16]}."
        )
        if imported and not options["no_recheck"]:
            try:
                references_changed()
                self.stdout.write("Ready cues will be re-checked against the grown corpus.")
            except Exception as exc:  # the works are in; the next worker start re-checks too
                self.stderr.write(f"Could not queue the re-check of cues ({exc}); it runs when a worker starts.")
        if rejected:
            self.stdout.write(f"Rejected {len(rejected)}:")
            for label, code, detail in rejected:
                self.stdout.write(f"  {label}: {code}: {detail}")
            raise CommandError(f"{len(rejected)} of {len(works)} work(s) were rejected; see the list above.")


def _works(paths: list[Path], metadata: Path | None) -> list[_Work]:
    found: dict[tuple[Path, str], _Work] = {}
    csv_files = [metadata] if metadata else [p / METADATA_FILE for p in paths if (p / METADATA_FILE).is_file()]
    for path in paths:
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            suffix = file.suffix.lower()
            if suffix not in MIDI_SUFFIXES | AUDIO_SUFFIXES:
                continue
            key = (file.parent.resolve(), file.stem.lower())
            work = found.setdefault(key, _Work(key))
            slot = "midi" if suffix in MIDI_SUFFIXES else "audio"
            if getattr(work, slot) is not None:
                work.problems.append(f"two {slot} files named {file.stem}: {getattr(work, slot).name}, {file.name}")
            else:
                setattr(work, slot, file)
    for csv_file in csv_files:
        _attach_metadata(found, csv_file)
    return sorted(found.values(), key=lambda w: w.label)


def _attach_metadata(found: dict, csv_file: Path) -> None:
    if not csv_file.is_file():
        raise CommandError(f"The metadata file {csv_file} does not exist.")
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise CommandError(f"{csv_file} needs a header row with a 'file' column ({', '.join(CSV_COLUMNS)}).")
            unknown = set(reader.fieldnames) - set(CSV_COLUMNS)
            if unknown:
                raise CommandError(f"{csv_file} has unknown column(s): {', '.join(sorted(unknown))}.")
            described = set()
            for row in reader:
                line = reader.line_num
                if None in row:  # DictReader keeps cells beyond the header under the key None
                    raise CommandError(f"{csv_file}, line {line}: more cells than the header has columns.")
                named = (csv_file.parent / (row.get("file") or "").strip()).resolve()
                key = (named.parent, Path(named.name).stem.lower())
                work = found.get(key)
                if work is None:
                    raise CommandError(f"{csv_file}, line {line}: no MIDI or audio file matches {row.get('file')!r}.")
                if key in described:
                    raise CommandError(f"{csv_file}, line {line}: {row.get('file')!r} is described twice.")
                described.add(key)
                work.metadata = {k: (v or "").strip() for k, v in row.items() if k != "file"}
    except UnicodeDecodeError:
        raise CommandError(f"{csv_file} is not UTF-8 text.") from None
    except csv.Error as exc:
        raise CommandError(f"{csv_file} is not a valid CSV file: {exc}") from None


def _input(work: _Work, source: str) -> ReferenceInput:
    meta = work.metadata
    return ReferenceInput(
        title=meta.get("title") or work.key[1].replace("_", " ").replace("-", " ").strip().title(),
        midi=work.midi,
        audio=work.audio,
        composers=[n for n in meta.get("composers", "").split(";") if n.strip()],
        rightsholders=[n for n in meta.get("rightsholders", "").split(";") if n.strip()],
        iswc=meta.get("iswc", ""),
        isrc=meta.get("isrc", ""),
        source=meta.get("source") or source,
        notes=meta.get("notes", ""),
    )
