"""The de-identifier: one instance in (a seekable stream), one research instance out, or a quarantine.

Order of work, so that nothing is written before the decision: parse the header only (pydicom stops
before the pixel data), check the input (empty, unparseable, truncated, missing identifiers, character
set, burned-in pixels), collect this instance's identifying tokens, apply the profile, set the patient
policy attributes, serialise the new header in memory, run the verifier over those bytes, and only then
write header + raw pixel bytes (copied in chunks from the source) + de-identified trailing elements.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import logging
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from pydicom._dicom_dict import DicomDictionary
from pydicom.charset import python_encoding
from pydicom.datadict import keyword_dict
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import dcmread, read_dataset
from pydicom.filewriter import write_sequence
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from tmi.deid import reasons
from tmi.deid.engine import Engine, pad
from tmi.deid.profile import Profile
from tmi.deid.pseudonyms import alias_for, name_words
from tmi.deid.stream import PixelSpan, copy_span, locate_pixel_element
from tmi.deid.uids import UidMapper
from tmi.deid.verifier import TOKEN_KIND, RawScanError, Tokens, TokenSet, find_path, scan_raw_sequence
from tmi.deid.writer import HeaderWriter
from tmi.errors import PoisonInputError
from tmi.ports import PatientPHI, PseudonymAssignment, PseudonymProvider

log = logging.getLogger(__name__)

IMPLEMENTATION_CLASS_UID = "2.25." + str(
    int.from_bytes(hashlib.sha256(b"TMI implementation").digest()[:16], "big")
)
IMPLEMENTATION_VERSION = "TMI_0_1"
_PREAMBLE = b"\x00" * 128 + b"DICM"
MAX_INFLATED = 256 * 1024 * 1024
# Values larger than this (before the pixel data: overlays, waveforms, private blobs, documents) are not
# read while parsing; removed ones never are, kept ones are read just before writing.
DEFER_SIZE = 1024 * 1024
_DECODE_ERRORS = (
    BytesLengthException,
    IndexError,
    KeyError,
    NotImplementedError,
    OverflowError,
    TypeError,
    UnicodeError,
    ValueError,
    struct.error,
)
# Manufacturer, ManufacturerModelName, SoftwareVersions: the same for every patient of a device, and full
# of numbers ("Senographe Synth 3000", "VE11C 2.1"): a number there equal to a 4-digit study ID is no leak.
_EQUIPMENT_NUMBER_TAGS = frozenset({0x00080070, 0x00081090, 0x00181020})
# ... and Modality, BodyPartExamined
_EQUIPMENT_TAGS = (*sorted(_EQUIPMENT_NUMBER_TAGS), 0x00080060, 0x00180015)
_ASCII_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
_TEXT_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
# Values that are numbers, dates, UIDs or binary: numeric tokens inside them are not an identifier.
_NON_TEXT_VRS = frozenset(
    {
        "AS",
        "AT",
        "DA",
        "DS",
        "DT",
        "FD",
        "FL",
        "IS",
        "OB",
        "OD",
        "OF",
        "OL",
        "OV",
        "OW",
        "SL",
        "SS",
        "SV",
        "TM",
        "UI",
        "UL",
        "US",
        "UV",
    }
)
_SEPARATORS = str.maketrans("", "", " -./+()")


def _is_numeric_token(token: str) -> bool:
    stripped = token.translate(_SEPARATORS)
    return stripped.isascii() and stripped.isdigit()


_PATIENT_ID_TAGS = frozenset({0x00100020})


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Identifiers of one instance (original: confidential; research: safe to publish)."""

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    accession_number: str | None = None
    study_date: str | None = None


@dataclass(slots=True)
class DeidResult:
    """Outcome of de-identifying one instance; see docs/contracts.md for every field's meaning."""

    outcome: str
    reason: str | None = None
    detail: str = ""
    phi: PatientPHI | None = None
    assignment: PseudonymAssignment | None = None
    original: InstanceRef | None = None
    research: InstanceRef | None = None
    research_key: str | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)
    catalog: dict[str, Any] = field(default_factory=dict)
    bytes_written: int = 0
    profile: str = ""

    @property
    def written(self) -> bool:
        """True when ``dst`` received the research instance."""
        return self.outcome == "written"


