-- Rollback of 0001_crosswalk: drops the whole crosswalk schema (development only; data is lost).
DROP FUNCTION IF EXISTS complete_republish_item(bigint);
DROP FUNCTION IF EXISTS claim_republish_items(integer, interval);
DROP TABLE IF EXISTS republish_item, audit_log, note_version, note, review_flag, instance, series, study,
    identity_link, person_change, scan_identity, person CASCADE;
DROP FUNCTION IF EXISTS tmi_link_close_only();
DROP FUNCTION IF EXISTS tmi_reject_change();
