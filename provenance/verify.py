"""Offline verifier of Cueledger evidence bundles.

    python -m provenance.verify BUNDLE [--trusted-keys FILE] [--previous-checkpoint FILE] [--json]

Needs only Python, ``cryptography`` and ``rfc8785`` — no network, no database, no Django. Exit status: 0 when every
check holds, 1 when a check failed (the message names the entry and the check), 2 when an input could not be read or
parsed or the command line is wrong, 3 on an internal error of the verifier itself. See docs/verification.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from provenance.ledger import (
    KeyRing,
    LedgerError,
    MalformedError,
    Report,
    VerificationError,
    b64,
    load_bundle,
    verify_bundle,
)
from provenance.ledger.encoding import loads_json

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_MALFORMED = 2
EXIT_INTERNAL = 3


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print and exit by itself; raising lets --json still answer in JSON.
        raise _UsageError(message)


def _parser() -> _Parser:
    parser = _Parser(
        prog="python -m provenance.verify",
        description="Verify a Cueledger evidence bundle offline: signatures, key validity windows, Merkle inclusion "
        "proofs against the signed checkpoint and, optionally, consistency with a checkpoint you saved earlier.",
        epilog="Exit status: 0 verified, 1 a check failed, 2 unreadable or malformed input or bad usage, "
        "3 internal error.",
    )
    parser.add_argument("bundle", metavar="BUNDLE", help="the evidence bundle (JSON); '-' reads standard input")
    parser.add_argument(
        "--trusted-keys",
        metavar="FILE",
        help="the ledger's public keys obtained independently of the bundle (JSON: a list of keys, or an object "
        "with a 'keys' or 'results' list, as the Cueledger API serves the ledger's key list)",
    )
    parser.add_argument(
        "--previous-checkpoint",
        metavar="FILE",
        help="a signed checkpoint saved earlier; the bundle must prove the log only grew since",
    )
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON report")
    return parser


def _read(path: str, what: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise MalformedError("file_unreadable", f"cannot read the {what} {path!r}: {exc.strerror or exc}") from None


def _load_trusted_keys(path: str) -> KeyRing:
    data = loads_json(_read(path, "trusted keys file"), code="key_malformed", what=f"the trusted keys file {path!r}")
    return KeyRing.from_json(data)


def _load_note(path: str) -> str:
    data = _read(path, "previous checkpoint file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError("note_malformed", f"the previous checkpoint file {path!r} is not UTF-8 text") from None
    # A note never contains a carriage return, so undoing a Windows editor's CRLF cannot change what was signed.
    return text.replace("\r\n", "\n")


def _run(bundle_path: str, trusted_keys_path: str | None, previous_path: str | None) -> Report:
    bundle = load_bundle(_read(bundle_path, "bundle"))
    trusted = _load_trusted_keys(trusted_keys_path) if trusted_keys_path else None
    previous = _load_note(previous_path) if previous_path else None
    return verify_bundle(bundle, trusted_keys=trusted, previous_checkpoint=previous)


def _json_report(report: Report | None, error: dict[str, Any] | None) -> dict[str, Any]:
    checkpoint = None
    if report is not None:
        checkpoint = {
            "origin": report.origin,
            "tree_size": report.tree_size,
            "root_hash": b64(report.root_hash),
            "key_id": report.checkpoint_key_id,
        }
    return {
        "ok": error is None,
        "error": error,
        "checkpoint": checkpoint,
        "entries": [entry.to_json() for entry in report.entries] if report else [],
        "warnings": list(report.warnings) if report else [],
        "previous_size": report.previous_size if report else None,
    }


def _printable(text: object) -> str:
    """``text`` with every control or unpaired-surrogate character shown as an escape: bundle fields are written
    by whoever made the bundle, and a terminal control sequence in one could hide a warning or forge a line."""
    return "".join(
        char if char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF else repr(char)[1:-1] for char in str(text)
    )


def _summary_lines(report: Report) -> list[str]:
    trusted = not any("not independently trusted" in warning for warning in report.warnings)
    lines = [
        "VERIFIED: every check passed."
        if trusted
        else "VERIFIED AGAINST THE BUNDLE'S OWN KEYS ONLY: give --trusted-keys to check who signed it."
    ]
    lines += [
        f"  Log (origin):      {report.origin}",
        f"  Checkpoint size:   {report.tree_size} entries",
        f"  Root hash:         {b64(report.root_hash)}",
        f"  Checkpoint key id: {report.checkpoint_key_id}",
    ]
    if report.previous_size is not None:
        lines.append(f"  Consistent with the previous checkpoint of size {report.previous_size}")
    lines.append(f"  Entries ({len(report.entries)}):")
    for entry in report.entries:
        lines.append(f"    entry {entry.index}: {entry.predicate_type}")
        lines.append(f"      signed by key id {entry.key_id}")
        for name, digest in entry.subjects:
            lines.append(f"      subject {name or '_'}  sha256:{digest}")
        about = entry.statement.get("predicate", {}).get("cue") if isinstance(entry.statement, dict) else None
        if isinstance(about, dict):  # what the signed record itself says it is about
            lines.append(f"      about (signed): {json.dumps(about, ensure_ascii=False, sort_keys=True)}")
    if report.subject is not None:
        description = json.dumps(report.subject, ensure_ascii=False, sort_keys=True)
        lines.append(f"  Bundle description (not verified, compare it with the signed lines): {description}")
    if report.warnings:
        lines.append("  Warnings:")
        lines.extend(f"    - {warning}" for warning in report.warnings)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verifier on command-line arguments ``argv`` and return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    want_json = "--json" in args_list
    report: Report | None = None
    try:
        args = _parser().parse_args(args_list)
        report = _run(args.bundle, args.trusted_keys, args.previous_checkpoint)
        output = (
            json.dumps(_json_report(report, None), indent=2, ensure_ascii=True)
            if want_json
            else "\n".join(_printable(line) for line in _summary_lines(report))
        )
    except _UsageError as exc:
        error: LedgerError = MalformedError("usage", f"{exc} (see --help)")
        status, label = EXIT_MALFORMED, "USAGE ERROR"
    except VerificationError as exc:
        error, status, label = exc, EXIT_FAILED, "VERIFICATION FAILED"
    except MalformedError as exc:
        error, status, label = exc, EXIT_MALFORMED, "CANNOT VERIFY (unreadable or malformed input)"
    except LedgerError as exc:
        error, status, label = exc, EXIT_INTERNAL, "INTERNAL ERROR"
    except Exception as exc:  # a verifier bug must never look like a verdict on the evidence
        error = LedgerError("internal_error", f"{type(exc).__name__}: {exc}")
        status, label = EXIT_INTERNAL, "INTERNAL ERROR"
    else:
        print(output)
        return EXIT_OK
    if want_json:
        print(json.dumps(_json_report(None, error.to_json()), indent=2, ensure_ascii=True))
    else:
        print(_printable(f"{label}: {error}"), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
