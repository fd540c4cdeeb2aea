"""Realistic synthetic DICOM instances with PHI-rich headers, deterministic from a seed.

Every identity here is invented (names from short built-in lists, IDs from a seeded RNG). The headers carry
the kinds of PHI real modalities send: names, IDs, other IDs with issuers, accession numbers, birth date,
address, phone, referring / performing / reading physicians, operators, institution and station, free-text
comments and history, dates and times, nested sequences with UIDs and references, and private tags.

Builders:
- :func:`small_instance` — ~0.5 MB CR/DX/MG (512×512, 16-bit) for tests and the small benchmark corpus.
- :func:`large_mg_instance` — a ~27 MB digital mammogram (4096×3328, 16-bit).
- :func:`write_multiframe_streaming` — a large breast-tomosynthesis-like multi-frame written straight to
  disk: the header via pydicom, then raw pixel bytes frame by frame (memory stays flat whatever the size).
- :func:`encapsulated_instance` / :func:`write_encapsulated_streaming` — JPEG-compressed variants whose
  codestream is taken from pydicom's bundled test files.
- :func:`mammo_instance` — one MG view (CC/MLO, L/R) for a given patient, clinic and study (the demo).
"""

from __future__ import annotations

import math
import random
import struct
import unicodedata
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import pydicom
import pydicom.data
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    generate_uid,
)
from pydicom.valuerep import PersonName

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root: synthetic data only
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.8.498.1"

SOP_CLASS = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",  # Digital Mammography X-Ray Image Storage - For Presentation
    "BTO": "1.2.840.10008.5.1.4.1.1.13.1.3",  # Breast Tomosynthesis Image Storage
    "SC": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"
STUDY_ROOT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; still seen)

FEMALE_GIVEN = ("ANNA", "KAREN", "GRACE", "CLAIRE", "SOPHIE", "HILKE", "MARIA", "INGRID", "NADIA", "EMILIA",
                "HÉLÈNE", "JOANNA", "YASMIN", "BEATRIZ", "FREYA", "EDDA", "PRIYA", "ROSA", "TERESA", "ZOË")
MALE_GIVEN = ("JOÃO", "PETER", "AHMED", "LUCAS", "MIKKEL", "OMAR", "STEFAN", "TOMÁS", "VIKTOR", "DANIEL")
FAMILY = ("ANDERSEN", "OKAFOR", "HARTMANN", "DUBOIS", "SILVA", "MÜLLER", "LINDQVIST", "NOWAK", "ROSSI",
          "GARCÍA", "KOWALSKI", "JANSSEN", "O'BRIEN", "NAKAMURA", "PETROVA", "HAMZA", "FISCHER", "MOREAU",
          "BJÖRK", "KELLY", "SANTOS", "VOGEL", "NIELSEN", "COSTA", "WEBER", "LAURENT", "HOLM", "BRANDT")
STAFF = ("WRIGHT^JAMES^DR", "OKONKWO^ADA^DR", "LEBLANC^MARC", "SØRENSEN^METTE", "RAMOS^LUIS^DR",
         "TAN^MEI", "KOVÁCS^IVAN^DR", "BAKER^SUSAN", "HUSSAIN^IMRAN^DR", "EKSTRÖM^LARS")
STREETS = ("Harbour Road", "Linden Allee", "Rue des Écoles", "Mill Lane", "Kongensgade", "Via Roma",
           "Birch Street", "Avenida Central")
# Specific Character Sets the builders can write (``charset=`` arguments).
LATIN1 = "ISO_IR 100"
UTF8 = "ISO_IR 192"
JAPANESE = "ISO 2022 IR 87"
UTF8_FEMALE = (("ΠΑΠΑΔΟΠΟΥΛΟΥ", "ΕΛΕΝΗ"), ("ИВАНОВА", "ОЛЬГА"), ("ŁUKASIEWICZ", "ZOFIA"),
               ("NGUYỄN", "THỊ LAN"), ("ÇELİK", "AYŞE"), ("王", "芳"))
UTF8_MALE = (("ΠΑΠΑΔΟΠΟΥΛΟΣ", "ΝΙΚΟΣ"), ("ИВАНОВ", "СЕРГЕЙ"), ("WÓJCIK", "PIOTR"), ("李", "伟"))
# (romaji family, romaji given, kanji family, kanji given, hiragana family, hiragana given)
JP_FEMALE = (("YAMADA", "HANAKO", "山田", "花子", "やまだ", "はなこ"),
             ("SUZUKI", "YUKI", "鈴木", "由紀", "すずき", "ゆき"),
             ("TANAKA", "AIKO", "田中", "愛子", "たなか", "あいこ"))
JP_MALE = (("SATO", "TAROU", "佐藤", "太郎", "さとう", "たろう"),)
CITIES = ("Northbridge", "Southport", "Eastwick", "Westfield", "Lakeside")
OCCUPATIONS = ("TEACHER", "NURSE", "ENGINEER", "RETIRED", "ACCOUNTANT", "FARMER", "ARTIST")

