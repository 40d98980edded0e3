"""Training the melody model from the corpus bundled with music21, with a manifest that says what it learned from.

A training run names collections (directories of ``music21/corpus``). Every score file in them is read once; each
work in it (one per file, or one per ``X:`` tune of a multi-tune ABC book) gives its main melody line as steps, and
the steps train a ``MelodyModel``. The manifest lists every work with the SHA-256 of its file and the licence its
source states, every file that was skipped and why, and one entry per collection; the model's ``training_digest`` is
the SHA-256 of the manifest, so the model names exactly the corpus it came from.

Licences come from a survey of the installed corpus (music21 10.5.1), hard-coded in ``LICENCES`` below. music21 says
(``corpus/license.txt``) that it assumes no copyright and that the terms are those embedded in compositions or
directories, so the survey read every directory's licence files and every score's own rights statements (MusicXML
``<rights>`` and credits, Humdrum ``!!!YEC``/``!!!YEM`` records, ABC ``%`` comments and header fields). Training
checks at run time that the evidence still reads as surveyed, so an upgrade that changes the terms fails with
``licence_evidence_changed`` instead of being mislabelled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import mido
import music21

from generation.composer import ComposerError
from generation.composer.model import MelodyModel

MANIFEST_FORMAT = "cueledger-training-manifest/1"
CORPUS_ROOT = Path(music21.__file__).parent / "corpus"
DEFAULT_MODEL_DIR = Path(__file__).parent / "default"
# Two folk-tune books (Northumbrian Minstrelsy song airs, American fife tunes) and two Nottingham reels: 183 tonal,
# singable melodies read in about ten seconds, under the least restrictive terms the corpus offers for folk tunes
# (no licence stated, rather than non-commercial or reserved). Aird's Airs would add 1178 works under the same terms
# but about eighty seconds of parsing, too slow to retrain in the test suite.
DEFAULT_COLLECTIONS = ("miscFolk", "nottingham-dataset")
MODEL_FILE = "model.json"
MANIFEST_FILE = "manifest.json"

SCORE_SUFFIXES = (".abc", ".krn", ".mei", ".musicxml", ".mxl", ".xml")
DEFAULT_BPM = 100.0
_MIDI_TICKS_PER_QUARTER = 480
_MIDI_VELOCITY = 80


# --- The licence survey --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Terms:
    """What one source says about use: an SPDX id or ``LicenseRef-...``, whether commercial use is allowed (None:
    unknown), a short faithful summary or quote, and where it says so (a path relative to the corpus root)."""

    license: str
    commercial_use: bool | None
    statement: str
    source: str


@dataclass(frozen=True)
class CollectionLicence:
    """The survey of one collection. ``default`` covers its score files that carry no notice of their own;
    ``notices`` maps each rights notice found inside its files (a regular expression the whole notice matches) to
    what it means. ``license`` and ``commercial_use`` combine all of its files' terms; ``licence_files`` are the
    licence files in the directory, with the SHA-256 they had when surveyed."""

    license: str
    commercial_use: bool | None
    statement: str
    source: str
    default: Terms
    notices: tuple[tuple[str, Terms], ...] = ()
    licence_files: tuple[tuple[str, str], ...] = ()


_UMBRELLA_SHA256 = "334fce4085e8ea9d0927ad437477e23367dbe2987030e6676760eebb6b0996db"
_ESSEN_SHA256 = "52ed4652fdaaca16a0bce329b74912de50a9d67ac29d0acc9ca4eed9705cd27f"

# corpus/license.txt: "Some encodings included in the corpus may not be used for commercial uses or have other
# restrictions: please see the licenses embedded in individual compositions or directories". A file that embeds
# nothing is therefore of unknown terms, not free.
_SILENT = Terms(
    "LicenseRef-unknown",
    None,
    "No licence in the file or its directory; corpus/license.txt says some encodings may not be used commercially "
    "and defers to licences embedded in compositions or directories.",
    "license.txt",
)
# essenFolksong/license.txt: "The legal status of the Essen folksong database is unclear ... [Ewa Dahlig-Turek] has
# given permission for non-commercial distribution and use of these files in music21."
_ESSEN = Terms(
    "LicenseRef-music21-noncommercial",
    False,
    "essenFolksong/license.txt: the legal status of the Essen folksong database is unclear; permission was given "
    "for non-commercial distribution and use of these files in music21.",
    "essenFolksong/license.txt",
)
# A copyright notice that grants no licence: nothing in the corpus lets us copy beyond music21's own permission.
_GREENTREE = Terms(
    "LicenseRef-rights-reserved",
    False,
    "MusicXML credit 'PDF © 2004 Margaret Greentree' (www.jsbchorales.net), most adding 'used by permission'; "
    "no licence is granted.",
    "bach/bwv10.7.mxl",
)
_CCARH = Terms(
    "LicenseRef-rights-reserved",
    False,
    "!!!YEC: Copyright 1994, Center for Computer Assisted Research in the Humanities; !!!YEM: Rights to all "
    "derivative electronic formats reserved. Refer to licensing agreement (not in the corpus).",
    "bach/bwv277.krn",
)
_MILLER = Terms(
    "LicenseRef-rights-reserved",
    False,
    "!!!YEC: Copyright 2000, John Miller; !!!YEM: Rights to all derivative electronic formats reserved; this file "
    "must be accompanied by the licensing agreement (not in the corpus).",
    "palestrina/Agnus_01.krn",
)
_EMPTY_COPYRIGHT = Terms(
    "LicenseRef-unknown",
    None,
    "MusicXML <rights> holds only an empty template ('Copyright ©' or '©') naming no holder and no terms.",
    "schubert/Lindenbaum.xml",
)
_CC_BY_SA_3 = Terms(
    "CC-BY-SA-3.0",
    True,
    "<rights>2010 Michael Scott Cuthbert -- freely distributed under a CC-BY-SA 3.0 license</rights>",
    "luca/gloria.xml",
)

_PATH_OF = {"ciconia": "ciconia/quod_jactatur.xml", "luca": "luca/gloria.xml"}


def _silent(statement: str = "") -> CollectionLicence:
    return CollectionLicence(
        _SILENT.license, _SILENT.commercial_use, (statement + " " if statement else "") + _SILENT.statement,
        _SILENT.source, _SILENT,
    )  # fmt: skip


def _cc_by_sa_3(name: str) -> CollectionLicence:
    terms = Terms(_CC_BY_SA_3.license, True, _CC_BY_SA_3.statement, _PATH_OF[name])
    return CollectionLicence(
        terms.license, True, terms.statement, terms.source, _SILENT,
        notices=((r"2010 Michael Scott Cuthbert -- freely distributed under a CC-BY-SA 3\.0 license", terms),),
    )  # fmt: skip


LICENCES: dict[str, CollectionLicence] = {
    # Files carry only "Z:Jack Campin * www.campin.me.uk * 2009" transcriber lines and editorial N: notes.
    "airdsAirs": _silent("Transcriber lines only ('Z:Jack Campin * www.campin.me.uk * 2009')."),
    "bach": CollectionLicence(
        "LicenseRef-rights-reserved AND LicenseRef-unknown",
        False,
        "Most chorales credit 'PDF © 2004 Margaret Greentree' (some 'used by permission'); three Humdrum files "
        "carry CCARH's 1994 copyright with all derivative electronic rights reserved; the rest say nothing.",
        "bach/bwv10.7.mxl",
        _SILENT,
        notices=(
            (r"(PDF )?© ?200[34] Margaret Greentree( - used by permission| www\.jsbchorales\.net)?", _GREENTREE),
            (r"PDF ©2004 Margaret Greentree www\.jsbchorales\.net", _GREENTREE),
            (r"used by permission", _GREENTREE),
            (r"!!!YEC: Copyright 1994, Center for Computer Assisted Research in the Humanities", _CCARH),
            (r"!!!YEM: Rights to all derivative electronic formats reserved\.", _CCARH),
            (r"!!!YEM: Refer to licensing agreement for further details\.", _CCARH),
        ),
    ),
    "beach": CollectionLicence(
        "LicenseRef-CC-BY-SA-unversioned",
        None,
        "<rights>Original out of Copyright (1915, G. Schirmer). Engraving Copyright 2017 Michael Scott Cuthbert, "
        "most uses allowed for free (CC-SA-BY).</rights>: no version, and only 'most uses' are allowed.",
        "beach/prayer_of_a_tired_child.musicxml",
        _SILENT,
        notices=(
            (
                r"Original out of Copyright \(1915, G\. Schirmer\)\. Engraving Copyright 2017 Michael Scott Cuthbert, "
                r"most uses allowed for free \(CC-SA-BY\)\.",
                Terms(
                    "LicenseRef-CC-BY-SA-unversioned",
                    None,
                    "Engraving Copyright 2017 Michael Scott Cuthbert, most uses allowed for free (CC-SA-BY).",
                    "beach/prayer_of_a_tired_child.musicxml",
                ),
            ),
        ),
    ),
    # Sapp's Humdrum encodings have no !!!YEM/!!!YEC records; two MusicXML files have an empty <rights> element.
    "beethoven": _silent(),
    "chopin": _silent(),
    "ciconia": _cc_by_sa_3("ciconia"),
    "corelli": CollectionLicence(
        "LicenseRef-CC-BY-unversioned",
        True,
        "<rights>© 2014, Creative Commons License (CC-BY)</rights>: no version given; every CC BY version allows "
        "commercial use with attribution.",
        "corelli/opus3no1/1grave.xml",
        _SILENT,
        notices=(
            (
                r"© 2014, Creative Commons License \(CC-BY\)",
                Terms(
                    "LicenseRef-CC-BY-unversioned",
                    True,
                    "© 2014, Creative Commons License (CC-BY)",
                    "corelli/opus3no1/1grave.xml",
                ),
            ),
        ),
    ),
    # The Finale .mus file's only copyright string is MakeMusic's own, inside the binary; it is not read.
    "cpebach": _silent(),
    "demos": CollectionLicence(
        "LicenseRef-unknown",
        None,
        "Test files; three have an empty 'Copyright ©' <rights>, the rest say nothing.",
        "demos/two-parts.xml",
        _SILENT,
        notices=((r"Copyright ©", _EMPTY_COPYRIGHT),),
    ),  # fmt: skip
    "essenFolksong": CollectionLicence(
        _ESSEN.license,
        _ESSEN.commercial_use,
        _ESSEN.statement,
        _ESSEN.source,
        _ESSEN,
        licence_files=(("essenFolksong/license.txt", _ESSEN_SHA256),),
    ),  # fmt: skip
    "handel": _silent(),
    "haydn": _silent(),
    "johnson_j_r": _silent(),
    "joplin": _silent(),
    # Every file opens with "% Copyright (C) 1999 Laura E. Conrad ... under the terms of the GNU General Public
    # License ... either version 2 of the License, or (at your option) any later version."
    "josquin": CollectionLicence(
        "GPL-2.0-or-later",
        True,
        "'% Copyright (C) 1999 Laura E. Conrad' with the GNU GPL version 2 or (at your option) any later version.",
        "josquin/milleRegrets.abc",
        _SILENT,
        notices=tuple(
            (
                pattern,
                Terms(
                    "GPL-2.0-or-later",
                    True,
                    "% Copyright (C) 1999 Laura E. Conrad; GNU General Public License, version 2 or any later.",
                    "josquin/milleRegrets.abc",
                ),
            )
            for pattern in (
                r"% Copyright \(C\) 1999 Laura E\. Conrad lconrad@world\.std\.com",
                r"% under the terms of the GNU General Public License as published by",
                r"% the Free Software Foundation; either version 2 of the License, or",
                r"% GNU General Public License for more details\.",
                r"% You should have received a copy of the GNU General Public License",
            )
        ),
    ),
    "leadSheet": CollectionLicence(
        "LicenseRef-public-domain AND LicenseRef-rights-reserved",
        False,
        "Two Wikifonia lead sheets: fosterBrownHair says <rights>Public Domain</rights>; berlinAlexandersRagtime "
        "says <rights>All Rights Reserved</rights>.",
        "leadSheet/berlinAlexandersRagtime.mxl",
        _SILENT,
        notices=(
            (
                r"Public Domain",
                Terms(
                    "LicenseRef-public-domain", True, "<rights>Public Domain</rights>", "leadSheet/fosterBrownHair.mxl"
                ),
            ),
            (
                r"All Rights Reserved",
                Terms(
                    "LicenseRef-rights-reserved",
                    False,
                    "<rights>All Rights Reserved</rights>",
                    "leadSheet/berlinAlexandersRagtime.mxl",
                ),
            ),
        ),
    ),
    "liliuokalani": _silent(),
    "luca": _cc_by_sa_3("luca"),
    "lusitano": _silent(),
    # Files carry only Jack Campin's transcriber lines and notes ("Z:Jack Campin, http://www.campin.me.uk/").
    "miscFolk": _silent("Transcriber lines and notes only (Jack Campin, 2000 and 2007)."),
    "monteverdi": CollectionLicence(
        "LicenseRef-rights-reserved AND LicenseRef-unknown",
        False,
        "Two madrigals carry an OCR'd publisher notice '© UT ORPHEUS EDIZIONI 2003' in <rights>; the rest say nothing.",
        "monteverdi/madrigal.5.4.mxl",
        _SILENT,
        notices=(
            (
                r".*UT ?ORPHEUS.*",
                Terms(
                    "LicenseRef-rights-reserved",
                    False,
                    "<rights>... © UT ORPHEUS 2003</rights>: a publisher's copyright, no licence.",
                    "monteverdi/madrigal.5.4.mxl",
                ),
            ),
        ),
    ),
    "mozart": _silent(),
    # The file's only comment is "% Nottingham Music Database".
    "nottingham-dataset": _silent("The only header comment is '% Nottingham Music Database'."),
    # Files carry "B: O'Neill's ..." and transcriber lines ("Z: Transcribed by Norbert Paap ...") only.
    "oneills1850": _silent("Book and transcriber lines only ('Z: \"Transcribed by Norbert Paap\"')."),
    "palestrina": CollectionLicence(
        _MILLER.license,
        _MILLER.commercial_use,
        _MILLER.statement,
        _MILLER.source,
        _SILENT,
        notices=(
            (r"!!!YEC: Copyright 2000, John Miller", _MILLER),
            (r"!!!YEM: Rights to all derivative electronic formats reserved\.", _MILLER),
            (r"!!!YEM: Refer to licensing agreement for further details\.", _MILLER),
            (r"!!!YEM: This file must be accompanied by the licensing agreement\.", _MILLER),
            (
                r"!!!YEM: A copy of the licensing agreement may be found at http://www\.music-cog\.ohio-state\.edu/"
                r"HumdrumDatabases/Palestrina/license\.txt",
                _MILLER,
            ),
        ),
    ),  # fmt: skip
    # Files carry "B:Ryan's Mammoth Collection" and contributor lines ("Z:Contributed by Ray Davies ...") only.
    "ryansMammoth": _silent("Book and contributor lines only ('Z:Contributed by Ray Davies')."),
    "schoenberg": _silent(),
    "schubert": CollectionLicence(
        "LicenseRef-unknown",
        None,
        _EMPTY_COPYRIGHT.statement,
        "schubert/Lindenbaum.xml",
        _SILENT,
        notices=((r"Copyright ©", _EMPTY_COPYRIGHT),),
    ),  # fmt: skip
    "schumann_clara": CollectionLicence(
        "CC-BY-SA-4.0 AND LicenseRef-unknown",
        None,
        "The four polonaises say 'Typeset by Cypressdome for IMSLP and released under the CC BY-SA 4.0 license.'; "
        "opus17/movement3.xml has a bare '©'; the rest say nothing.",
        "schumann_clara/polonaise_op1n1.mxl",
        _SILENT,
        notices=(
            (
                r"Typeset by Cypressdome for IMSLP and released under the CC BY-SA 4\.0 license\.",
                Terms(
                    "CC-BY-SA-4.0",
                    True,
                    "Typeset by Cypressdome for IMSLP and released under the CC BY-SA 4.0 license.",
                    "schumann_clara/polonaise_op1n1.mxl",
                ),
            ),
            (r"©", _EMPTY_COPYRIGHT),
        ),
    ),
    "schumann_robert": _silent(),
    "theoryExercises": _silent(),
    "trecento": CollectionLicence(
        "LicenseRef-unknown",
        None,
        "Ten files have an empty 'Copyright ©' <rights>; the rest say nothing.",
        "trecento/PMFC_04-Cara mi donna.xml",
        _SILENT,
        notices=((r"Copyright ©", _EMPTY_COPYRIGHT),),
    ),  # fmt: skip
    "verdi": _silent(),
    "weber": CollectionLicence(
        "LicenseRef-public-domain",
        True,
        "'Copyright © 1998 by Oliver Seely ... and assigned to the public domain'; <rights>Released to Public Domain "
        "in 1998</rights>.",
        "weber/concertino_clarinet.mxl",
        _SILENT,
        notices=tuple(
            (
                pattern,
                Terms(
                    "LicenseRef-public-domain",
                    True,
                    "<rights>Released to Public Domain in 1998</rights>",
                    "weber/concertino_clarinet.mxl",
                ),
            )
            for pattern in (
                r"Copyright © 1998 by Oliver Seely",
                r"Released to Public Domain in 1998",
                r"and assigned to the public domain\.",
            )
        ),
    ),
    "webern": _silent(),
}

# Text that looks like a statement of rights. Deliberately wide (a false alarm only stops training until the survey
# is redone); bare "rights" is left out because titles use it ("The Book of Rights").
_NOTICE_WORDS = re.compile(
    r"copyright|licen[cs]e|©|creative commons|public domain|all rights|rights reserved|permission|\bCC[- ]BY", re.I
)
_LICENCE_FILE_NAME = re.compile(r"licen[cs]e|copying|readme|rights", re.I)


def available_collections() -> list[str]:
    """The collections a model can be trained from: the surveyed directories of music21's corpus."""
    return sorted(LICENCES)


