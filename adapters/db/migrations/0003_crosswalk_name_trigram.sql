-- resolve()'s 'f' candidate arm: for an arrival without a birth date, other-key identities with a
-- similar normalized name (pg_trgm's trigram similarity). Without it, a known patient arriving at a new
-- clinic with a mistyped name and no birth date had no exact field leading to the earlier identity and
-- came in as a stranger, unflagged. pg_trgm ships with PostgreSQL (Debian's postgresql package) and is a
-- trusted extension: a database owner may create it (on RDS too). The GIN index costs each new
-- identity ~0.04 ms at 1,000,000 identities (measured; docs/crosswalk.md).
-- depends: 0002_crosswalk_current_link_covering

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX scan_identity_name_trgm ON scan_identity USING gin (name_key gin_trgm_ops);