# (CodeValue, CodingSchemeDesignator, CodeMeaning) for MG views (CID 4014) and the breast (SCT).
VIEW_CODES = {
    "CC": ("399162004", "SCT", "cranio-caudal"),
    "MLO": ("399368009", "SCT", "medio-lateral oblique"),
}
BREAST_CODE = ("76752008", "SCT", "Breast")


@dataclass(frozen=True, slots=True)
class Clinic:
    """A sending clinic: the institution identity a modality writes into every header."""

    key: str
    institution: str
    issuer: str  # IssuerOfPatientID: the clinic's MRN namespace
    address: str
    department: str
    station: str
    calling_aet: str
    manufacturer: str = "ACME Medical"
    model: str = "Senographe Synth 3000"
    device_serial: str = "SN-0000"


DEFAULT_CLINIC = Clinic(
    key="north",
    institution="North Valley Breast Clinic",
    issuer="NVBC-MRN",
    address="12 Harbour Road, Northbridge",
    department="Breast Imaging",
    station="NVBC-MG01",
    calling_aet="NVBC_MG01",
    device_serial="NV-88231",
)


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    """An invented patient with every identifying attribute a clinic might send."""

    family: str
    given: str
    middle: str
    sex: str  # "F" / "M" / "O"
    birth_date: str  # YYYYMMDD
    patient_id: str
    issuer: str
    other_ids: tuple[tuple[str, str], ...]  # (id, issuer)
    address: str
    phone: str
    mother_birth_name: str
    occupation: str
    ideographic: str = ""  # PN ideographic group, e.g. "山田^花子" (ISO 2022 IR 87)
    phonetic: str = ""  # PN phonetic group, e.g. "やまだ^はなこ"

    @property
    def name(self) -> str:
        """The DICOM PN value: ``FAMILY^GIVEN[^MIDDLE]``, then ``=ideographic=phonetic`` groups if any."""
        alphabetic = f"{self.family}^{self.given}" + (f"^{self.middle}" if self.middle else "")
        return f"{alphabetic}={self.ideographic}={self.phonetic}" if self.ideographic else alphabetic

    def phi_tokens(self) -> tuple[str, ...]:
        """Values that identify this patient and must never appear in de-identified output."""
        tokens = [self.family, self.given, self.patient_id, self.birth_date, self.phone, self.address,
                  self.mother_birth_name.split("^")[0]]
        if self.middle:
            tokens.append(self.middle)
        for group in (self.ideographic, self.phonetic):
            tokens.extend(group.split("^"))
        tokens.extend(i for i, _ in self.other_ids)
        return tuple(t for t in tokens if t)


def _rng(seed: int | str, *parts: object) -> random.Random:
    """A deterministic RNG for ``seed`` and a role (string seeding is stable across processes)."""
    # Deterministic test data, not secrets: a seeded PRNG is the point.
    return random.Random(":".join(str(p) for p in (seed, *parts)))  # noqa: S311


def synthetic_uid(seed: int | str, *parts: object) -> UID:
    """A deterministic UID under the synthetic root for ``seed`` and a role."""
    return generate_uid(prefix=UID_ROOT, entropy_srcs=[str(seed), *(str(p) for p in parts)])


def random_patient(rng: random.Random, *, issuer: str = DEFAULT_CLINIC.issuer, sex: str | None = None,
                   id_prefix: str = "", charset: str = LATIN1) -> SyntheticPatient:
    """An invented patient drawn from ``rng`` (female four times in five unless ``sex`` is given).

    ``charset`` picks names its repertoire can carry: Latin-1 names for ISO_IR 100, Greek / Cyrillic /
    Polish / Vietnamese / Turkish / Chinese for ISO_IR 192 (UTF-8), and romaji + kanji + hiragana PN
    component groups for ISO 2022 IR 87 (Japanese).
    """
    sex = sex or ("F" if rng.random() < 0.8 else "M")
    ideographic = phonetic = ""
    if charset == UTF8:
        family, given = rng.choice(UTF8_FEMALE if sex == "F" else UTF8_MALE)
        middle = ""
    elif charset == JAPANESE:
        family, given, kanji_f, kanji_g, kana_f, kana_g = rng.choice(JP_FEMALE if sex == "F" else JP_MALE)
        ideographic, phonetic, middle = f"{kanji_f}^{kanji_g}", f"{kana_f}^{kana_g}", ""
    else:
        given_pool = FEMALE_GIVEN if sex == "F" else MALE_GIVEN
        family, given = rng.choice(FAMILY), rng.choice(given_pool)
        middle = rng.choice(given_pool) if rng.random() < 0.3 else ""
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(0, 365 * 60))
    return SyntheticPatient(
        family=family,
        given=given,
        middle=middle,
        ideographic=ideographic,
        phonetic=phonetic,
        sex=sex,
        birth_date=birth.strftime("%Y%m%d"),
        patient_id=f"{id_prefix}{rng.randrange(10**6, 10**7)}",
        issuer=issuer,
        other_ids=((f"NHS{rng.randrange(10**9, 10**10)}", "NATIONAL-HEALTH-ID"),
                   (f"INS-{rng.randrange(10**5, 10**6)}", "ACME-INSURANCE")),
        address=f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, {rng.choice(CITIES)}",
        phone=f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
        mother_birth_name=f"{rng.choice(FAMILY)}^{rng.choice(FEMALE_GIVEN)}",
        occupation=rng.choice(OCCUPATIONS),
    )