def _collections_checked(collections: Iterable[str]) -> list[str]:
    names = sorted(set(collections))
    unknown = [name for name in names if name not in LICENCES]
    if unknown:
        raise ComposerError(
            "collection_unknown",
            f"Unknown collection(s) {', '.join(unknown)}; known: {', '.join(available_collections())}.",
        )
    if not names:
        raise ComposerError("collection_unknown", f"No collection named; known: {', '.join(available_collections())}.")
    return names


def _changed(detail: str) -> ComposerError:
    return ComposerError(
        "licence_evidence_changed", f"{detail} The installed music21 corpus no longer reads as surveyed; survey again."
    )


def _score_text(path: Path) -> str:
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as archive:
            names = sorted(n for n in archive.namelist() if n.endswith(".xml") and not n.startswith("META-INF"))
            return "\n".join(archive.read(n).decode("utf-8", "replace") for n in names)
    return path.read_bytes().decode("utf-8", "replace")


def score_notices(path: Path) -> frozenset[str]:
    """The rights statements inside one score file, whitespace-normalised: MusicXML ``<rights>`` and credit text,
    Humdrum ``!!!YEC``/``!!!YEM`` records and other ``!`` comments, ABC ``%`` comments and header fields."""
    text = _score_text(path)
    if not _NOTICE_WORDS.search(text) and not re.search(r"<rights|!!!YE[CM]", text):
        return frozenset()  # the common case, and one pass instead of one per chunk over large scores
    if path.suffix in (".xml", ".mxl", ".musicxml", ".mei"):
        rights = re.findall(r"<rights[^>]*>([^<]*)</rights>", text)
        chunks = rights + [c for c in re.findall(r">([^<>]+)<", text) if _NOTICE_WORDS.search(c)]
    elif path.suffix == ".krn":
        chunks = [line for line in text.splitlines() if line.startswith(("!!!YEC", "!!!YEM")) or line.startswith("!")]
        chunks = [c for c in chunks if c.startswith(("!!!YEC", "!!!YEM")) or _NOTICE_WORDS.search(c)]
    else:  # ABC: comments and header fields; music lines are notes, where "cc" or "B" mean nothing
        chunks = [line for line in text.splitlines() if re.match(r"%|[A-Za-z]:", line) and _NOTICE_WORDS.search(line)]
    return frozenset(" ".join(c.split()) for c in chunks if c.strip())