@dataclass(slots=True)
class _Prepared:
    header: bytes
    span: PixelSpan | None
    trailer: bytes
    pixel_head: bytes = b""


class Deidentifier:
    """De-identify DICOM instances with one profile, one key and one pseudonym provider.

    Thread-compatible, not thread-safe (a UID cache is kept); use one per worker process. The core does
    no network or database I/O itself: the provider may (the crosswalk's), which is why it is a port.
    """

    def __init__(self, profile: Profile, key: bytes, pseudonyms: PseudonymProvider) -> None:
        self.profile = profile
        self._key = key
        self.pseudonyms = pseudonyms
        self.uids = UidMapper(key)
        self._code_seq_cache: dict[tuple[bool, bool], bytes] = {}

    # -- public -----------------------------------------------------------------------------------
    def deidentify(self, src: BinaryIO, dst: BinaryIO, *, calling_aet: str | None = None) -> DeidResult:
        """De-identify the instance in ``src`` (seekable) into ``dst``; quarantine instead when unsafe.

        ``dst`` receives bytes only when the returned ``outcome`` is ``"written"``. Bad input never raises:
        it returns ``outcome="quarantined"`` with a reason code from ``tmi.deid.reasons``. Exceptions that
        do escape are internal errors (or the pseudonym provider's ``RetryableError``).
        """
        result = DeidResult(outcome="quarantined", profile=self.profile.name)
        try:
            with warnings.catch_warnings():
                # pydicom warns about many harmless non-conformances; the outcome says what matters.
                warnings.simplefilter("ignore")
                prepared = self._prepare(src, result, calling_aet)
        except _DECODE_ERRORS as exc:
            # A value pydicom cannot decode (corrupt VR, odd byte count, bad encoding): the input is bad,
            # not TMI. Nothing was written; the class name is the only detail (messages may quote PHI).
            result.outcome = "quarantined"
            result.reason = reasons.UNPARSEABLE
            result.detail = f"an element cannot be decoded ({exc.__class__.__name__})"
            log.info("quarantined: %s (%s)", result.reason, result.detail)
            return result
        except PoisonInputError as exc:
            result.outcome = "quarantined"
            result.reason = exc.reason
            result.detail = exc.detail
            log.info("quarantined: %s (%s)", exc.reason, exc.detail)
            return result
        written = dst.write(prepared.header) or 0
        if prepared.span is not None:
            written += dst.write(prepared.pixel_head) or 0
            written += copy_span(src, dst, prepared.span, value_only=True)
        if prepared.trailer:
            written += dst.write(prepared.trailer) or 0
        result.outcome = "written"
        result.bytes_written = written
        return result

    # -- steps ------------------------------------------------------------------------------------
    def _prepare(self, src: BinaryIO, result: DeidResult, calling_aet: str | None) -> _Prepared:
        profile = self.profile
        size = src.seek(0, io.SEEK_END)
        src.seek(0)
        if size == 0:
            raise PoisonInputError(reasons.EMPTY, "zero bytes")
        ds = self._read_header(src, size)
        meta = ds.file_meta
        ts = UID(str(meta.get("TransferSyntaxUID", "") or ""))
        if ts == DeflatedExplicitVRLittleEndian:
            return self._prepare_deflated(src, meta, result, calling_aet)
        implicit = bool(ds.original_encoding[0])
        little = bool(ds.original_encoding[1])
        if not ts:
            ts = (
                ImplicitVRLittleEndian
                if implicit
                else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            )
        pixel_start = src.tell()
        span: PixelSpan | None = None
        if pixel_start < size:
            span = locate_pixel_element(src, pixel_start, size, implicit, little)
        if span is None and _truncated(ds, size):
            raise PoisonInputError(reasons.TRUNCATED, "header ends inside an element")
        trailer_ds = self._read_trailer(src, span, size, implicit, little, ds)

        self._check_charset(ds)
        charset = _get(ds, 0x00080005) or "ISO_IR 6"
        encodings = [e.strip() or "ISO_IR 6" for e in charset.split("\\")]
        codec = _single_codec(encodings)
        original = _instance_ref(ds, meta, codec)
        phi = _phi(ds, calling_aet, codec)
        result.phi = phi
        result.original = original
        if not phi.patient_id and not phi.name:
            raise PoisonInputError(reasons.PATIENT_UNIDENTIFIED, "no PatientID and no PatientName")
        self._check_burned_in(ds)

        assignment = self.pseudonyms.assign(phi)
        result.assignment = assignment
        keep_sex = profile.table.get(0x00100040) == "K"
        alias = assignment.alias if keep_sex else alias_for(assignment.pseudonym, None)
        own_names = name_words(phi.name)
        if alias.partition("^")[2].upper() in own_names:
            # The alias was drawn without PHI and happens to carry this patient's real given name.
            alias = alias_for(assignment.pseudonym, phi.sex if keep_sex else None, avoid=own_names)
        out_birth = _policy_birth_date(phi.birth_date, profile.birth_date)
        legit = {assignment.pseudonym, alias, out_birth or "", "DEIDENTIFIED"}
        masks = [alias.encode("ascii"), assignment.pseudonym.encode("ascii")]
        containers = [
            _get(ds, t, codec) or "" for t in _EQUIPMENT_TAGS if profile.action_for(t) in (None, "K")
        ]
        original_age = _get(ds, 0x00101010)

        tokens = Tokens()
        if calling_aet:
            tokens.add_value("whole", calling_aet)
        engine = Engine(
            profile,
            self.uids,
            tokens,
            self._shift_days(assignment.pseudonym),
            result.notes,
            implicit=implicit,
            little=little,
            codec=codec,
        )
        # Deferred values the walk must read (sequences, identifying values, notes) are loaded first;
        # the remaining deferred ones are read only if they survived the profile.
        needed = lambda tag, vr: vr == "SQ" or tag in TOKEN_KIND or tag in profile.notes_tags  # noqa: E731
        _load_deferred(ds, src, needed)
        engine.apply(ds)
        _load_deferred(ds, src)
        if trailer_ds is not None:
            _load_deferred(trailer_ds, src, needed)
            engine.apply(trailer_ds)
            _load_deferred(trailer_ds, src)
            trailer_ds._dict.pop(0xFFFCFFFC, None)  # type: ignore[call-overload]
        token_set = TokenSet(
            tokens.values,
            legit=legit,
            containers=containers,
            soft=tokens.soft,
            masks=masks,
            encodings=encodings,
            min_length=profile.min_token_length,
            min_numeric_length=profile.min_numeric_token_length,
            whole_word_below=profile.whole_word_below,
        )
        engine.finish(token_set)
        self._patient_policy(ds, engine, assignment.pseudonym, alias, phi, out_birth, original_age, original)
        research = _instance_ref(ds, None, codec)
        if not research.sop_instance_uid:
            raise PoisonInputError(reasons.MISSING_REQUIRED, "SOPInstanceUID missing after de-identification")

        new_meta = _meta_bytes(research.sop_class_uid, research.sop_instance_uid, str(ts))
        header = _serialise(ds, new_meta, implicit, little)
        trailer = b""
        if trailer_ds is not None and len(trailer_ds):
            trailer = _serialise_body(trailer_ds, implicit, little, _encodings_of(ds, "iso8859"))
        if token_set and (
            token_set.contains_bytes(header) or (trailer and token_set.contains_bytes(trailer))
        ):
            self._residual(ds, trailer_ds, token_set, implicit, little)

        result.research = research
        result.research_key = (
            f"{assignment.pseudonym}/{research.study_instance_uid}/{research.series_instance_uid}/"
            f"{research.sop_instance_uid}.dcm"
        )
        result.catalog = _catalog(ds, assignment.pseudonym, str(ts), codec)
        pixel_head = b""
        if span is not None:
            # The element header is re-encoded in the output encoding (the value bytes are copied raw).
            vr = span.vr or ("OB" if span.encapsulated or _get(ds, 0x00280100) == "8" else "OW")
            if span.tag == 0x7FE00008:
                vr = "OF"
            elif span.tag == 0x7FE00009:
                vr = "OD"
            pixel_head = HeaderWriter(implicit, little).element_head(span.tag, vr, span.declared_length)
        return _Prepared(header, span, trailer, pixel_head)

    def _residual(
        self,
        ds: Dataset,
        trailer_ds: Dataset | None,
        token_set: TokenSet,
        implicit: bool,
        little: bool,
    ) -> None:
        """Raise ``phi.residual`` with the tag path of the hit, unless it is only a number among numbers.

        Numeric tokens (IDs made of digits, dates in any spelling, phone digits) count only where a
        person could read them as an identifier: in character-string values that describe this
        patient or study. The same digits inside a number (a window width equal to a 4-digit study ID),
        a date element (a newborn scanned on the day of birth while full dates are kept), a UID, a
        binary value or the device's maker, model or software version (``Senographe Synth 3000`` and
        study ID 3000) are not an identifier leak. Every other token counts wherever it is.
        """
        sets = [d for d in (ds, trailer_ds) if d is not None]
        words = token_set.subset(lambda t: not _is_numeric_token(t))
        numbers = token_set.subset(_is_numeric_token)
        found = [find_path(d, words, implicit, little) for d in sets]
        found += [find_path(d, numbers, implicit, little, skip_vrs=_NON_TEXT_VRS,
                            skip_tags=_EQUIPMENT_NUMBER_TAGS) for d in sets]
        path = next((p for p in found if p), None)
        if path is None:
            return
        raise PoisonInputError(reasons.PHI_RESIDUAL, f"identifying value found at {path}")

    def _prepare_deflated(
        self, src: BinaryIO, meta: FileMetaDataset, result: DeidResult, calling_aet: str | None
    ) -> _Prepared:
        """Deflated explicit VR little endian: inflate, de-identify as explicit VR, deflate again.

        The whole data set is compressed as one stream, so it cannot be copied piecewise: this path
        holds the instance in memory (deflate is used for small non-image objects in practice) and
        refuses anything that inflates beyond ``MAX_INFLATED``.
        """
        src.seek(132)
        head = src.read(12)
        if len(head) < 12 or head[:4] != b"\x02\x00\x00\x00":
            raise PoisonInputError(reasons.UNPARSEABLE, "deflated file without a meta group length")
        meta_end = 144 + struct.unpack("<L", head[8:12])[0]
        src.seek(meta_end)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            body = inflater.decompress(src.read(), MAX_INFLATED)
        except zlib.error as exc:
            raise PoisonInputError(reasons.UNPARSEABLE, "deflated data set does not inflate") from exc
        if inflater.unconsumed_tail:
            raise PoisonInputError(reasons.UNSUPPORTED_TRANSFER_SYNTAX, "deflated data set too large")
        plain_meta = _meta_bytes(
            str(meta.get("MediaStorageSOPClassUID", "") or ""),
            str(meta.get("MediaStorageSOPInstanceUID", "") or ""),
            ExplicitVRLittleEndian,
        )
        plain = io.BytesIO(plain_meta + body)
        prepared = self._prepare(plain, result, calling_aet)
        out = io.BytesIO()
        out.write(prepared.header)
        if prepared.span is not None:
            out.write(prepared.pixel_head)
            copy_span(plain, out, prepared.span, value_only=True)
        out.write(prepared.trailer)
        data = out.getvalue()
        out_meta_end = 144 + struct.unpack("<L", data[140:144])[0]
        research = result.research
        assert research is not None
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = compressor.compress(data[out_meta_end:]) + compressor.flush()
        if len(deflated) % 2:
            deflated += b"\x00"  # PS3.5 A.5: pad the deflated stream to even length
        new_meta = _meta_bytes(
            research.sop_class_uid, research.sop_instance_uid, DeflatedExplicitVRLittleEndian
        )
        if result.catalog:
            result.catalog["transfer_syntax"] = DeflatedExplicitVRLittleEndian
        return _Prepared(new_meta + deflated, None, b"")

    def _read_header(self, src: BinaryIO, size: int) -> Dataset:
        try:
            try:
                return dcmread(src, stop_before_pixels=True, defer_size=DEFER_SIZE)
            except InvalidDicomError:
                # A raw data set without preamble/meta (old exports): accept when it starts like one.
                src.seek(0)
                head = src.read(8)
                if len(head) < 8 or struct.unpack("<H", head[:2])[0] not in (0x0008, 0x0002):
                    raise
                src.seek(0)
                return dcmread(src, stop_before_pixels=True, force=True, defer_size=DEFER_SIZE)
        except InvalidDicomError as exc:
            raise PoisonInputError(reasons.UNPARSEABLE, "not a DICOM file") from exc
        except EOFError as exc:
            raise PoisonInputError(reasons.TRUNCATED, "header ends early") from exc
        except (ValueError, KeyError, struct.error, OverflowError, NotImplementedError, TypeError) as exc:
            raise PoisonInputError(
                reasons.UNPARSEABLE, f"header cannot be parsed ({exc.__class__.__name__})"
            ) from exc

    def _read_trailer(
        self, src: BinaryIO, span: PixelSpan | None, size: int, implicit: bool, little: bool, ds: Dataset
    ) -> Dataset | None:
        if span is None or span.end >= size:
            return None
        src.seek(span.end)
        try:
            trailer = read_dataset(
                src,
                implicit,
                little,
                bytelength=size - span.end,
                defer_size=DEFER_SIZE,
                parent_encoding=ds._character_set,
            )
        except (EOFError, ValueError, KeyError, struct.error, NotImplementedError, TypeError):
            # Elements after the pixel data are dropped rather than risked; nothing needs them.
            log.info("unparseable elements after the pixel data dropped")
            return None
        return trailer

    def _check_charset(self, ds: Dataset) -> None:
        value = _get(ds, 0x00080005)
        for term in (value or "").split("\\"):
            term = term.strip()
            if term and term not in python_encoding:
                raise PoisonInputError(reasons.CHARSET_UNSUPPORTED, f"SpecificCharacterSet term {term!r}")

    def _check_burned_in(self, ds: Dataset) -> None:
        profile = self.profile
        burned = (_get(ds, 0x00280301) or "").upper()
        if burned == "YES" and profile.burned_in_yes:
            raise PoisonInputError(reasons.BURNED_IN, "BurnedInAnnotation is YES")
        modality = (_get(ds, 0x00080060) or "").upper()
        if modality in profile.burned_in_modalities and not (profile.burned_in_unless_no and burned == "NO"):
            raise PoisonInputError(reasons.BURNED_IN, f"modality {modality} without BurnedInAnnotation NO")

    def _shift_days(self, pseudonym: str) -> int:
        limit = max(self.profile.date_shift_max_days, 1)
        digest = hmac.new(self._key, b"dateshift\x00" + pseudonym.encode(), hashlib.sha256).digest()
        return -(1 + int.from_bytes(digest[:4], "big") % limit)

    def _patient_policy(
        self,
        ds: Dataset,
        engine: Engine,
        pseudonym: str,
        alias: str,
        phi: PatientPHI,
        out_birth: str | None,
        original_age: object,
        original: InstanceRef,
    ) -> None:
        profile = self.profile
        d = ds._dict
        raw = engine.raw

        def put(tag: int, vr: str, text: str) -> None:
            # Every value set here is ASCII, valid in any SpecificCharacterSet (ISO 2022 starts in ASCII).
            d[BaseTag(tag)] = raw(tag, vr, pad(text.encode("ascii"), vr))

        put(0x00100010, "PN", alias)  # PatientName: alias only, no ideographic/phonetic groups
        put(0x00100020, "LO", pseudonym)  # PatientID
        if profile.birth_date != "remove" and out_birth is not None:
            put(0x00100030, "DA", out_birth)
        else:
            put(0x00100030, "DA", "")
        if profile.fill_age and profile.table.get(0x00101010) == "K" and not original_age:
            age = _age(phi.birth_date, original.study_date or (_get(ds, 0x00080021) or ""))
            if age:
                put(0x00101010, "AS", age)
        put(0x00120062, "CS", "YES")  # PatientIdentityRemoved
        put(0x00120063, "LO", profile.method_text())  # DeidentificationMethod
        d[BaseTag(0x00120064)] = raw(0x00120064, "SQ", self._method_codes(engine.implicit, engine.little))
        if profile.full_dates:
            ltim = "UNMODIFIED"
        elif profile.modified_dates:
            ltim = "MODIFIED"
        else:
            ltim = "REMOVED"
        put(0x00280303, "CS", ltim)  # LongitudinalTemporalInformationModified

    def _method_codes(self, implicit: bool, little: bool) -> bytes:
        """Encoded items of DeidentificationMethodCodeSequence (CID 7050), built once per encoding."""
        key = (implicit, little)
        cached = self._code_seq_cache.get(key)
        if cached is None:
            items = Sequence()
            for value, meaning in self.profile.method_codes():
                item = Dataset()
                item.CodeValue = value
                item.CodingSchemeDesignator = "DCM"
                item.CodeMeaning = meaning
                items.append(item)
            buf = DicomBytesIO()
            buf.is_implicit_VR = implicit
            buf.is_little_endian = little
            write_sequence(buf, DataElement(0x00120064, "SQ", items), ["iso8859"])
            cached = bytes(buf.getvalue())
            self._code_seq_cache[key] = cached
        return cached


