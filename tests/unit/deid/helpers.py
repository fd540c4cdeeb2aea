"""Builders for the de-identification tests: PHI-rich synthetic instances, never real patients."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian

from tmi.deid import Deidentifier, DeidResult

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"


@dataclass(frozen=True)
class Person:
    """A synthetic patient with distinctive, greppable identifiers."""

    family: str = "Zebulonsky"
    given: str = "Quixotea"
    patient_id: str = "PID778899"
    issuer: str = "HOSPX-ISSUER"
    birth: str = "19710423"
    sex: str = "F"
    accession: str = "ACC5566771"
    address: str = "42 Wallaby Crescent Springfieldton"
    phone: str = "+41 79 555 12 34"
    other_id: str = "OTHER99881"
    referring: str = "Drummondo^Hieronymus"
    operator: str = "Ottoline^Pemberton"
    institution: str = "Saint Barnabyfield Clinic"

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}"

    def tokens(self) -> list[str]:
        """Every identifying string a leak check must not find in a research copy."""
        return [
            self.family,
            self.given,
            self.patient_id,
            self.issuer,
            self.accession,
            self.other_id,
            "Wallaby",
            "Springfieldton",
            "555 12 34",
            "Drummondo",
            "Hieronymus",
            "Ottoline",
            "Pemberton",
            self.institution,
            self.birth,
            "1971-04-23",
            "23.04.1971",
            "04/23/1971",
        ]


def uid(*parts: int) -> str:
    """A test UID under a made-up private root."""
    return "1.2.826.0.1.3680043.99." + ".".join(str(p) for p in parts)


def base_dataset(
    person: Person | None = None,
    *,
    index: int = 1,
    study: int = 1,
    series: int = 1,
    modality: str = "CT",
    rows: int = 4,
    columns: int = 4,
) -> Dataset:
    """A small, valid, PHI-rich image instance (pixel data: ``rows*columns`` 16-bit values)."""
    p = person or Person()
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE if modality == "CT" else CR_IMAGE
    ds.SOPInstanceUID = uid(study, series, index)
    ds.StudyInstanceUID = uid(study)
    ds.SeriesInstanceUID = uid(study, series)
    ds.FrameOfReferenceUID = uid(study, 0, 7)
    ds.StudyDate = "20240305"
    ds.SeriesDate = "20240305"
    ds.StudyTime = "101500"
    ds.AccessionNumber = p.accession
    ds.Modality = modality
    ds.Manufacturer = "ACME Imaging"
    ds.ManufacturerModelName = "Scanotron 9000"
    ds.InstitutionName = p.institution
    ds.InstitutionAddress = p.address
    ds.ReferringPhysicianName = p.referring
    ds.OperatorsName = p.operator
    ds.StudyDescription = f"CT thorax for {p.family}"
    ds.SeriesDescription = "AXIAL 1mm"
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.IssuerOfPatientID = p.issuer
    ds.PatientBirthDate = p.birth
    ds.PatientSex = p.sex
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.OtherPatientIDs = p.other_id
    ds.PatientWeight = "71.5"
    ds.PatientComments = f"{p.given} prefers the left arm"
    ds.StudyID = "S1"
    ds.SeriesNumber = "1"
    ds.InstanceNumber = str(index)
    ds.BodyPartExamined = "CHEST"
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = uid(study, series, index + 1000)
    ds.ReferencedImageSequence = Sequence([ref])
    ds.PixelData = bytes((i * 7) % 251 for i in range(rows * columns * 2))
    ds["PixelData"].VR = "OW"
    return ds


def to_file(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> bytes:
    """Encode ``ds`` as a Part 10 file (preamble, meta, data set)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(str(ds.SOPClassUID)) if "SOPClassUID" in ds else UID(CT_IMAGE)
    meta.MediaStorageSOPInstanceUID = UID(str(ds.SOPInstanceUID)) if "SOPInstanceUID" in ds else UID(uid(9))
    meta.TransferSyntaxUID = UID(transfer_syntax)
    fds = FileDataset("x", ds, file_meta=meta, preamble=b"\0" * 128)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # some tests build deliberately invalid input
        fds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def run(deid: Deidentifier, data: bytes, **kwargs: object) -> tuple[DeidResult, bytes]:
    """De-identify ``data``; return the result and what was written."""
    out = io.BytesIO()
    result = deid.deidentify(io.BytesIO(data), out, **kwargs)  # type: ignore[arg-type]
    return result, out.getvalue()