def _combined(terms: Iterable[Terms]) -> tuple[str, bool | None]:
    """All of several terms apply at once: an SPDX ``AND`` expression, and commercial use only if all allow it."""
    terms = list(terms)
    licence = " AND ".join(sorted({t.license for t in terms}))
    uses = {t.commercial_use for t in terms}
    return licence, (False if False in uses else None if None in uses else True)


def _collection_files(name: str) -> list[Path]:
    directory = CORPUS_ROOT / name
    if not directory.is_dir():
        raise _changed(f"The collection directory {name}/ is missing.")
    return sorted(
        (p for p in directory.rglob("*") if p.is_file() and "__pycache__" not in p.parts),
        key=lambda p: p.relative_to(CORPUS_ROOT).as_posix(),
    )


def _file_terms(name: str, path: Path) -> Terms:
    survey = LICENCES[name]
    found = []
    for notice in sorted(score_notices(path)):
        meaning = next((terms for pattern, terms in survey.notices if re.fullmatch(pattern, notice)), None)
        if meaning is None:
            raise _changed(f"{path.relative_to(CORPUS_ROOT).as_posix()} has an unsurveyed notice {notice[:200]!r}.")
        found.append(meaning)
    if not found:
        return survey.default
    licence, commercial = _combined(found)
    return found[0] if len({*found}) == 1 else Terms(licence, commercial, found[0].statement, found[0].source)


