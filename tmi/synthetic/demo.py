"""The ``make demo`` population: synthetic mammography studies with known ground truth.

:func:`generate_demo` writes, under ``out_dir``:

- ``<clinic>/<patient id>/<study date>_<laterality><view>.dcm`` — MG studies of four views (R/L × CC/MLO,
  with ViewPosition, ImageLaterality, BodyPartExamined BREAST) for six invented patients at two clinics:
  repeat visits weeks apart; one person registered at both clinics under different IDs
  (IssuerOfPatientID and InstitutionName differ); one typo (same ID and clinic, name misspelt by one
  letter on the second visit); one instance with BurnedInAnnotation=YES. Folder names carry PHI on
  purpose (real exports do; TMI must never reuse them).
- ``corrupt/<name>.dcm`` — one corrupt file (a valid instance cut off inside its pixel data, or garbage).
  dcmtk's ``storescu`` refuses to send such a file, so a demo delivers it another way (e.g. straight into
  the intake bucket); :attr:`DemoInstance.sendable_by_cstore` says which files C-STORE can carry.

It returns a :class:`DemoManifest` with who is who and what each file should become (written or quarantined
with which reason), for the demo's summary and for tests. Deterministic: the same seed gives byte-identical
files.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from tmi.synthetic.dicom import (
    DEFAULT_CLINIC,
    Clinic,
    StudyInfo,
    SyntheticPatient,
    mammo_instance,
    new_study,
    synthetic_uid,
    write_dataset,
)

VIEWS: tuple[tuple[str, str], ...] = (("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO"))

NORTH = DEFAULT_CLINIC  # the demo's first clinic is the generators' default clinic
SOUTH = Clinic(
    key="south",
    institution="Southport Women's Health Centre",
    issuer="SWHC-PID",
    address="4 Mill Lane, Southport",
    department="Radiology",
    station="SWHC-MAMMO2",
    calling_aet="SWHC_MG02",
    manufacturer="Globex Imaging",
    model="MammoVista 9",
    device_serial="SP-10442",
)
CLINICS: dict[str, Clinic] = {NORTH.key: NORTH, SOUTH.key: SOUTH}

Outcome = Literal["written", "quarantined"]


@dataclass(frozen=True, slots=True)
class DemoIdentity:
    """How one clinic knows a person: its issuer, the patient ID it assigned and the name it typed."""

    clinic: str
    institution: str
    issuer: str
    patient_id: str
    name: str


@dataclass(frozen=True, slots=True)
class DemoPerson:
    """A real (invented) person, with every identity under which their images arrive."""

    key: str
    true_name: str
    sex: str
    birth_date: str
    identities: tuple[DemoIdentity, ...]
    visits: int


@dataclass(frozen=True, slots=True)
class DemoInstance:
    """One generated file and what TMI should make of it."""

    path: Path
    person: str  # DemoPerson.key
    clinic: str
    patient_id: str
    patient_name: str  # as written in the header (the typo case differs from the true name)
    visit: int  # 1-based visit number of this person
    study_uid: str
    series_uid: str
    sop_uid: str
    accession: str
    study_date: str
    laterality: str
    view: str
    burned_in: bool
    corrupt: bool
    sendable_by_cstore: bool
    expected_outcome: Outcome
    expected_reason: str | None  # a tmi.deid.reasons code when quarantined


@dataclass(frozen=True, slots=True)
class TypoCase:
    """The same person, ID and clinic, with the name misspelt by one letter on one visit."""

    person: str
    clinic: str
    patient_id: str
    correct_name: str
    misspelt_name: str
    misspelt_study_uid: str


@dataclass(frozen=True, slots=True)
class TwoIdsCase:
    """One person known to two clinics under different IDs (different issuer and institution)."""

    person: str
    identities: tuple[DemoIdentity, ...]


@dataclass(frozen=True, slots=True)
class DemoManifest:
    """Everything :func:`generate_demo` wrote, with the ground truth."""

    root: Path
    seed: int
    clinics: tuple[Clinic, ...]
    persons: tuple[DemoPerson, ...]
    instances: tuple[DemoInstance, ...]
    typo: TypoCase
    two_ids: TwoIdsCase
    # person key -> values that must never reach the research side
    phi_tokens: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def expected_written(self) -> tuple[DemoInstance, ...]:
        """Instances that should reach the research side."""
        return tuple(i for i in self.instances if i.expected_outcome == "written")

    @property
    def expected_quarantined(self) -> tuple[DemoInstance, ...]:
        """Instances that should be quarantined (burned-in annotation, corrupt file)."""
        return tuple(i for i in self.instances if i.expected_outcome == "quarantined")

    @property
    def cstore_paths(self) -> tuple[Path, ...]:
        """Files a modality can send over C-STORE (everything except the corrupt file)."""
        return tuple(i.path for i in self.instances if i.sendable_by_cstore)

    def studies(self) -> dict[str, tuple[DemoInstance, ...]]:
        """Instances grouped by original StudyInstanceUID (corrupt file excluded)."""
        out: dict[str, list[DemoInstance]] = {}
        for inst in self.instances:
            if not inst.corrupt:
                out.setdefault(inst.study_uid, []).append(inst)
        return {k: tuple(v) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable view (paths as strings). Confidential: it holds the synthetic PHI."""
        def conv(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: conv(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [conv(v) for v in value]
            return value

        data: dict[str, Any] = conv(asdict(self))
        data["counts"] = {
            "files": len(self.instances),
            "persons": len(self.persons),
            "studies": len(self.studies()),
            "expected_written": len(self.expected_written),
            "expected_quarantined": len(self.expected_quarantined),
        }
        return data

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_dict` to ``path`` (keep it outside the folder sent to the modality)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


@dataclass(frozen=True, slots=True)
class _Visit:
    person: str
    patient: SyntheticPatient
    clinic: Clinic
    when: date
    name_override: str | None = None
    burned_in_view: tuple[str, str] | None = None


def _patient(family: str, given: str, sex: str, birth: str, pid: str, clinic: Clinic, rng: random.Random,
             middle: str = "") -> SyntheticPatient:
    return SyntheticPatient(
        family=family, given=given, middle=middle, sex=sex, birth_date=birth, patient_id=pid,
        issuer=clinic.issuer,
        other_ids=((f"NHS{rng.randrange(10**9, 10**10)}", "NATIONAL-HEALTH-ID"),),
        address=f"{rng.randrange(1, 200)} {rng.choice(('Kongensgade', 'Birch Street', 'Via Roma'))}, "
                f"{rng.choice(('Northbridge', 'Southport', 'Lakeside'))}",
        phone=f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
        mother_birth_name=f"{rng.choice(('WEBER', 'COSTA', 'HOLM'))}^{rng.choice(('ROSA', 'EDDA', 'FREYA'))}",
        occupation=rng.choice(("TEACHER", "NURSE", "ENGINEER", "RETIRED")),
    )


def _persons(seed: int) -> tuple[list[_Visit], dict[str, SyntheticPatient]]:
    rng = random.Random(f"{seed}:demo")  # noqa: S311 - deterministic synthetic data
    start = date(2026, 9, 7) + timedelta(days=rng.randrange(0, 14))
    weeks = timedelta(weeks=1)

    def pid(prefix: str) -> str:
        return f"{prefix}{rng.randrange(100000, 999999)}"

    andersen = _patient("ANDERSEN", "KAREN", "F", "19640312", pid("N"), NORTH, rng)
    okafor_n = _patient("OKAFOR", "GRACE", "F", "19711123", pid("N"), NORTH, rng, middle="ADAEZE")
    okafor_s = replace(okafor_n, patient_id=pid("S"), issuer=SOUTH.issuer)
    hartmann = _patient("HARTMANN", "HILKE", "F", "19580730", pid("S"), SOUTH, rng)
    dubois = _patient("DUBOIS", "CLAIRE", "F", "19800205", pid("N"), NORTH, rng)
    silva = _patient("SILVA", "JOÃO", "M", "19550918", pid("S"), SOUTH, rng)
    muller = _patient("MÜLLER", "SOPHIE", "F", "19690414", pid("N"), NORTH, rng)
    visits = [
        _Visit("andersen", andersen, NORTH, start),
        _Visit("andersen", andersen, NORTH, start + 6 * weeks),  # repeat visit, six weeks later
        _Visit("okafor", okafor_n, NORTH, start + 1 * weeks),
        _Visit("okafor", okafor_s, SOUTH, start + 5 * weeks),  # same person, other clinic, other ID
        _Visit("hartmann", hartmann, SOUTH, start + 2 * weeks),
        # Typo: same ID and clinic, family name misspelt by one letter (A -> E).
        _Visit("hartmann", hartmann, SOUTH, start + 8 * weeks, name_override="HERTMANN^HILKE"),
        _Visit("dubois", dubois, NORTH, start + 3 * weeks, burned_in_view=("R", "MLO")),
        _Visit("silva", silva, SOUTH, start + 3 * weeks),
        _Visit("muller", muller, NORTH, start + 4 * weeks),
    ]
    return visits, {"andersen": andersen, "okafor": okafor_n, "hartmann": hartmann, "dubois": dubois,
                    "silva": silva, "muller": muller}


def _truncated(data: bytes) -> bytes:
    """Cut a Part 10 file in the middle of its pixel data, as an interrupted transfer leaves it."""
    return data[: len(data) - len(data) // 3]


def generate_demo(out_dir: Path, seed: int = 7, *, rows: int = 320, columns: int = 256,
                  corrupt_kind: Literal["truncated", "garbage"] = "truncated") -> DemoManifest:
    """Write the demo population under ``out_dir`` and return its manifest (see the module docstring).

    ``rows``×``columns`` is the image size (small so the demo is fast). ``corrupt_kind`` chooses the corrupt
    file: ``truncated`` (a valid instance cut inside its pixel data → ``dicom.truncated``) or ``garbage``
    (random bytes with a ``.dcm`` name → ``dicom.unparseable``).
    """
    out_dir = Path(out_dir)
    visits, canonical = _persons(seed)
    instances: list[DemoInstance] = []
    visit_no: dict[str, int] = {}
    studies: dict[tuple[str, int], StudyInfo] = {}
    for v in visits:
        visit_no[v.person] = visit_no.get(v.person, 0) + 1
        n = visit_no[v.person]
        patient = v.patient
        if v.name_override:
            family, given = v.name_override.split("^", 1)
            patient = replace(patient, family=family, given=given)
        study = new_study(seed, patient, v.clinic, study_date=v.when, key=f"{v.person}:{n}")
        # Keep the study UID independent of the (possibly misspelt) name.
        studies[(v.person, n)] = study
        for laterality, view in VIEWS:
            burned = v.burned_in_view == (laterality, view)
            ds = mammo_instance(seed, patient=patient, clinic=v.clinic, study=study, view=view,
                                laterality=laterality, rows=rows, columns=columns, burned_in=burned)
            path = out_dir / v.clinic.key / patient.patient_id / f"{study.date}_{laterality}{view}.dcm"
            write_dataset(ds, path)
            instances.append(DemoInstance(
                path=path, person=v.person, clinic=v.clinic.key, patient_id=patient.patient_id,
                patient_name=patient.name, visit=n, study_uid=study.study_uid,
                series_uid=str(ds.SeriesInstanceUID), sop_uid=str(ds.SOPInstanceUID),
                accession=study.accession, study_date=study.date, laterality=laterality, view=view,
                burned_in=burned, corrupt=False, sendable_by_cstore=True,
                expected_outcome="quarantined" if burned else "written",
                expected_reason="pixels.burned_in_annotation" if burned else None,
            ))

    # The corrupt file: an extra image of Andersen's second visit, cut off in transfer (or plain garbage).
    andersen = canonical["andersen"]
    study = studies[("andersen", 2)]
    ds = mammo_instance(seed, patient=andersen, clinic=NORTH, study=study, view="CC", laterality="R",
                        rows=rows, columns=columns)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = synthetic_uid(seed, "corrupt-sop")
    ds.SeriesInstanceUID = synthetic_uid(seed, "corrupt-series")
    ds.SeriesNumber = 5
    ds.SeriesDescription = "R CC REPEAT"
    tmp = out_dir / "corrupt" / f"{study.date}_RCC_repeat.dcm"
    write_dataset(ds, tmp)
    if corrupt_kind == "truncated":
        tmp.write_bytes(_truncated(tmp.read_bytes()))
        reason = "dicom.truncated"
    else:
        tmp.write_bytes(random.Random(f"{seed}:garbage").randbytes(4096))  # noqa: S311
        reason = "dicom.unparseable"
    instances.append(DemoInstance(
        path=tmp, person="andersen", clinic=NORTH.key, patient_id=andersen.patient_id,
        patient_name=andersen.name, visit=2, study_uid=study.study_uid, series_uid=str(ds.SeriesInstanceUID),
        sop_uid=str(ds.SOPInstanceUID), accession=study.accession, study_date=study.date, laterality="R",
        view="CC", burned_in=False, corrupt=True, sendable_by_cstore=False, expected_outcome="quarantined",
        expected_reason=reason,
    ))

    persons = []
    for key, patient in canonical.items():
        identities = []
        for v in visits:
            if v.person != key:
                continue
            ident = DemoIdentity(clinic=v.clinic.key, institution=v.clinic.institution,
                                 issuer=v.patient.issuer, patient_id=v.patient.patient_id,
                                 name=v.name_override or v.patient.name)
            if ident not in identities:
                identities.append(ident)
        persons.append(DemoPerson(key=key, true_name=patient.name, sex=patient.sex,
                                  birth_date=patient.birth_date, identities=tuple(identities),
                                  visits=visit_no[key]))
    by_key = {p.key: p for p in persons}
    hartmann = canonical["hartmann"]
    typo = TypoCase(person="hartmann", clinic=SOUTH.key, patient_id=hartmann.patient_id,
                    correct_name=hartmann.name, misspelt_name="HERTMANN^HILKE",
                    misspelt_study_uid=studies[("hartmann", 2)].study_uid)
    two_ids = TwoIdsCase(person="okafor", identities=by_key["okafor"].identities)
    tokens = {key: p.phi_tokens() + tuple(i.patient_id for i in by_key[key].identities)
              for key, p in canonical.items()}
    tokens["hartmann"] += ("HERTMANN",)
    return DemoManifest(root=out_dir, seed=seed, clinics=(NORTH, SOUTH), persons=tuple(persons),
                        instances=tuple(instances), typo=typo, two_ids=two_ids, phi_tokens=tokens)
