"""Upload one file to S3 the way its size calls for (the intake writer and the pipeline's research upload).

* up to :data:`READ_WHOLE_UP_TO`: one ``PutObject`` from memory. With a file body botocore sends
  ``Expect: 100-continue`` and waits for the server's interim answer, one more round trip per instance;
* larger: boto3's ``upload_file``, which streams from the file — one ``PutObject`` up to
  :data:`MULTIPART_ABOVE`, a multipart upload in :data:`PART_SIZE` parts above — so a 500 MB
  tomosynthesis instance is never held whole in memory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

READ_WHOLE_UP_TO = 16 * 1024 * 1024
MULTIPART_ABOVE = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def put_file(client: Any, path: str | os.PathLike[str], bucket: str, key: str, *, content_type: str,
             metadata: Mapping[str, str]) -> None:
    """Upload the file at ``path`` to ``bucket``/``key`` (module docstring); boto3's errors propagate."""
    if os.path.getsize(path) <= READ_WHOLE_UP_TO:
        with open(path, "rb") as handle:
            data = handle.read()
        client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type,
                          Metadata=dict(metadata))
        return
    from boto3.s3.transfer import TransferConfig

    client.upload_file(
        str(path), bucket, key, ExtraArgs={"ContentType": content_type, "Metadata": dict(metadata)},
        Config=TransferConfig(multipart_threshold=MULTIPART_ABOVE, multipart_chunksize=PART_SIZE,
                              use_threads=False),
    )
