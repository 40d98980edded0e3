"""``manage.py similarity``: calibrate thresholds, check a cue now, and show the corpus and its thresholds."""

from django.core.management.base import BaseCommand, CommandError

from library.errors import LibraryError
from library.management.commands.ledger import _cue
from library.models import SimilarityReport
from library.services import similarity


class Command(BaseCommand):
    help = "Similarity checks: calibrate thresholds on the reference corpus, check a cue, show the corpus."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        calibrate = sub.add_parser(
            "calibrate",
            help="measure scores of unrelated pairs of the corpus and set each detector's threshold",
        )
        calibrate.add_argument("--fpr", type=float, default=1e-3, help="false-positive rate per pair (default 1e-3)")
        check = sub.add_parser("check", help="check a cue against the corpus now and print the report")
        check.add_argument("cue", help="the cue's id (UUID) or code (CUE-000123)")
        sub.add_parser("status", help="the corpus version, the thresholds in force and where they come from")

    def handle(self, *args, action, **options):
        getattr(self, f"_{action}")(**options)

    def _calibrate(self, *, fpr, **options):
        if not 0 < fpr < 1:
            raise CommandError("--fpr must lie between 0 and 1.")

        def progress(detector, done, total):
            if done == total or done % max(1, total // 10) == 0:
                self.stderr.write(f"{detector}: {done}/{total} works queried")

        try:
            calibrations = similarity.similarity_calibrate(target_fpr=fpr, created_by="manage.py", progress=progress)
        except LibraryError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        for calibration in calibrations:
            top = calibration.distribution.get("top", [])[:3]
            self.stdout.write(
                f"{calibration.detector}: threshold {calibration.threshold:.4f} for FPR <= {fpr:g} per pair; "
                f"{calibration.pairs:,} unrelated pairs, measured FPR {calibration.measured_fpr:.2e}; "
                f"highest unrelated scores {', '.join(f'{s:.3f}' for s in top) or 'none'}"
            )
            if calibration.distribution.get("same_work_pairs"):
                examples = ", ".join(f"#{a} and #{b}" for a, b in calibration.distribution["same_work_examples"][:5])
                self.stdout.write(
                    f"  {calibration.distribution['same_work_pairs']} pair(s) set aside as the same work twice, "
                    f"e.g. {examples}: merge or remove such duplicates"
                )

    def _check(self, *, cue, **options):
        found = _cue(cue)
        if found.audio_id is None:
            raise CommandError(f"{found.code} has no rendered audio yet.")
        try:
            report = similarity.similarity_check(cue=found, trigger=SimilarityReport.Trigger.REQUEST)
        except LibraryError as exc:
            raise CommandError(f"{exc.code}: {exc.detail}") from None
        version = report.corpus_version
        self.stdout.write(
            f"{found.code}: {report.verdict} against corpus revision {version['revision']} "
            f"({version['count']} works) in {report.duration_ms} ms"
        )
        for detector, state in report.detectors.items():
            if not state["ran"]:
                self.stdout.write(f"  {detector}: not run ({state['code']}: {state['detail']})")
        for match in report.matches:
            self.stdout.write(
                f"  {match['detector']}: {match['reference']['title']} (#{match['reference']['id']}) "
                f"score {match['score']:.3f} >= {match['threshold']:.3f}"
            )

    def _status(self, **options):
        version = similarity.corpus_version()
        self.stdout.write(f"corpus: revision {version.revision}, {version.count} work(s), digest {version.digest}")
        for detector, threshold in similarity.thresholds_current().items():
            source = f"calibration #{threshold['calibration_id']}" if threshold["calibration_id"] else "engine default"
            self.stdout.write(f"{detector}: threshold {threshold['value']:.4f} ({source})")