# -- helpers ------------------------------------------------------------------------------------------
def _get(ds: Dataset, tag: int, codec: str | None = None) -> str | None:
    """Value of ``tag`` as text (multi-values joined by backslash).

    Raw elements are decoded straight from their bytes (ASCII VRs always, text VRs when ``codec`` is a
    single-byte or UTF-8 codec), which leaves them raw: converting would make the writer slower later.
    """
    elem = ds._dict.get(tag)  # type: ignore[call-overload]
    if elem is None:
        return None
    if isinstance(elem, RawDataElement):
        vr = elem.VR or _dictionary_vr(tag)
        if vr in _ASCII_VRS:
            text = (elem.value or b"").decode("latin-1").strip(" \x00")
            return text or None
        if codec is not None and vr in _TEXT_VRS:
            text = (elem.value or b"").decode(codec, "replace").strip(" \x00")
            return text or None
    try:
        value = ds[tag].value
    except (ValueError, TypeError, LookupError):
        return None
    if value is None:
        return None
    if isinstance(value, MultiValue | list):
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    text = text.strip(" \x00")
    return text or None


def _single_codec(terms: list[str]) -> str | None:
    """Python codec when one non-ISO-2022 character set is in use (raw bytes decode directly), else None."""
    if len(terms) != 1 or "2022" in terms[0]:
        return None
    return python_encoding.get(terms[0] or "ISO_IR 6")


