"""Upload one file to S3 the way its size calls for (the intake writer and the pipeline's research upload).

* up to :data:`MULTIPART_ABOVE`: one ``PutObject`` with the open file as its body (botocore reads it in
  blocks to hash it and to send it);
* larger: boto3's ``upload_file``, a multipart upload in :data:`PART_SIZE` parts. For a single PUT its
  s3transfer machinery only adds work (about 1 ms more CPU per 40 KB object than ``PutObject`` in a one-off
  measurement against moto), and the pipeline pays that for every instance.

Neither reads the file into one bytes object, so a 500 MB tomosynthesis instance is never held whole in
memory. (botocore sends ``Expect: 100-continue`` with every ``PutObject`` body, bytes included.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

MULTIPART_ABOVE = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def put_file(client: Any, path: str | os.PathLike[str], bucket: str, key: str, *, content_type: str,
             metadata: Mapping[str, str]) -> None:
    """Upload the file at ``path`` to ``bucket``/``key`` (module docstring); boto3's errors propagate."""
    if os.path.getsize(path) <= MULTIPART_ABOVE:
        with open(path, "rb") as handle:
            client.put_object(Bucket=bucket, Key=key, Body=handle, ContentType=content_type,
                              Metadata=dict(metadata))
        return
    from boto3.s3.transfer import TransferConfig

    client.upload_file(
        str(path), bucket, key, ExtraArgs={"ContentType": content_type, "Metadata": dict(metadata)},
        Config=TransferConfig(multipart_threshold=MULTIPART_ABOVE, multipart_chunksize=PART_SIZE,
                              use_threads=False),
    )
