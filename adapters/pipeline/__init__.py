"""The event-driven pipeline: intake object → de-identified research instance (or quarantine)."""