def _dictionary_vr(tag: int) -> str:
    entry = DicomDictionary.get(tag)
    return str(entry[0]) if entry else "UN"


def _text(ds: Dataset, keyword: str, codec: str | None = None) -> str | None:
    return _get(ds, int(keyword_dict[keyword]), codec)


def _phi(ds: Dataset, calling_aet: str | None, codec: str | None = None) -> PatientPHI:
    other: list[str] = []
    ids = _get(ds, 0x00101000, codec)  # OtherPatientIDs
    if ids:
        other.extend(v.strip() for v in ids.split("\\") if v.strip())
    seq_elem = ds._dict.get(0x00101002)  # type: ignore[call-overload]  # OtherPatientIDsSequence
    if seq_elem is not None and codec is not None and isinstance(seq_elem, RawDataElement) and seq_elem.value:
        # Read the IDs straight from the bytes: the sequence is removed anyway, parsing it is waste.
        found: list[str] = []
        try:
            scan_raw_sequence(
                seq_elem.value,
                seq_elem.is_implicit_VR,
                seq_elem.is_little_endian,
                codec,
                _PATIENT_ID_TAGS,
                lambda _tag, text: found.append(text),
            )
            other.extend(t.strip(" \x00") for t in found if t.strip(" \x00"))
            seq_elem = None
        except RawScanError:
            pass
    if seq_elem is not None:
        for item in ds[0x00101002].value or ():
            value = _text(item, "PatientID", codec)
            if value:
                other.append(value)
    return PatientPHI(
        patient_id=_text(ds, "PatientID", codec),
        issuer=_text(ds, "IssuerOfPatientID", codec),
        name=(_text(ds, "PatientName", codec) or "").rstrip("=") or None,
        birth_date=_text(ds, "PatientBirthDate", codec),
        sex=_text(ds, "PatientSex", codec),
        other_ids=tuple(other),
        institution=_text(ds, "InstitutionName", codec),
        calling_aet=calling_aet.strip() if calling_aet and calling_aet.strip() else None,
    )


