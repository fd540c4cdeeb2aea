DROP INDEX scan_identity_name_trgm;
