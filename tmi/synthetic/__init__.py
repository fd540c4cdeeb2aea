"""Synthetic DICOM for tests, the demo and the benchmarks — never real patients.

``tmi.synthetic.dicom`` builds realistic, PHI-rich instances (small CR/DX/MG, a ~27 MB MG, a large
multi-frame written by streaming, encapsulated variants); ``tmi.synthetic.demo`` generates the
``make demo`` population and its ground truth. Everything is deterministic from a seed, pure Python with
pydicom, and performs no network I/O (writing the requested files is the only side effect).
"""

from tmi.synthetic.dicom import (
    Clinic,
    SyntheticPatient,
    encapsulated_instance,
    large_mg_instance,
    mammo_instance,
    random_patient,
    small_instance,
    write_dataset,
    write_multiframe_streaming,
)

__all__ = [
    "Clinic",
    "SyntheticPatient",
    "encapsulated_instance",
    "large_mg_instance",
    "mammo_instance",
    "random_patient",
    "small_instance",
    "write_dataset",
    "write_multiframe_streaming",
]