def _instance_ref(ds: Dataset, meta: FileMetaDataset | None, codec: str | None = None) -> InstanceRef:
    sop_class = _text(ds, "SOPClassUID", codec) or (
        _text(meta, "MediaStorageSOPClassUID", codec) if meta is not None else None
    )
    sop = _text(ds, "SOPInstanceUID", codec)
    study = _text(ds, "StudyInstanceUID", codec)
    series = _text(ds, "SeriesInstanceUID", codec)
    if meta is not None:
        missing = [
            n
            for n, v in (
                ("SOPInstanceUID", sop),
                ("StudyInstanceUID", study),
                ("SeriesInstanceUID", series),
                ("SOPClassUID", sop_class),
            )
            if not v
        ]
        if missing:
            raise PoisonInputError(reasons.MISSING_REQUIRED, "missing " + ", ".join(missing))
    return InstanceRef(
        study_instance_uid=study or "",
        series_instance_uid=series or "",
        sop_instance_uid=sop or "",
        sop_class_uid=sop_class or "",
        accession_number=_text(ds, "AccessionNumber", codec),
        study_date=_text(ds, "StudyDate", codec),
    )


def _truncated(ds: Dataset, size: int) -> bool:
    """True when the last element read is shorter than its declared length (file cut in the header)."""
    if not ds._dict:
        return True
    last = ds._dict[max(ds._dict)]
    if isinstance(last, RawDataElement):
        if last.length == 0xFFFFFFFF:
            return False
        if last.value is None:  # deferred: check against the file size instead
            return last.value_tell + last.length > size
        return len(last.value) < last.length
    if isinstance(last.value, Sequence) and len(last.value):
        return _truncated(last.value[-1], size)
    return False