def licence_evidence_verify(collections: Iterable[str]) -> dict[str, Terms]:
    """Check the survey against the installed corpus and give the terms of every score file (by corpus path).

    Fails with ``licence_evidence_changed`` when corpus/license.txt or a directory licence file differs from the
    surveyed bytes, a licence file appeared or vanished, a score file holds a rights notice the survey does not
    know, or the files' terms no longer combine to the collection's recorded licence."""
    umbrella = CORPUS_ROOT / "license.txt"
    if not umbrella.is_file() or hashlib.sha256(umbrella.read_bytes()).hexdigest() != _UMBRELLA_SHA256:
        raise _changed("corpus/license.txt differs from the surveyed text.")
    result: dict[str, Terms] = {}
    for name in _collections_checked(collections):
        survey = LICENCES[name]
        files = _collection_files(name)
        licence_files = {p.relative_to(CORPUS_ROOT).as_posix(): p for p in files if _LICENCE_FILE_NAME.search(p.name)}
        if set(licence_files) != {path for path, _ in survey.licence_files}:
            raise _changed(f"{name}/ has licence files {sorted(licence_files)}, surveyed {survey.licence_files}.")
        for path, digest in survey.licence_files:
            if hashlib.sha256(licence_files[path].read_bytes()).hexdigest() != digest:
                raise _changed(f"{path} differs from the surveyed text.")
        terms = {p.relative_to(CORPUS_ROOT).as_posix(): _file_terms(name, p) for p in files if _is_score(p)}
        _quotes_verify(name)
        combined = _combined(terms.values()) if terms else (survey.license, survey.commercial_use)
        if combined != (survey.license, survey.commercial_use):
            surveyed = (survey.license, survey.commercial_use)
            raise _changed(f"{name}/ files now combine to {combined}, surveyed {surveyed}.")
        result.update(terms)
    return result


