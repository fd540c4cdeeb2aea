"""Stable, machine-readable quarantine reason codes of the de-identification core.

Every quarantined instance carries exactly one of these codes in ``DeidResult.reason``; the
accompanying ``detail`` explains it in words and never contains PHI (tag paths, byte offsets and
counts only). Codes are part of the contract with the pipeline, the gateway and operators' reports:
add new ones, never rename or reuse one.
"""

from __future__ import annotations

EMPTY = "dicom.empty"
"""The input has zero bytes."""

UNPARSEABLE = "dicom.unparseable"
"""Not a DICOM Part 10 file (no ``DICM`` prefix, not a plausible raw data set) or an unparseable header."""

TRUNCATED = "dicom.truncated"
"""The header or the pixel data ends before the lengths it declares (an interrupted transfer)."""

MISSING_REQUIRED = "dicom.missing_required"
"""A type 1 identifier the research copy needs is missing (SOP Class/Instance, Study, Series Instance UID)."""

UNSUPPORTED_TRANSFER_SYNTAX = "dicom.unsupported_transfer_syntax"
"""The transfer syntax cannot be handled safely (a deflated data set inflating beyond the memory limit)."""

BURNED_IN = "pixels.burned_in_annotation"
"""BurnedInAnnotation=YES, or a modality that usually burns text into pixels and is not marked NO."""

PHI_RESIDUAL = "phi.residual"
"""The verifier found one of this instance's identifying tokens in the de-identified header."""

CHARSET_UNSUPPORTED = "charset.unsupported"
"""SpecificCharacterSet names a character set TMI cannot decode, so values cannot be checked."""

PATIENT_UNIDENTIFIED = "patient.unidentified"
"""Neither PatientID nor PatientName is present: no pseudonym can be derived safely."""

ALL: dict[str, str] = {
    EMPTY: "empty input",
    UNPARSEABLE: "not a parseable DICOM file",
    TRUNCATED: "file shorter than the lengths it declares",
    MISSING_REQUIRED: "a required identifier is missing",
    UNSUPPORTED_TRANSFER_SYNTAX: "transfer syntax cannot be streamed",
    BURNED_IN: "pixel data may carry burned-in identifying text",
    PHI_RESIDUAL: "identifying value still present after de-identification",
    CHARSET_UNSUPPORTED: "unsupported SpecificCharacterSet",
    PATIENT_UNIDENTIFIED: "no patient identifier to derive a pseudonym from",
}
"""Every reason code with a one-line description (for reports and docs/deid.md)."""