def _load_deferred(ds: Dataset, src: BinaryIO, which: Callable[[int, str], bool] | None = None) -> None:
    """Read the values of elements whose reading was deferred (large values before the pixels)."""
    d = ds._dict
    for tag, elem in list(d.items()):
        if isinstance(elem, RawDataElement) and elem.value is None and elem.length not in (0, 0xFFFFFFFF):
            if which is not None and not which(int(tag), elem.VR or _dictionary_vr(int(tag))):
                continue
            src.seek(elem.value_tell)
            value = src.read(elem.length)
            if len(value) < elem.length:
                raise PoisonInputError(
                    reasons.TRUNCATED, f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) cut short"
                )
            d[tag] = elem._replace(value=value)


def _policy_birth_date(birth: str | None, policy: str) -> str | None:
    if not birth or policy == "remove":
        return None
    text = birth.strip()
    if len(text) != 8 or not text.isdigit():
        return None
    if policy == "day15":
        return text[:6] + "15"
    if policy == "july1":
        return text[:4] + "0701"
    return text


def _age(birth: str | None, on: str | None) -> str | None:
    """DICOM AS age at ``on`` for a YYYYMMDD birth date (days < 1 month, months < 2 years, else years)."""
    if not birth or not on:
        return None
    try:
        born = dt.date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
        day = dt.date(int(on[:4]), int(on[4:6]), int(on[6:8]))
    except (ValueError, IndexError):
        return None
    if day < born:
        return None
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (day.year - born.year) * 12 + day.month - born.month - (day.day < born.day)
    if months >= 1:
        return f"{months:03d}M"
    return f"{(day - born).days:03d}D"