def _quotes_verify(name: str) -> None:
    """Each file the survey quotes still exists and still says what it is quoted as saying."""
    survey = LICENCES[name]
    quoted = {survey.source} | {t.source for _, t in survey.notices}
    for source in sorted(quoted):
        if source != "license.txt" and not (CORPUS_ROOT / source).is_file():
            raise _changed(f"{source}, quoted by the survey, is missing.")
    for meaning in {t for _, t in survey.notices}:
        if meaning not in _parts_of(meaning.source):
            raise _changed(f"{meaning.source} no longer says {meaning.statement!r}.")


def _parts_of(corpus_path: str) -> set[Terms]:
    survey = LICENCES[corpus_path.split("/")[0]]  # a shared meaning quotes a file of another collection
    notices = score_notices(CORPUS_ROOT / corpus_path)
    return {t for pattern, t in survey.notices if any(re.fullmatch(pattern, n) for n in notices)}


def _is_score(path: Path) -> bool:
    return path.suffix.lower() in SCORE_SUFFIXES


# --- Works and their melodies --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingWork:
    """One work of the training corpus: a file (relative to the corpus root), and the tune's ``X:`` number when
    the file is a book of several tunes (None for a file of one work)."""

    corpus_path: str
    number: int | None
    collection: str
    title: str
    sha256: str
    license: str

    def sort_key(self) -> tuple[str, int]:
        return self.corpus_path, -1 if self.number is None else self.number


