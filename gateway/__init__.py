"""The TMI gateway: FastAPI app for researchers (/research) and IT staff (/admin), Lambda-ready."""
