-- TMI crosswalk schema (issue 3): persons, scan identities (immutable), links with history, studies /
-- series / instances, review flags, notes with versions, append-only audit log, republish work items.
-- Later areas (gateway 02xx, pipeline 03xx) declare "-- depends: 0001_crosswalk" (or the last 00xx file).

CREATE FUNCTION tmi_reject_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION '% on % is not allowed: rows of % are immutable (append-only)', TG_OP, TG_TABLE_NAME, TG_TABLE_NAME
        USING ERRCODE = 'P0001', HINT = 'record a new row instead (a correction, a new version, a new link)';
END
$fn$;

CREATE TABLE person (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    pseudonym    text NOT NULL UNIQUE CHECK (pseudonym ~ '^TMI-[0-9A-HJKMNP-TV-Z]{10}$'),
    alias        text NOT NULL,
    sex          text CHECK (sex IN ('M', 'F', 'O')),
    status       text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'merged')),
    merged_into  uuid REFERENCES person (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'merged') = (merged_into IS NOT NULL))
);

-- What arrived, exactly; plus the normalized columns the matching rules use (derived at insert time).
CREATE TABLE scan_identity (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('arrived', 'correction')),
    corrects_id      bigint REFERENCES scan_identity (id),
    patient_id       text,
    issuer           text,
    institution      text,
    calling_aet      text,
    patient_name     text,
    birth_date       text,
    sex              text,
    other_ids        text[] NOT NULL DEFAULT '{}',
    clinic_key       text,
    patient_id_norm  text,
    name_key         text,
    name_alpha       text,
    name_ideo        text,
    name_phon        text,
    birth_date_norm  text,
    sex_norm         text,
    fingerprint      text,
    source           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL,
    created_role     text NOT NULL,
    request_id       text,
    reason           text,
    CHECK ((kind = 'correction') = (corrects_id IS NOT NULL)),
    CHECK (kind = 'arrived' OR reason IS NOT NULL),
    CHECK (kind = 'correction' OR fingerprint IS NOT NULL)
);
CREATE UNIQUE INDEX scan_identity_fingerprint ON scan_identity (fingerprint) WHERE kind = 'arrived';
CREATE INDEX scan_identity_match_key ON scan_identity (clinic_key, patient_id_norm);
CREATE INDEX scan_identity_name_birth ON scan_identity (name_key, birth_date_norm);
CREATE INDEX scan_identity_birth ON scan_identity (birth_date_norm);
CREATE INDEX scan_identity_corrects ON scan_identity (corrects_id) WHERE corrects_id IS NOT NULL;
CREATE TRIGGER scan_identity_immutable BEFORE UPDATE OR DELETE ON scan_identity
    FOR EACH ROW EXECUTE FUNCTION tmi_reject_change();
CREATE TRIGGER scan_identity_no_truncate BEFORE TRUNCATE ON scan_identity
    FOR EACH STATEMENT EXECUTE FUNCTION tmi_reject_change();

-- Confirm / merge / split / correction: who, when, why (append-only).
CREATE TABLE person_change (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('confirm', 'merge', 'split', 'correction')),
    actor       text NOT NULL,
    role        text NOT NULL,
    request_id  text,
    reason      text NOT NULL,
    detail      jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TRIGGER person_change_immutable BEFORE UPDATE OR DELETE ON person_change
    FOR EACH ROW EXECUTE FUNCTION tmi_reject_change();

-- identity -> person, with history: re-linking closes the old row (valid_to) and inserts a new one.
CREATE TABLE identity_link (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    identity_id  bigint NOT NULL REFERENCES scan_identity (id),
    person_id    uuid NOT NULL REFERENCES person (id),
    method       text NOT NULL CHECK (method IN ('exact', 'rule', 'admin')),
    confidence   numeric(3, 2) NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    rule         text NOT NULL,
    provenance   jsonb NOT NULL DEFAULT '{}',
    change_id    bigint REFERENCES person_change (id),
    valid_from   timestamptz NOT NULL DEFAULT now(),
    valid_to     timestamptz,
    created_by   text NOT NULL,
    closed_by    text
);
CREATE UNIQUE INDEX identity_link_active ON identity_link (identity_id) WHERE valid_to IS NULL;
CREATE INDEX identity_link_person_active ON identity_link (person_id) WHERE valid_to IS NULL;
CREATE INDEX identity_link_identity ON identity_link (identity_id);

CREATE FUNCTION tmi_link_close_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'DELETE on identity_link is not allowed: links keep their history';
    END IF;
    IF OLD.valid_to IS NOT NULL OR NEW.valid_to IS NULL
       OR (NEW.id, NEW.identity_id, NEW.person_id, NEW.method, NEW.confidence, NEW.rule, NEW.provenance,
           NEW.change_id, NEW.valid_from, NEW.created_by)
          IS DISTINCT FROM
          (OLD.id, OLD.identity_id, OLD.person_id, OLD.method, OLD.confidence, OLD.rule, OLD.provenance,
           OLD.change_id, OLD.valid_from, OLD.created_by) THEN
        RAISE EXCEPTION 'UPDATE on identity_link may only close an open link (set valid_to, closed_by)';
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER identity_link_close_only BEFORE UPDATE OR DELETE ON identity_link
    FOR EACH ROW EXECUTE FUNCTION tmi_link_close_only();