@dataclass(frozen=True)
class _Melody:
    number: int | None
    title: str
    notes: tuple[tuple[int, float, float], ...]  # (MIDI pitch, onset, duration) in quarter notes, onset from 0
    quarter_bpm: float | None


def _top_line(score: music21.stream.Stream) -> tuple[tuple[int, float, float], ...]:
    """The highest note sounding at each onset of the top part (chords give their top note, voices within the part
    compete by pitch). Ties are merged first so a tied note is one long note; grace notes and chord symbols are
    ornaments and harmony, not melody. A note lasts until the next onset, so a rest lengthens the note before it:
    the model learns onset spacing, which is what the ear hears as the tune's rhythm."""
    parts = list(score.parts) if hasattr(score, "parts") else []
    line = (parts[0] if parts else score).stripTies(inPlace=False).flatten()
    top: dict[float, tuple[int, float]] = {}
    for element in line.notes:
        if isinstance(element, music21.harmony.Harmony) or element.duration.isGrace:
            continue
        pitches = [p.ps for p in getattr(element, "pitches", ())]
        length = float(element.quarterLength)
        if not pitches or length <= 0:
            continue
        onset = float(element.offset)
        pitch = round(max(pitches))
        if onset not in top or pitch > top[onset][0]:
            top[onset] = (pitch, length)
    onsets = sorted(top)
    notes = []
    for i, onset in enumerate(onsets):
        pitch, length = top[onset]
        duration = onsets[i + 1] - onset if i + 1 < len(onsets) else length
        notes.append((pitch, onset - onsets[0], duration))
    return tuple(notes)


def _quarter_bpm(score: music21.stream.Stream) -> float | None:
    for mark in score.recurse().getElementsByClass(music21.tempo.MetronomeMark):
        bpm = mark.getQuarterBPM()
        if bpm and 20 <= bpm <= 400:  # outside that, a text tempo music21 guessed or a typo; not a usable tempo
            return float(bpm)
    return None


def _file_sha256(corpus_path: str) -> str:
    stat = (CORPUS_ROOT / corpus_path).stat()
    return _file_sha256_as_of(corpus_path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4096)
def _file_sha256_as_of(corpus_path: str, mtime_ns: int, size: int) -> str:
    """Hashed once per version of a file: a book of a hundred tunes is read once, not once per tune."""
    return hashlib.sha256((CORPUS_ROOT / corpus_path).read_bytes()).hexdigest()


@lru_cache(maxsize=4096)
def _file_checked(work: TrainingWork) -> None:
    """Refuse a work whose file is not the one the manifest names: outside the corpus (a crafted manifest), gone,
    or changed since training (a music21 upgrade), so a model never registers melodies it did not learn from."""
    path = (CORPUS_ROOT / work.corpus_path).resolve()
    if not path.is_relative_to(CORPUS_ROOT.resolve()) or not path.is_file():
        raise ComposerError("work_missing", f"{work.corpus_path} is not a file of music21's corpus.")
    if _file_sha256(work.corpus_path) != work.sha256:
        raise ComposerError(
            "work_changed", f"{work.corpus_path} is not the file the model was trained on (its SHA-256 differs)."
        )