@dataclass(frozen=True, slots=True)
class StudyInfo:
    """Study-level values shared by every instance of one visit."""

    study_uid: str
    accession: str
    study_id: str
    date: str  # YYYYMMDD
    time: str  # HHMMSS.ffffff
    referring: str
    reading: str
    description: str
    requested_procedure_id: str
    mpps_uid: str


def new_study(seed: int | str, patient: SyntheticPatient, clinic: Clinic, *, study_date: date | None = None,
              description: str = "MAMMO SCREENING BILATERAL", key: object = 0) -> StudyInfo:
    """A study (visit) of ``patient`` at ``clinic``; deterministic for ``seed`` and ``key``."""
    rng = _rng(seed, "study", patient.patient_id, key)
    when = study_date or (date(2026, 1, 5) + timedelta(days=rng.randrange(0, 300)))
    hour, minute, sec = rng.randrange(7, 18), rng.randrange(0, 60), rng.randrange(0, 60)
    return StudyInfo(
        study_uid=synthetic_uid(seed, "study", patient.patient_id, key),
        accession=f"A{rng.randrange(10**7, 10**8)}",
        study_id=str(rng.randrange(1000, 99999)),
        date=when.strftime("%Y%m%d"),
        time=f"{hour:02d}{minute:02d}{sec:02d}.{rng.randrange(0, 10**6):06d}",
        referring=rng.choice(STAFF),
        reading=rng.choice(STAFF),
        # Descriptions that leak the patient's surname, as free-typed ones do (Clean Descriptors).
        description=f"{description} ({patient.family.title()})",
        requested_procedure_id=f"RP{rng.randrange(10**5, 10**6)}",
        mpps_uid=synthetic_uid(seed, "mpps", patient.patient_id, key),
    )


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def _file_meta(sop_class: str, sop_uid: str, transfer_syntax: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(IMPLEMENTATION_UID)
    meta.ImplementationVersionName = "TMI_SYNTH_1"
    meta.SourceApplicationEntityTitle = "NVBC_MG01"
    return meta


@dataclass(frozen=True, slots=True)
class _Image:
    rows: int
    columns: int
    bits_allocated: int = 16
    bits_stored: int = 12
    frames: int = 1
    photometric: str = "MONOCHROME2"
    samples: int = 1


def _header(
    seed: int | str,
    *,
    patient: SyntheticPatient,
    clinic: Clinic,
    study: StudyInfo,
    modality: str,
    sop_class: str,
    series_key: object,
    instance_key: object,
    image: _Image,
    transfer_syntax: str = ExplicitVRLittleEndian,
    view: str | None = None,
    laterality: str | None = None,
    burned_in: bool = False,
    charset: str = LATIN1,
) -> FileDataset:
    """A PHI-rich header (no PixelData) for one instance; the caller adds or streams the pixels."""
    rng = _rng(seed, "instance", patient.patient_id, study.study_uid, series_key, instance_key)
    series_uid = synthetic_uid(seed, "series", study.study_uid, series_key)
    sop_uid = synthetic_uid(seed, "sop", study.study_uid, series_key, instance_key)
    operator, performer = rng.choice(STAFF), rng.choice(STAFF)

    meta = _file_meta(sop_class, sop_uid, transfer_syntax)
    ds = FileDataset("", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    # Japanese: default repertoire (ASCII) first, then the kanji/kana code extension.
    ds.SpecificCharacterSet = ["", JAPANESE] if charset == JAPANESE else charset
    ds.ImageType = ["ORIGINAL", "PRIMARY"] + (["TOMOSYNTHESIS", "NONE"] if modality == "BTO" else [""])
    ds.InstanceCreationDate = study.date
    ds.InstanceCreationTime = study.time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study.time.split(".")[0]
    ds.AcquisitionDateTime = study.date + study.time
    ds.AccessionNumber = study.accession
    issuer_of_accession = Dataset()
    issuer_of_accession.LocalNamespaceEntityID = clinic.institution
    ds.IssuerOfAccessionNumberSequence = Sequence([issuer_of_accession])
    ds.Modality = "MG" if modality == "BTO" else modality
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = clinic.manufacturer
    ds.InstitutionName = clinic.institution
    ds.InstitutionAddress = clinic.address
    ds.ReferringPhysicianName = study.referring
    ds.ReferringPhysicianAddress = f"{rng.randrange(1, 99)} {rng.choice(STREETS)}, {rng.choice(CITIES)}"
    ds.ReferringPhysicianTelephoneNumbers = f"+44 20 7{rng.randrange(100, 999)} {rng.randrange(1000, 9999)}"
    ds.StationName = clinic.station
    ds.StudyDescription = study.description
    ds.SeriesDescription = f"{laterality or ''} {view or modality}".strip()
    ds.InstitutionalDepartmentName = clinic.department
    ds.PhysiciansOfRecord = study.referring
    ds.PerformingPhysicianName = performer
    ds.NameOfPhysiciansReadingStudy = study.reading
    ds.OperatorsName = operator
    ds.ManufacturerModelName = clinic.model
    ref_study = Dataset()
    ref_study.ReferencedSOPClassUID = STUDY_ROOT_SOP_CLASS
    ref_study.ReferencedSOPInstanceUID = synthetic_uid(seed, "refstudy", study.study_uid)
    ds.ReferencedStudySequence = Sequence([ref_study])
    ref_pps = Dataset()
    ref_pps.ReferencedSOPClassUID = MPPS_SOP_CLASS
    ref_pps.ReferencedSOPInstanceUID = study.mpps_uid
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref_pps])

    # Patient module, with everything a RIS might fill in.
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.IssuerOfPatientID = patient.issuer
    qualifiers = Dataset()
    qualifiers.UniversalEntityID = f"urn:oid:{UID_ROOT}77.{rng.randrange(1, 999)}"
    qualifiers.UniversalEntityIDType = "ISO"
    qualifiers.IdentifierTypeCode = "MR"
    facility = Dataset()
    facility.LocalNamespaceEntityID = clinic.institution
    qualifiers.AssigningFacilitySequence = Sequence([facility])
    ds.IssuerOfPatientIDQualifiersSequence = Sequence([qualifiers])
    ds.PatientBirthDate = patient.birth_date
    ds.PatientBirthTime = f"{rng.randrange(0, 24):02d}{rng.randrange(0, 60):02d}00"
    ds.PatientSex = patient.sex
    others = []
    for other_id, other_issuer in patient.other_ids:
        item = Dataset()
        item.PatientID = other_id
        item.IssuerOfPatientID = other_issuer
        item.TypeOfPatientID = "TEXT"
        # Depth 3: OtherPatientIDsSequence > IssuerOfPatientIDQualifiersSequence > AssigningFacilitySequence.
        q = Dataset()
        q.IdentifierTypeCode = "PT"
        fac = Dataset()
        fac.LocalNamespaceEntityID = f"{other_issuer} registry for {patient.family.title()}"
        q.AssigningFacilitySequence = Sequence([fac])
        item.IssuerOfPatientIDQualifiersSequence = Sequence([q])
        others.append(item)
    ds.OtherPatientIDsSequence = Sequence(others)
    ds.add_new(0x00101000, "LO", [i for i, _ in patient.other_ids])  # OtherPatientIDs (retired, still sent)
    ds.OtherPatientNames = f"{patient.family}^{patient.given[:1]}"
    ds.PatientBirthName = f"{patient.family}^{patient.given}"
    birth = datetime.strptime(patient.birth_date, "%Y%m%d").date()
    seen = datetime.strptime(study.date, "%Y%m%d").date()
    ds.PatientAge = f"{(seen - birth).days // 365:03d}Y"
    ds.PatientSize = f"{1.50 + rng.random() * 0.4:.2f}"
    ds.PatientWeight = f"{50 + rng.random() * 50:.1f}"
    ds.PatientAddress = patient.address
    ds.PatientMotherBirthName = patient.mother_birth_name
    ds.PatientTelephoneNumbers = patient.phone
    ds.EthnicGroup = rng.choice(("WHITE", "BLACK", "ASIAN", "MIXED", "OTHER"))
    ds.Occupation = patient.occupation
    ds.AdditionalPatientHistory = (
        f"Mother ({patient.mother_birth_name.replace('^', ' ').title()}) breast ca at 52. "
        f"Pt {patient.given.title()} {patient.family.title()} reachable on {patient.phone}."
    )
    ds.PatientComments = f"{patient.given.title()} prefers morning appointments; MRN {patient.patient_id}."
    ds.MedicalRecordLocator = f"CHART-{patient.patient_id}"

    # Equipment and acquisition.
    ds.DeviceSerialNumber = clinic.device_serial
    ds.DeviceUID = synthetic_uid(seed, "device", clinic.key)
    ds.SoftwareVersions = "SYN 4.2.1"
    ds.ProtocolName = f"Screening {view or ''} {laterality or ''}".strip()
    ds.DateOfLastCalibration = study.date
    ds.KVP = f"{26 + rng.randrange(0, 8)}"
    ds.DistanceSourceToDetector = "660"
    ds.ExposureTime = str(rng.randrange(400, 2000))
    ds.XRayTubeCurrent = str(rng.randrange(50, 200))
    ds.Exposure = str(rng.randrange(40, 200))
    ds.ImagerPixelSpacing = ["0.07", "0.07"]
    ds.DetectorType = "DIRECT"
    ds.DetectorID = f"DET-{clinic.device_serial}"

    ds.StudyInstanceUID = study.study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = (
        series_key if isinstance(series_key, int) else zlib.crc32(str(series_key).encode()) % 90 + 1
    )
    ds.InstanceNumber = instance_key if isinstance(instance_key, int) else 1
    ds.FrameOfReferenceUID = synthetic_uid(seed, "for", study.study_uid, series_key)
    ds.PositionReferenceIndicator = ""
    ds.PatientOrientation = (["A", "R"] if laterality == "L" else ["P", "L"]) if laterality else ["A", "F"]
    ds.Laterality = laterality or ""
    ds.ImageLaterality = laterality or "U"
    ds.BodyPartExamined = "BREAST" if modality in ("MG", "BTO") else rng.choice(("CHEST", "HAND", "KNEE"))
    ds.ViewPosition = view or ""
    ds.BurnedInAnnotation = "YES" if burned_in else "NO"
    ds.ImageComments = f"Tech {operator.split('^')[0].title()}: {patient.family.title()} moved slightly."
    ds.IrradiationEventUID = synthetic_uid(seed, "irradiation", sop_uid)

    if modality in ("MG", "BTO"):
        ds.AnatomicRegionSequence = Sequence([_code(BREAST_CODE)])
        if view in VIEW_CODES:
            view_item = _code(VIEW_CODES[view])
            view_item.ViewModifierCodeSequence = Sequence([])
            ds.ViewCodeSequence = Sequence([view_item])
        ds.PartialView = "NO"
        ds.BreastImplantPresent = "NO"
        ds.BodyPartThickness = str(rng.randrange(30, 80))
        ds.CompressionForce = str(rng.randrange(60, 150))
        ds.OrganDose = f"{rng.random() * 2:.3f}"

    # Request attributes: a second copy of identifiers, nested.
    request = Dataset()
    request.RequestedProcedureID = study.requested_procedure_id
    request.ScheduledProcedureStepID = f"SPS{rng.randrange(10**5, 10**6)}"
    request.AccessionNumber = study.accession
    request.StudyInstanceUID = study.study_uid
    request.RequestedProcedureDescription = study.description
    req_ref = Dataset()
    req_ref.ReferencedSOPClassUID = STUDY_ROOT_SOP_CLASS
    req_ref.ReferencedSOPInstanceUID = ref_study.ReferencedSOPInstanceUID
    request.ReferencedStudySequence = Sequence([req_ref])
    request.RequestingPhysician = study.referring
    ds.RequestAttributesSequence = Sequence([request])
    ds.PerformedProcedureStepStartDate = study.date
    ds.PerformedProcedureStepStartTime = study.time.split(".")[0]
    ds.PerformedProcedureStepID = f"PPS{rng.randrange(10**5, 10**6)}"
    ds.PerformedProcedureStepDescription = study.description

    # Image pixel module.
    ds.SamplesPerPixel = image.samples
    ds.PhotometricInterpretation = image.photometric
    if image.samples > 1:
        ds.PlanarConfiguration = 0
    ds.Rows = image.rows
    ds.Columns = image.columns
    ds.BitsAllocated = image.bits_allocated
    ds.BitsStored = image.bits_stored
    ds.HighBit = image.bits_stored - 1
    ds.PixelRepresentation = 0
    if image.frames > 1 or modality == "BTO":
        ds.NumberOfFrames = image.frames
    if image.photometric.startswith("MONOCHROME"):
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
        ds.WindowCenter = str(2 ** (image.bits_stored - 1))
        ds.WindowWidth = str(2 ** image.bits_stored)
    ds.LossyImageCompression = "01" if transfer_syntax in (JPEGBaseline8Bit, JPEGExtended12Bit) else "00"

    # Private tags: a vendor block that copies PHI and a UID, as real ones do.
    block = ds.private_block(0x0019, "ACME MAMMO 1.0", create=True)
    block.add_new(0x01, "LO", patient.name.replace("^", " "))
    block.add_new(0x02, "UI", study.study_uid)
    block.add_new(0x03, "DS", "12.5")
    block.add_new(0x04, "SH", patient.patient_id)
    block2 = ds.private_block(0x0029, "TMI SYNTH BLOB", create=True)
    block2.add_new(0x10, "OB", bytes(rng.randrange(256) for _ in range(64)))
    if charset == JAPANESE:
        ds.walk(_fold_to_ascii)
    return ds


