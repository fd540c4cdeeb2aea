-- resolve()'s write in one statement. The write is guarded: it happens only if the groups the advisory
-- locks protect (identities under the match key; identities with this normalized name + birth date) still
-- have the sizes resolve() read with its candidates, no identical arrival exists, and a person to link to
-- is still active and linked. The guard must see every transaction that committed before the locks were
-- granted, so the locks cannot share a snapshot with it. Until now the lock was a statement of its own,
-- sent in the same round trip (two statements, one implicit transaction). In this function the locks come
-- first and the guard's query, like every query of a VOLATILE function, takes a fresh snapshot after
-- them; the write then needs one statement: WITH g AS (SELECT crosswalk_resolve_guard(...) AS ok) ...
-- The locks are held until that statement's transaction commits.
-- depends: 0003_crosswalk_name_trigram

CREATE FUNCTION crosswalk_resolve_guard(
    p_lock_ids bigint[],      -- sorted by the caller: one global order, so no deadlocks
    p_clinic_key text, p_patient_id_norm text, p_key_n bigint,
    p_name_key text, p_birth_date_norm text, p_name_birth_n bigint,
    p_fingerprint text,
    p_creating boolean, p_person uuid, p_via bigint[])
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    lock_id bigint;
BEGIN
    FOREACH lock_id IN ARRAY p_lock_ids LOOP
        PERFORM pg_advisory_xact_lock(lock_id);
    END LOOP;
    RETURN (SELECT count(*) FROM scan_identity
             WHERE clinic_key = p_clinic_key AND patient_id_norm = p_patient_id_norm) = p_key_n
       AND (SELECT count(*) FROM scan_identity
             WHERE name_key = p_name_key AND birth_date_norm IS NOT DISTINCT FROM p_birth_date_norm)
           = p_name_birth_n
       AND NOT EXISTS (SELECT 1 FROM scan_identity WHERE fingerprint = p_fingerprint AND kind = 'arrived')
       AND (p_creating OR EXISTS (SELECT 1 FROM identity_link gl JOIN person gp ON gp.id = gl.person_id
                                   WHERE gl.person_id = p_person AND gl.valid_to IS NULL
                                     AND gl.identity_id = ANY (p_via) AND gp.status = 'active'));
END
$$;