@lru_cache(maxsize=4096)
def _file_melodies(corpus_path: str, sha256: str) -> tuple[_Melody, ...] | str:
    """Parse one file once (the file's hash is in the key so an edited file is read again) and keep only its
    melodies, which are small; music21 writes no pickle because of ``forceSource``/``storePickle``. A file music21
    cannot read gives the reason as a string."""
    path = CORPUS_ROOT / corpus_path
    try:
        parsed = music21.converter.parse(path, forceSource=True, storePickle=False)
    except Exception as exc:  # any parser failure only skips the file, with the reason recorded
        return f"music21 cannot parse it: {type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(parsed, music21.stream.Opus):
        scores = list(parsed.scores)
        numbers = [_x_number(s) for s in scores]
        # X: numbers identify tunes in a book; where a book repeats or omits them, the position is the identity.
        if None in numbers or len(set(numbers)) != len(numbers):
            numbers = list(range(1, len(scores) + 1))
    else:
        scores, numbers = [parsed], [None]
    melodies = []
    for score, number in zip(scores, numbers, strict=True):
        title = (score.metadata.title if score.metadata else None) or path.stem
        melodies.append(_Melody(number, str(title).strip(), _top_line(score), _quarter_bpm(score)))
    return tuple(melodies)


def _x_number(score: music21.stream.Score) -> int | None:
    try:
        return int(str(score.metadata.number).strip())
    except (AttributeError, TypeError, ValueError):
        return None


def _works_and_skipped(
    collections: Sequence[str], progress: Callable[[int, int], None] | None = None
) -> tuple[list[TrainingWork], list[dict]]:
    names = _collections_checked(collections)
    terms = licence_evidence_verify(names)
    files = [(name, p.relative_to(CORPUS_ROOT).as_posix(), p) for name in names for p in _collection_files(name)]
    works: list[TrainingWork] = []
    skipped: list[dict] = []
    for done, (name, corpus_path, path) in enumerate(files, start=1):
        if _LICENCE_FILE_NAME.search(path.name):
            pass  # the directory's licence, read by the evidence check
        elif not _is_score(path):
            skipped.append({"corpus_path": corpus_path, "number": None, "reason": f"not a score: {path.suffix}"})
        else:
            digest = _file_sha256(corpus_path)
            melodies = _file_melodies(corpus_path, digest)
            if isinstance(melodies, str):
                skipped.append({"corpus_path": corpus_path, "number": None, "reason": melodies})
            for melody in () if isinstance(melodies, str) else melodies:
                if len(melody.notes) < 2:
                    skipped.append({"corpus_path": corpus_path, "number": melody.number, "reason": "no melody"})
                    continue
                license = terms[corpus_path].license
                works.append(TrainingWork(corpus_path, melody.number, name, melody.title, digest, license))
        if progress is not None:
            progress(done, len(files))
    return sorted(works, key=TrainingWork.sort_key), skipped


def training_works(collections: Sequence[str]) -> list[TrainingWork]:
    """Every work with a melody in the named collections, sorted by corpus path and tune number. Files music21
    cannot parse, and works without a melody, are left out (``train`` lists them in the manifest as skipped)."""
    return _works_and_skipped(collections)[0]


def _melody_of(work: TrainingWork) -> _Melody:
    _file_checked(work)
    melodies = _file_melodies(work.corpus_path, work.sha256)
    if isinstance(melodies, str):
        raise ComposerError("work_unreadable", f"{work.corpus_path}: {melodies}")
    for melody in melodies:
        if melody.number == work.number:
            return melody
    raise ComposerError("work_missing", f"{work.corpus_path} has no work number {work.number}.")


def work_melody(work: TrainingWork) -> list[tuple[int, float]]:
    """The steps of the work's main melody: one per note after the first, as (interval in semitones from the note
    before, quarter notes until the next note; the last note's own length). Not yet snapped to the model's
    vocabulary (``MelodyModel.from_sequences`` does that)."""
    notes = _melody_of(work).notes
    return [(notes[i][0] - notes[i - 1][0], notes[i][2]) for i in range(1, len(notes))]


