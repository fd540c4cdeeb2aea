-- The current link of an identity carries its person: resolve()'s candidate search reads
-- (identity -> person) for every candidate identity from the index alone (an index-only scan), without
-- visiting the link table's heap. Same uniqueness as before: at most one current link per identity.
-- depends: 0001_crosswalk

DROP INDEX identity_link_active;
CREATE UNIQUE INDEX identity_link_active ON identity_link (identity_id) INCLUDE (person_id)
    WHERE valid_to IS NULL;
