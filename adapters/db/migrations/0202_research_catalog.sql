-- Research catalog: research-safe attributes of every published instance, for cohort queries.
-- No PHI column exists here by construction: pseudonyms, de-identified UIDs and coarse attributes only.

CREATE TABLE research_instance (
    sop_instance_uid    text        PRIMARY KEY,
    series_instance_uid text        NOT NULL,
    study_instance_uid  text        NOT NULL,
    pseudonym           text        NOT NULL,
    sex                 text,
    age_years           smallint,
    ethnic_group        text,
    modality            text,
    body_part           text,
    view_position       text,
    laterality          text,
    study_date          date,
    manufacturer        text,
    model               text,
    sop_class_uid       text,
    rows                integer,
    columns             integer,
    number_of_frames    integer,
    transfer_syntax     text,
    bucket_key          text        NOT NULL UNIQUE,
    size_bytes          bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256              text        NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    published_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX research_instance_study_idx ON research_instance (study_instance_uid, series_instance_uid,
                                                               sop_instance_uid);

-- One row per study, maintained by adapters.db.catalog.upsert_instance (never by hand): the study list
-- filters on it with btree indexes (scalars) and GIN indexes (per-instance attribute sets).
CREATE TABLE research_study (
    study_instance_uid text        PRIMARY KEY,
    pseudonym          text        NOT NULL,
    sex                text,
    age_years          smallint,
    ethnic_group       text,
    study_date         date,
    modalities         text[]      NOT NULL DEFAULT '{}',
    body_parts         text[]      NOT NULL DEFAULT '{}',
    view_positions     text[]      NOT NULL DEFAULT '{}',
    lateralities       text[]      NOT NULL DEFAULT '{}',
    manufacturers      text[]      NOT NULL DEFAULT '{}',
    models             text[]      NOT NULL DEFAULT '{}',
    series_count       integer     NOT NULL,
    instance_count     integer     NOT NULL,
    total_bytes        bigint      NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
-- Sort keys (keyset pagination): each sort expression + the study UID as tie-breaker.
CREATE INDEX research_study_date_idx ON research_study ((coalesce(study_date, DATE '0001-01-01')),
                                                        study_instance_uid);
CREATE INDEX research_study_age_idx ON research_study ((coalesce(age_years, -1)), study_instance_uid);
CREATE INDEX research_study_pseudonym_idx ON research_study (pseudonym, study_instance_uid);
CREATE INDEX research_study_sex_idx ON research_study (sex, study_date);
CREATE INDEX research_study_ethnic_idx ON research_study (ethnic_group);
CREATE INDEX research_study_sets_idx ON research_study
    USING gin (modalities, body_parts, view_positions, lateralities);
