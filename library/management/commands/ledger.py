import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from library.selectors import cue_by_reference
from provenance import services
from provenance.errors import ProvenanceError
from provenance.ledger import dump_bundle


class Command(BaseCommand):
    help = "The provenance ledger: sign a checkpoint, verify everything from the database, export evidence."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("checkpoint", help="append pending records and sign a checkpoint of the whole ledger")
        verify = sub.add_parser(
            "verify", help="recompute every entry, tree node and checkpoint; report the first fault"
        )
        verify.add_argument("--json", action="store_true")
        export = sub.add_parser("export", help="write a cue's evidence bundle for `python -m provenance.verify`")
        export.add_argument("--cue", required=True, help="the cue's id (UUID) or code (CUE-000123)")
        export.add_argument("--out", required=True, type=Path)
        export.add_argument("--since", type=int, help="add a consistency proof from this earlier tree size")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except ProvenanceError as exc:
            raise CommandError(str(exc)) from None

    def _checkpoint(self, **options):
        appended = services.outbox_drain()
        checkpoint = services.checkpoint_create()
        self.stdout.write(f"appended {appended} pending record(s)")
        self.stdout.write(checkpoint.note, ending="")

    def _verify(self, *, json: bool = False, **options):
        report = services.ledger_verify()
        if json:
            self.stdout.write(_json(report.as_dict()))
        elif report.ok:
            self.stdout.write(f"ok: {report.size} entries and {report.checkpoints} checkpoint(s) verify")
        else:
            self.stderr.write(f"FAILED at entry {report.index}: {report.code}: {report.detail}")
        if not report.ok:
            sys.exit(1)

    def _export(self, *, cue: str, out: Path, since: int | None, **options):
        found = _cue(cue)
        services.outbox_drain()  # an operator exporting wants every record, including those queued a moment ago
        bundle = services.bundle_build(
            reference=found.provenance_reference,
            since=since,
            subject={"cue": {"id": str(found.pk), "code": found.code, "title": found.title}},
        )
        draft = out.with_name(f".{out.name}.partial")
        draft.write_bytes(dump_bundle(bundle))
        draft.replace(out)  # a reader never sees half a bundle
        self.stdout.write(f"wrote {out}: {len(bundle['entries'])} record(s), checkpoint of {_size(bundle)} entries")


def _cue(reference: str):
    found = cue_by_reference(reference)
    if found is None:
        raise CommandError(f"no cue {reference!r}")
    return found


def _size(bundle: dict) -> str:
    return bundle["checkpoint"].split("\n")[1]


def _json(data) -> str:
    return json.dumps(data, indent=2)