def _meta_bytes(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """File meta information (PS3.10 7.1), always explicit VR little endian, with its group length."""
    writer = HeaderWriter(False, True)
    body = bytearray()
    for tag, vr, value in (
        (0x00020001, "OB", b"\x00\x01"),
        (0x00020002, "UI", pad(sop_class.encode("ascii"), "UI")),
        (0x00020003, "UI", pad(sop_instance.encode("ascii"), "UI")),
        (0x00020010, "UI", pad(transfer_syntax.encode("ascii"), "UI")),
        (0x00020012, "UI", pad(IMPLEMENTATION_CLASS_UID.encode("ascii"), "UI")),
        (0x00020013, "SH", pad(IMPLEMENTATION_VERSION.encode("ascii"), "SH")),
    ):
        body += writer.element_head(tag, vr, len(value))
        body += value
    return _PREAMBLE + writer.element_head(0x00020000, "UL", 4) + struct.pack("<L", len(body)) + bytes(body)


def _serialise(ds: Dataset, meta: bytes, implicit: bool, little: bool) -> bytes:
    out = bytearray(meta)
    HeaderWriter(implicit, little).dataset(ds, _encodings_of(ds, "iso8859"), out)
    return bytes(out)


def _serialise_body(ds: Dataset, implicit: bool, little: bool, encodings: str | list[str]) -> bytes:
    out = bytearray()
    HeaderWriter(implicit, little).dataset(ds, encodings, out)
    return bytes(out)


def _encodings_of(ds: Dataset, default: str) -> str | list[str]:
    value = _get(ds, 0x00080005)
    if not value:
        return default
    terms = value.split("\\")
    return terms if len(terms) > 1 else terms[0]


def _catalog(ds: Dataset, pseudonym: str, ts: str, codec: str | None = None) -> dict[str, Any]:
    age = _text(ds, "PatientAge", codec)
    age_years: int | None = None
    if age and len(age) == 4 and age[:3].isdigit():
        unit = age[3].upper()
        age_years = int(age[:3]) if unit == "Y" else 0 if unit in "MWD" else None

    def _int(keyword: str) -> int | None:
        tag = int(keyword_dict[keyword])
        if tag not in ds._dict:
            return None
        try:
            value = ds[tag].value
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return {
        "pseudonym": pseudonym,
        "sex": _text(ds, "PatientSex", codec),
        "age_years": age_years,
        "ethnic_group": _text(ds, "EthnicGroup", codec),
        "modality": _text(ds, "Modality", codec),
        "body_part": _text(ds, "BodyPartExamined", codec),
        "view_position": _text(ds, "ViewPosition", codec),
        "laterality": _text(ds, "ImageLaterality", codec) or _text(ds, "Laterality", codec),
        "study_date": _text(ds, "StudyDate", codec),
        "manufacturer": _text(ds, "Manufacturer", codec),
        "model": _text(ds, "ManufacturerModelName", codec),
        "sop_class_uid": _text(ds, "SOPClassUID", codec),
        "rows": _int("Rows"),
        "columns": _int("Columns"),
        "number_of_frames": _int("NumberOfFrames"),
        "transfer_syntax": ts,
    }


__all__ = ["IMPLEMENTATION_CLASS_UID", "DeidResult", "Deidentifier", "InstanceRef"]
