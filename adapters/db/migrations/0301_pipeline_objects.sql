-- Pipeline bookkeeping (issue 4): one row per intake object version the functions have seen, used as the
-- idempotency claim, and one row per quarantined object. No PHI here: object keys are
-- incoming/<yyyy>/<mm>/<dd>/<orthanc instance id>.dcm (a hash), reasons are stable codes, details are
-- PHI-free by the deid contract. Quarantined objects carry an open review flag (review_status) that an
-- admin clears; the crosswalk's instance row (when the instance could be parsed) says 'quarantined' too.
-- depends: 0001_crosswalk

CREATE TABLE pipeline_objects (
    idempotency_key  text PRIMARY KEY,               -- bucket/key#version-or-etag
    bucket           text NOT NULL,
    object_key       text NOT NULL,
    etag             text NOT NULL DEFAULT '',
    state            text NOT NULL CHECK (state IN ('IN_PROGRESS', 'COMPLETED', 'QUARANTINED', 'FAILED')),
    attempts         integer NOT NULL DEFAULT 1,
    claimed_by       text,
    expires_at       timestamptz,                    -- an IN_PROGRESS claim past this may be taken over
    pseudonym        text,
    research_key     text,
    research_study_uid  text,
    research_series_uid text,
    research_sop_uid    text,
    reason           text,                           -- quarantine reason code or last retryable error class
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    completed_at     timestamptz
);

CREATE INDEX pipeline_objects_object ON pipeline_objects (bucket, object_key);
CREATE INDEX pipeline_objects_state ON pipeline_objects (state);

CREATE TABLE pipeline_quarantine (
    id               bigserial PRIMARY KEY,
    idempotency_key  text NOT NULL REFERENCES pipeline_objects (idempotency_key),
    bucket           text NOT NULL,
    object_key       text NOT NULL,
    quarantine_bucket text NOT NULL,
    quarantine_key   text NOT NULL,
    reason           text NOT NULL,
    detail           text NOT NULL DEFAULT '',
    calling_aet      text,
    review_status    text NOT NULL DEFAULT 'open' CHECK (review_status IN ('open', 'resolved', 'dismissed')),
    reviewed_by      text,
    reviewed_at      timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (idempotency_key)
);
