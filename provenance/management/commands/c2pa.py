"""``manage.py c2pa``: make a development CA for Content Credentials, or verify a delivered file offline.

    manage.py c2pa dev-ca [--force]
    manage.py c2pa verify FILE [--manifest SIDECAR]

Paths come from the CUELEDGER_C2PA_* settings; see docs/content-credentials.md.
"""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from provenance import content_credentials as cc

DEV_ONLY_WARNING = (
    "WARNING: this CA is for development only. Its credentials are trusted solely by readers that add dev-ca.pem as a "
    "trust anchor; production needs a signing certificate from a CA on the C2PA trust list."
)


class Command(BaseCommand):
    help = "Content Credentials (C2PA): write a development CA and signing key, or verify a file offline."
    # Neither action touches the database or the apps; a legal user's offline check should not fail on unrelated checks.
    requires_system_checks = []

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="{dev-ca,verify}")
        dev_ca = actions.add_parser("dev-ca", help="write dev-ca.pem, signing-chain.pem and signing-key.pem")
        dev_ca.add_argument("--force", action="store_true", help="replace existing files")
        dev_ca.add_argument(
            "--keep-existing", action="store_true", help="do nothing, successfully, when the files exist already"
        )
        verify = actions.add_parser("verify", help="validate a file's Content Credentials against the trust anchors")
        verify.add_argument("file", type=Path)
        verify.add_argument("--manifest", type=Path, default=None, help="detached manifest store (.c2pa sidecar)")

    def handle(self, *args, **options):
        if options["action"] == "dev-ca":
            self.dev_ca(force=options["force"], keep_existing=options["keep_existing"])
        else:
            self.verify(options["file"], options["manifest"])

    def dev_ca(self, *, force: bool, keep_existing: bool = False) -> None:
        files = cc.DevCaFiles(
            ca_cert=Path(settings.CUELEDGER_C2PA_TRUST_ANCHORS),
            signing_chain=Path(settings.CUELEDGER_C2PA_CERT_CHAIN),
            signing_key=Path(settings.CUELEDGER_C2PA_KEY),
        )
        if keep_existing and not force and all(path.exists() for path in vars(files).values()):
            self.stdout.write(f"Content Credentials signing files exist already in {files.signing_chain.parent}")
            return
        try:
            cc.dev_ca_write(files, overwrite=force)
        except cc.CredentialsError as exc:
            hint = " (use --force to replace them)" if exc.code == "exists" else ""
            raise CommandError(f"{exc.detail}{hint}") from None
        self.stdout.write(f"CA certificate (trust anchor): {files.ca_cert}")
        self.stdout.write(f"Signing chain (leaf):          {files.signing_chain}")
        self.stdout.write(f"Signing key (mode 0600):       {files.signing_key}")
        self.stdout.write(self.style.WARNING(DEV_ONLY_WARNING))

    def verify(self, path: Path, manifest: Path | None) -> None:
        anchors = self.trust_anchors()
        try:
            store = manifest.read_bytes() if manifest else None
            report = cc.read(path, trust_anchors_pem=anchors, manifest_store=store)
        except OSError as exc:
            raise CommandError(f"{manifest}: {exc.strerror or exc}") from None
        except cc.CredentialsError as exc:
            raise CommandError(exc.detail) from None
        self.print_report(path, manifest, report)
        if not report.valid:
            raise CommandError("Content Credentials are not valid", returncode=1)

    def trust_anchors(self) -> bytes | None:
        anchors = Path(settings.CUELEDGER_C2PA_TRUST_ANCHORS)
        try:
            return anchors.read_bytes()
        except FileNotFoundError:
            # Still check integrity, which needs no anchor; the report then says the signer is untrusted.
            self.stderr.write(self.style.WARNING(f"No trust anchors at {anchors}: the signer cannot be trusted."))
            return None

    def print_report(self, path: Path, manifest: Path | None, report: cc.CredentialReport) -> None:
        out = self.stdout.write
        out(f"File:       {path}")
        out(f"Manifest:   {manifest or ('embedded' if report.embedded else '-')}")
        out(f"State:      {report.validation_state}")
        verdict = "VALID (intact, trusted signer)" if report.valid else "NOT VALID"
        out(
            self.style.SUCCESS(f"Result:     {verdict}") if report.valid else self.style.ERROR(f"Result:     {verdict}")
        )
        if report.title:
            out(f"Title:      {report.title}")
        if report.signer:
            out(f"Signed by:  {report.signer.get('common_name')} (issuer {report.signer.get('issuer')})")
        for action in report.actions:
            source = action.get("digitalSourceType", "").rsplit("/", 1)[-1]
            out(f"Action:     {action.get('action')}{f' ({source})' if source else ''}")
        ledger = report.assertions.get(cc.LEDGER_LABEL)
        if ledger:
            out(f"Ledger:     {ledger.get('origin')} #{ledger.get('index')} envelope {ledger.get('envelope_sha256')}")
        for key, entry in (report.assertions.get(cc.TRAINING_MINING_LABEL) or {}).get("entries", {}).items():
            out(f"TDM:        {key} = {entry.get('use')}")
        for error in report.errors:
            out(f"Error:      {error}")