def _fold_to_ascii(_ds: Dataset, elem: DataElement) -> None:
    """Under ``\\ISO 2022 IR 87`` only PN groups carry kanji/kana: fold other text to ASCII (Ø → ''),
    leaving values with PN component groups (``=``) intact."""
    def fold(value: str) -> str:
        if value.isascii() or "=" in value:
            return value
        return unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")

    if isinstance(elem.value, str | PersonName):
        elem.value = fold(str(elem.value))
    elif isinstance(elem.value, MultiValue) and all(isinstance(v, str) for v in elem.value):
        elem.value = [fold(v) for v in elem.value]


def _row_intensity(r: int, rows: int, columns: int, frame: int) -> int:
    """Number of tissue pixels in row ``r``: a half-ellipse against the chest wall, shrinking per frame."""
    y = (r - rows / 2) / (rows / 2 * 0.92)
    scale = 0.85 - 0.002 * frame
    return int(columns * scale * math.sqrt(max(0.0, 1.0 - y * y)))


def _texture(seed: int | str, columns: int, rows: int, bits_stored: int) -> bytes:
    """A deterministic tissue-like texture, long enough to slice a row from any offset."""
    rng = _rng(seed, "texture")
    top = (1 << bits_stored) - 1
    base, span = top // 3, top // 2
    n = columns + rows + 4096
    values = array("H", (base + ((i * 73 + (i // 7) * 151 + rng.randrange(97)) % span) for i in range(n)))
    return values.tobytes()  # native byte order; fixed below to little endian


def _le(buf: bytes) -> bytes:
    import sys

    if sys.byteorder == "little":
        return buf
    a = array("H", buf)
    a.byteswap()
    return a.tobytes()


def _frame_rows(texture: bytes, rows: int, columns: int, laterality: str | None, frame: int,
                background: bytes) -> Iterator[bytes]:
    """The rows of one 16-bit frame: tissue slices of ``texture`` against a dark background."""
    stride = len(texture) // 2 - columns
    for r in range(rows):
        width = _row_intensity(r, rows, columns, frame)
        off = ((r * 13 + frame * 29) % stride) * 2
        tissue = texture[off: off + 2 * width]
        pad = background[: 2 * (columns - width)]
        yield (pad + tissue) if laterality == "R" else (tissue + pad)


def _pixels(seed: int | str, image: _Image, laterality: str | None, *, burned_in: bool = False) -> bytes:
    """Native pixel data for a (small or medium) single- or multi-frame 16-bit image."""
    texture = _le(_texture(seed, image.columns, image.rows, image.bits_stored))
    background = _le(array("H", [40]).tobytes()) * image.columns
    frames = []
    for f in range(image.frames):
        rows = list(_frame_rows(texture, image.rows, image.columns, laterality, f, background))
        if burned_in:
            # A bright label block in the top corner, as burnt-in text would be.
            bright = _le(array("H", [(1 << image.bits_stored) - 1]).tobytes()) * (image.columns // 4)
            for r in range(image.rows // 40, image.rows // 10):
                rows[r] = bright + rows[r][len(bright):]
        frames.append(b"".join(rows))
    return b"".join(frames)


def small_instance(index: int, seed: int | str = 0, *, modality: str | None = None, rows: int = 512,
                   columns: int = 512, patients: int | None = None, charset: str = LATIN1) -> FileDataset:
    """A ~0.5 MB PHI-rich CR/DX/MG instance (512×512 16-bit by default), deterministic per (seed, index).

    Instances are grouped like real traffic: four images per study, studies spread over a pool of
    ``patients`` invented patients (default: one per 8 instances). ``modality`` defaults to a mix
    (MG three times in five, else CR or DX). ``charset`` is ``LATIN1`` (ISO_IR 100), ``UTF8`` (ISO_IR 192)
    or ``JAPANESE`` (ISO 2022 IR 87, PN with ideographic and phonetic groups).
    """
    rng = _rng(seed, "small", index)
    patient_no = (index // 4) % patients if patients else index // 8
    patient = random_patient(_rng(seed, "patient", patient_no), charset=charset)
    study = new_study(seed, patient, DEFAULT_CLINIC, key=index // 4)
    modality = modality or rng.choice(("MG", "MG", "MG", "CR", "DX"))
    view, laterality = (None, None)
    if modality == "MG":
        view, laterality = ("CC", "MLO")[index % 2], ("R", "L")[(index // 2) % 2]
    image = _Image(rows=rows, columns=columns, bits_stored=12 if modality != "MG" else 14)
    ds = _header(seed, patient=patient, clinic=DEFAULT_CLINIC, study=study, modality=modality,
                 sop_class=SOP_CLASS[modality], series_key=f"{modality}{index // 4}", instance_key=index,
                 image=image, view=view, laterality=laterality, charset=charset)
    ds.PixelData = _pixels(f"{seed}:{index % 16}", image, laterality)
    ds["PixelData"].VR = "OW"
    return ds


def large_mg_instance(seed: int | str = 0, index: int = 0, *, rows: int = 4096,
                      columns: int = 3328) -> FileDataset:
    """A ~27 MB digital mammogram (4096×3328, 14 bits stored in 16) with a PHI-rich header."""
    patient = random_patient(_rng(seed, "large-patient", index), sex="F")
    study = new_study(seed, patient, DEFAULT_CLINIC, key=f"large{index}")
    view, laterality = ("CC", "MLO")[index % 2], ("R", "L")[(index // 2) % 2]
    image = _Image(rows=rows, columns=columns, bits_stored=14)
    ds = _header(seed, patient=patient, clinic=DEFAULT_CLINIC, study=study, modality="MG",
                 sop_class=SOP_CLASS["MG"], series_key=f"large{index}", instance_key=index, image=image,
                 view=view, laterality=laterality)
    ds.PixelData = _pixels(f"{seed}:large", image, laterality)
    ds["PixelData"].VR = "OW"
    return ds


def mammo_instance(seed: int | str, *, patient: SyntheticPatient, clinic: Clinic, study: StudyInfo,
                   view: str, laterality: str, rows: int = 320, columns: int = 256,
                   burned_in: bool = False) -> FileDataset:
    """One MG view (``view`` CC/MLO, ``laterality`` L/R) of ``patient``'s ``study`` at ``clinic``."""
    image = _Image(rows=rows, columns=columns, bits_stored=12)
    ds = _header(seed, patient=patient, clinic=clinic, study=study, modality="MG", sop_class=SOP_CLASS["MG"],
                 series_key=f"{laterality}{view}", instance_key=f"{laterality}{view}", image=image, view=view,
                 laterality=laterality, burned_in=burned_in)
    ds.SeriesNumber = {"RCC": 1, "LCC": 2, "RMLO": 3, "LMLO": 4}[laterality + view]
    ds.InstanceNumber = 1
    ds.file_meta.SourceApplicationEntityTitle = clinic.calling_aet
    ds.DeviceSerialNumber = clinic.device_serial
    ds.PixelData = _pixels(f"{seed}:{patient.patient_id}:{laterality}{view}", image, laterality,
                           burned_in=burned_in)
    ds["PixelData"].VR = "OW"
    return ds


def write_dataset(ds: Dataset, path: Path) -> int:
    """Write ``ds`` as a DICOM Part 10 file (creating parent folders); return its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


# --- Large files, streamed -------------------------------------------------------------------------------

def _tomo_header(seed: int | str, index: int, frames: int, rows: int, columns: int,
                 transfer_syntax: str, image: _Image | None = None) -> FileDataset:
    patient = random_patient(_rng(seed, "tomo-patient", index), sex="F")
    study = new_study(seed, patient, DEFAULT_CLINIC, key=f"tomo{index}", description="BREAST TOMOSYNTHESIS")
    laterality = ("R", "L")[index % 2]
    image = image or _Image(rows=rows, columns=columns, bits_stored=14, frames=frames)
    ds = _header(seed, patient=patient, clinic=DEFAULT_CLINIC, study=study, modality="BTO",
                 sop_class=SOP_CLASS["BTO"], series_key=f"tomo{index}", instance_key=index, image=image,
                 transfer_syntax=transfer_syntax, view="CC", laterality=laterality)
    for keyword in ("PatientOrientation", "ImagerPixelSpacing", "ViewPosition", "PixelIntensityRelationship",
                    "PixelIntensityRelationshipSign", "RescaleIntercept", "RescaleSlope", "RescaleType",
                    "WindowCenter", "WindowWidth"):
        if keyword in ds:
            del ds[keyword]
    ds.ContentQualification = "PRODUCT"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "TOMOSYNTHESIS"
    dim_org_uid = synthetic_uid(seed, "dimorg", index)
    org = Dataset()
    org.DimensionOrganizationUID = dim_org_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    dim = Dataset()
    dim.DimensionOrganizationUID = dim_org_uid
    dim.DimensionIndexPointer = 0x00209057  # InStackPositionNumber
    dim.FunctionalGroupPointer = 0x00209111  # FrameContentSequence
    ds.DimensionIndexSequence = Sequence([dim])
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = ["0.1", "0.1"]
    measures.SliceThickness = "1"
    shared.PixelMeasuresSequence = Sequence([measures])
    anatomy = Dataset()
    anatomy.FrameLaterality = laterality
    anatomy.AnatomicRegionSequence = Sequence([_code(BREAST_CODE)])
    shared.FrameAnatomySequence = Sequence([anatomy])
    voi = Dataset()
    voi.WindowCenter = str(2 ** (image.bits_stored - 1))
    voi.WindowWidth = str(2 ** image.bits_stored)
    shared.FrameVOILUTSequence = Sequence([voi])
    derivation = Dataset()
    source = Dataset()
    source.ReferencedSOPClassUID = SOP_CLASS["MG"]
    source.ReferencedSOPInstanceUID = synthetic_uid(seed, "tomo-projection", index)
    purpose = ("121322", "DCM", "Source image for image processing operation")
    source.PurposeOfReferenceCodeSequence = Sequence([_code(purpose)])
    derivation.SourceImageSequence = Sequence([source])
    shared.DerivationImageSequence = Sequence([derivation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for f in range(frames):
        item = Dataset()
        content = Dataset()
        content.FrameAcquisitionDateTime = study.date + study.time
        content.StackID = "1"
        content.InStackPositionNumber = f + 1
        content.DimensionIndexValues = [f + 1]
        item.FrameContentSequence = Sequence([content])
        pos = Dataset()
        pos.ImagePositionPatient = ["0", "0", str(f)]
        item.PlanePositionSequence = Sequence([pos])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds


def _write_header(fp: BinaryIO, ds: FileDataset) -> None:
    if "PixelData" in ds:
        del ds["PixelData"]
    pydicom.dcmwrite(fp, ds, enforce_file_format=True)


def write_multiframe_streaming(path: Path, seed: int | str = 0, *, index: int = 0, frames: int = 48,
                               rows: int = 2048, columns: int = 2560) -> int:
    """Write a breast-tomosynthesis-like multi-frame (native 16-bit) by streaming; return its size.

    The header is written by pydicom, then the (7FE0,0010) OW element header with its explicit length, then
    the pixel bytes one frame at a time — memory stays flat whatever ``frames`` is. The default
    (48 × 2048 × 2560 × 2 bytes) is ~503 MB.
    """
    frame_bytes = rows * columns * 2
    total = frame_bytes * frames
    if total >= 0xFFFFFFFF:
        raise ValueError("native pixel data must be < 4 GiB")
    ds = _tomo_header(seed, index, frames, rows, columns, ExplicitVRLittleEndian)
    texture = _le(_texture(f"{seed}:tomo", columns, rows, 14))
    background = _le(array("H", [40]).tobytes()) * columns
    laterality = str(ds.ImageLaterality)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fp:
        _write_header(fp, ds)
        fp.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, total))
        for f in range(frames):
            fp.write(b"".join(_frame_rows(texture, rows, columns, laterality, f, background)))
    return path.stat().st_size


def _bundled_jpeg(codec: str) -> tuple[Dataset, bytes]:
    """A pydicom-bundled JPEG test instance and its single frame's codestream (no download)."""
    from pydicom.encaps import generate_fragmented_frames

    name = {"jpeg-extended": "JPEG-lossy.dcm", "jpeg-baseline": "SC_jpeg_no_color_transform.dcm"}[codec]
    src = pydicom.dcmread(Path(pydicom.data.__file__).parent / "test_files" / name)
    frame = b"".join(next(iter(generate_fragmented_frames(src.PixelData, number_of_frames=1))))
    return src, frame


def _encap_image(src: Dataset, frames: int) -> _Image:
    return _Image(rows=int(src.Rows), columns=int(src.Columns), bits_allocated=int(src.BitsAllocated),
                  bits_stored=int(src.BitsStored), frames=frames,
                  photometric=str(src.PhotometricInterpretation), samples=int(src.SamplesPerPixel))


def encapsulated_instance(index: int = 0, seed: int | str = 0, *, codec: str = "jpeg-extended",
                          frames: int = 1) -> FileDataset:
    """A PHI-rich instance with encapsulated JPEG pixel data (``codec``: jpeg-extended grey 12-bit 1024×256,
    or jpeg-baseline RGB 256×256), the codestream taken from pydicom's bundled test files; each of
    ``frames`` frames repeats it."""
    from pydicom.encaps import encapsulate

    src, frame = _bundled_jpeg(codec)
    tsyntax = str(src.file_meta.TransferSyntaxUID)
    image = _encap_image(src, frames)
    patient = random_patient(_rng(seed, "encap-patient", index))
    study = new_study(seed, patient, DEFAULT_CLINIC, key=f"encap{index}")
    modality = "MG" if image.samples == 1 else "SC"
    ds = _header(seed, patient=patient, clinic=DEFAULT_CLINIC, study=study, modality=modality,
                 sop_class=SOP_CLASS[modality], series_key=f"encap{index}", instance_key=index, image=image,
                 transfer_syntax=tsyntax, view="CC" if modality == "MG" else None,
                 laterality="L" if modality == "MG" else None)
    if image.samples > 1:
        for keyword in ("PixelIntensityRelationship", "PixelIntensityRelationshipSign"):
            if keyword in ds:
                del ds[keyword]
    ds.PixelData = encapsulate([frame] * frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    return ds


def write_encapsulated_streaming(path: Path, seed: int | str = 0, *, index: int = 0, frames: int = 100,
                                 codec: str = "jpeg-extended",
                                 frame_source: Iterable[bytes] | None = None) -> int:
    """Write an encapsulated multi-frame by streaming fragments (one per frame, empty offset table).

    ``frame_source`` yields each frame's codestream (default: the bundled JPEG repeated ``frames`` times);
    memory holds one fragment at a time. Returns the file size.
    """
    src, frame = _bundled_jpeg(codec)
    tsyntax = str(src.file_meta.TransferSyntaxUID)
    image = _encap_image(src, frames)
    ds = _tomo_header(seed, index, frames, image.rows, image.columns, tsyntax, image=image)
    if image.samples > 1:
        ds.Modality = "MG"
    item_tag = struct.pack("<HH", 0xFFFE, 0xE000)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fp:
        _write_header(fp, ds)
        fp.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        fp.write(item_tag + struct.pack("<I", 0))  # empty Basic Offset Table
        for data in frame_source if frame_source is not None else (frame for _ in range(frames)):
            padded = data + b"\0" if len(data) % 2 else data
            fp.write(item_tag + struct.pack("<I", len(padded)))
            fp.write(padded)
        fp.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))  # sequence delimiter
    return path.stat().st_size
