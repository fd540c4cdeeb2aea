"""TMI's Orthanc Python plugin: the only file in the project that imports ``orthanc``.

It is thin on purpose. It reads the ``Tmi`` section of the Orthanc configuration, puts the project's
virtualenv on ``sys.path`` (Orthanc embeds the system Python 3.11), and hands events to plain modules:

* role ``intake``: the stored-instance callback gives every received instance to
  ``adapters.intake_writer.IntakeWriter`` (→ intake bucket, ``incoming/...``), and a background thread
  re-uploads instances spooled while the object store was unreachable. Instances above ``StoredFileAbove``
  bytes (16 MB) are handed over by reference: the uploader streams Orthanc's own stored file (located
  through the REST API, outside the callback) instead of a ``GetInstanceData()`` copy in memory;
* role ``research``: an incoming-HTTP-request filter makes every account except the pipeline's read-only
  (``adapters.research_access.allowed``), since Orthanc 1.10 has no per-user permissions.
"""

import json
import sys

import orthanc

_CONFIG = json.loads(orthanc.GetConfiguration()).get("Tmi", {})
for _path in _CONFIG.get("SysPath", []):
    if _path and _path not in sys.path:
        sys.path.append(_path)

_ROLE = _CONFIG.get("Role", "intake")

if _ROLE == "intake":
    import os
    from pathlib import Path

    from adapters.intake_writer import StoredFileGone, from_config, orthanc_storage_path

    _ORTHANC = json.loads(orthanc.GetConfiguration())
    _STORAGE = Path(str(_ORTHANC.get("StorageDirectory") or "OrthancStorage"))
    # By reference only when Orthanc's file is the instance as received: uncompressed, at a known place.
    _BY_REFERENCE = not _ORTHANC.get("StorageCompression", False) and _STORAGE.is_absolute()
    _STORED_ABOVE = int(_CONFIG.get("StoredFileAbove", 16 * 1024 * 1024))

    def _stored_file(instance_id, size):
        """Orthanc's stored file of ``instance_id`` (called from an uploader thread, never the callback)."""
        try:
            info = json.loads(orthanc.RestApiGet(f"/instances/{instance_id}/attachments/dicom/info"))
        except orthanc.OrthancException as exc:  # args: (error code, message)
            if exc.args and exc.args[0] == int(orthanc.ErrorCode.UNKNOWN_RESOURCE):
                raise StoredFileGone("Orthanc no longer has the instance") from exc
            raise  # anything else may pass: the uploader retries
        path = orthanc_storage_path(_STORAGE, str(info.get("Uuid", "")))
        if info.get("UncompressedSize") != size or not path.is_file() or os.path.getsize(path) != size:
            raise StoredFileGone("the stored file is missing or not the size Orthanc reported")
        return path

    # The locator is always given: references spooled before a configuration change (compression turned
    # on) are still resolved, or set aside when the stored file is not the instance as received.
    _WRITER = from_config(_CONFIG, stored_file=_stored_file)

    def _on_stored_instance(dicom, instance_id):
        """Orthanc stored an instance: spool it (large ones by reference); the uploader threads put it to
        the intake bucket."""
        aet = dicom.GetInstanceRemoteAet()
        size = dicom.GetInstanceSize()
        if _BY_REFERENCE and size > _STORED_ABOVE:
            key = _WRITER.enqueue_stored(instance_id, size, aet)
        else:
            key = _WRITER.enqueue(instance_id, dicom.GetInstanceData(), aet)
        orthanc.LogInfo(f"TMI intake: instance {instance_id} -> s3://{_WRITER.bucket}/{key}")

    orthanc.RegisterOnStoredInstanceCallback(_on_stored_instance)
    _WRITER.drain_spool()  # whatever an earlier run left behind
    _WRITER.start_uploaders(int(_CONFIG.get("UploadThreads", 2)), float(_CONFIG.get("SpoolRetrySeconds", 5)))
    _WRITER.run_spool_drainer(float(_CONFIG.get("SpoolRetrySeconds", 5)) * 6)
    orthanc.LogWarning(f"TMI intake plugin: writing to bucket {_WRITER.bucket}")

elif _ROLE == "research":
    from adapters.research_access import allowed

    _WRITERS = tuple(_CONFIG.get("WriterUsers", []))
    _METHODS = {
        orthanc.HttpMethod.GET: "GET",
        orthanc.HttpMethod.POST: "POST",
        orthanc.HttpMethod.PUT: "PUT",
        orthanc.HttpMethod.DELETE: "DELETE",
    }

    def _filter(uri, **request):
        """Return True to let the request through (Orthanc still checks credentials)."""
        method = request.get("method")
        name = _METHODS.get(method, str(method))
        return allowed(name, uri, request.get("headers") or {}, _WRITERS)

    orthanc.RegisterIncomingHttpRequestFilter(_filter)
    orthanc.LogWarning("TMI research plugin: researcher accounts are read-only")