def work_midi(work: TrainingWork) -> bytes:
    """The work's main melody as a single-track Standard MIDI File (format 0, 480 ticks per quarter, program 0 on
    channel 1) at the work's first notated tempo, else 100 quarter notes a minute; the same work always gives the
    same bytes. This is what registers a training work as a reference work."""
    melody = _melody_of(work)
    bpm = melody.quarter_bpm or DEFAULT_BPM
    events: list[tuple[int, int, mido.Message]] = []  # (tick, order: offs before ons, message)
    for pitch, onset, duration in melody.notes:
        start = round(onset * _MIDI_TICKS_PER_QUARTER)
        end = max(start + 1, round((onset + duration) * _MIDI_TICKS_PER_QUARTER))
        note = min(127, max(0, pitch))
        events.append((start, 1, mido.Message("note_on", note=note, velocity=_MIDI_VELOCITY)))
        events.append((end, 0, mido.Message("note_off", note=note, velocity=0)))
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0),
            mido.Message("program_change", program=0, time=0),
        ]
    )
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(type=0, ticks_per_beat=_MIDI_TICKS_PER_QUARTER, tracks=[track])
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


# --- Training and the model files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with the manifest it was trained from; ``model.training_digest`` is the manifest's SHA-256."""

    model: MelodyModel
    manifest: dict = field(hash=False)
    manifest_bytes: bytes


def _canonical(document: dict) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _collection_digest(works: Iterable[TrainingWork]) -> str:
    """SHA-256 over one line per work, "corpus_path#number:sha256\\n" (number empty for single-work files)."""
    lines = "".join(f"{w.corpus_path}#{'' if w.number is None else w.number}:{w.sha256}\n" for w in works)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def train(
    collections: Sequence[str], *, order: int = 2, progress: Callable[[int, int], None] | None = None
) -> TrainedModel:
    """Train a melody model on the named collections. ``progress(done, total)`` is called after each file.

    Training is deterministic: the same collections from the same installed corpus give byte-identical model and
    manifest files. Fails with ``collection_unknown``, ``licence_evidence_changed`` or ``training_empty``."""
    works, skipped = _works_and_skipped(collections, progress)
    manifest = {
        "format": MANIFEST_FORMAT,
        "music21_version": music21.__version__,
        "order": order,
        "collections": [
            {
                "name": name,
                "license": LICENCES[name].license,
                "commercial_use": LICENCES[name].commercial_use,
                "statement": LICENCES[name].statement,
                "source": LICENCES[name].source,
                "work_count": sum(1 for w in works if w.collection == name),
                "digest": _collection_digest(w for w in works if w.collection == name),
            }
            for name in _collections_checked(collections)
        ],
        "works": [
            {
                "corpus_path": w.corpus_path,
                "number": w.number,
                "collection": w.collection,
                "title": w.title,
                "sha256": w.sha256,
                "license": w.license,
            }
            for w in works
        ],
        "skipped": sorted(skipped, key=lambda s: (s["corpus_path"], s["number"] or 0)),
    }
    manifest_bytes = _canonical(manifest)
    model = MelodyModel.from_sequences(
        (work_melody(w) for w in works), training_digest=hashlib.sha256(manifest_bytes).hexdigest(), order=order
    )
    return TrainedModel(model=model, manifest=manifest, manifest_bytes=manifest_bytes)


def _write_atomically(path: Path, data: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the model is read by other users and shipped
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def model_write(trained: TrainedModel, directory: Path) -> None:
    """Write ``manifest.json`` and ``model.json`` into ``directory``, each atomically (temporary file, fsync,
    rename), manifest first: a crash between the two leaves a pair ``model_load`` rejects, never a half file."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomically(directory / MANIFEST_FILE, trained.manifest_bytes)
    _write_atomically(directory / MODEL_FILE, trained.model.to_bytes())
    if hasattr(os, "O_DIRECTORY"):  # make the renames themselves durable
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def model_load(directory: Path = DEFAULT_MODEL_DIR) -> tuple[MelodyModel, dict]:
    """Read a model and its manifest and check they belong together: the SHA-256 of ``manifest.json`` must be the
    model's ``training_digest``. Fails with ``model_missing``, ``model_corrupt`` or ``model_manifest_mismatch``."""
    try:
        model_bytes = (directory / MODEL_FILE).read_bytes()
        manifest_bytes = (directory / MANIFEST_FILE).read_bytes()
    except FileNotFoundError as exc:
        raise ComposerError("model_missing", f"No melody model file at {exc.filename}.") from None
    model = MelodyModel.from_bytes(model_bytes)
    if hashlib.sha256(manifest_bytes).hexdigest() != model.training_digest:
        raise ComposerError(
            "model_manifest_mismatch",
            f"{directory / MANIFEST_FILE} is not the manifest the model in {directory} was trained from.",
        )
    try:
        manifest = json.loads(manifest_bytes)
        if manifest.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {MANIFEST_FORMAT!r}")
    except (ValueError, AttributeError) as exc:
        raise ComposerError("model_corrupt", f"The training manifest is unreadable: {exc}") from None
    return model, manifest