CREATE TABLE study (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    original_study_uid  text NOT NULL UNIQUE,
    anon_study_uid      text NOT NULL UNIQUE,
    person_id           uuid NOT NULL REFERENCES person (id),
    accession           text,
    study_date          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX study_person ON study (person_id);

CREATE TABLE series (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    study_id             bigint NOT NULL REFERENCES study (id),
    original_series_uid  text NOT NULL UNIQUE,
    anon_series_uid      text NOT NULL UNIQUE,
    modality             text,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX series_study ON series (study_id);

CREATE TABLE instance (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    series_id         bigint NOT NULL REFERENCES series (id),
    original_sop_uid  text NOT NULL UNIQUE,
    anon_sop_uid      text NOT NULL UNIQUE,
    sop_class_uid     text,
    person_id         uuid NOT NULL REFERENCES person (id),
    identity_id       bigint NOT NULL REFERENCES scan_identity (id),
    intake_key        text,
    research_key      text,
    state             text NOT NULL DEFAULT 'received'
                      CHECK (state IN ('received', 'processing', 'published', 'quarantined', 'republish_pending',
                                       'failed', 'withdrawn')),
    state_detail      text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instance_person ON instance (person_id);
CREATE INDEX instance_identity ON instance (identity_id);
CREATE INDEX instance_series ON instance (series_id);

CREATE TABLE review_flag (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind               text NOT NULL CHECK (kind IN ('possible_typo', 'id_collision', 'possible_same_person',
                                                     'similar_person', 'incomplete_phi', 'ambiguous_match')),
    status             text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
    identity_id        bigint NOT NULL REFERENCES scan_identity (id),
    person_id          uuid NOT NULL REFERENCES person (id),
    other_person_id    uuid REFERENCES person (id),
    other_identity_id  bigint REFERENCES scan_identity (id),
    evidence           jsonb NOT NULL DEFAULT '{}',
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text NOT NULL,
    resolution         text,
    resolved_by        text,
    resolved_role      text,
    resolved_at        timestamptz,
    resolve_request_id text,
    CHECK ((status = 'open') = (resolved_at IS NULL))
);
CREATE INDEX review_flag_open ON review_flag (created_at) WHERE status = 'open';
CREATE INDEX review_flag_identity ON review_flag (identity_id);
CREATE INDEX review_flag_person ON review_flag (person_id);

CREATE TABLE note (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    person_id      uuid NOT NULL REFERENCES person (id),
    source         text NOT NULL CHECK (source IN ('dicom', 'admin')),
    keyword        text,
    origin_sha256  text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    CHECK (source = 'admin' OR origin_sha256 IS NOT NULL)
);
CREATE UNIQUE INDEX note_dicom_dedupe ON note (person_id, origin_sha256) WHERE source = 'dicom';
CREATE INDEX note_person ON note (person_id);

CREATE TABLE note_version (
    note_id     bigint NOT NULL REFERENCES note (id),
    version     integer NOT NULL CHECK (version >= 1),
    body        text NOT NULL,
    edited_at   timestamptz NOT NULL DEFAULT now(),
    edited_by   text NOT NULL,
    edited_role text NOT NULL,
    request_id  text,
    reason      text,
    PRIMARY KEY (note_id, version)
);
CREATE TRIGGER note_version_immutable BEFORE UPDATE OR DELETE ON note_version
    FOR EACH ROW EXECUTE FUNCTION tmi_reject_change();

CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        text NOT NULL,
    role         text NOT NULL,
    action       text NOT NULL,
    target_type  text,
    target_id    text,
    request_id   text,
    detail       jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);
CREATE INDEX audit_log_actor ON audit_log (actor, at);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION tmi_reject_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION tmi_reject_change();

CREATE TABLE republish_item (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    change_id       bigint NOT NULL REFERENCES person_change (id),
    instance_id     bigint NOT NULL REFERENCES instance (id),
    reason          text NOT NULL,
    old_person_id   uuid REFERENCES person (id),
    new_person_id   uuid NOT NULL REFERENCES person (id),
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'claimed', 'done')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_at      timestamptz,
    completed_at    timestamptz
);
CREATE INDEX republish_item_open ON republish_item (id) WHERE status <> 'done';

-- The pipeline's work queue: claim up to p_limit items; a claim older than p_stale is claimable again.
CREATE FUNCTION claim_republish_items(p_limit integer, p_stale interval DEFAULT interval '10 minutes')
RETURNS SETOF republish_item LANGUAGE sql AS $fn$
    UPDATE republish_item r
       SET status = 'claimed', claimed_at = now(), attempts = r.attempts + 1
     WHERE r.id IN (SELECT q.id FROM republish_item q
                     WHERE q.status = 'pending' OR (q.status = 'claimed' AND q.claimed_at < now() - p_stale)
                     ORDER BY q.id
                     LIMIT p_limit
                     FOR UPDATE SKIP LOCKED)
    RETURNING r.*;
$fn$;

CREATE FUNCTION complete_republish_item(p_id bigint) RETURNS boolean LANGUAGE sql AS $fn$
    UPDATE republish_item SET status = 'done', completed_at = now() WHERE id = p_id AND status <> 'done'
    RETURNING true;
$fn$;
