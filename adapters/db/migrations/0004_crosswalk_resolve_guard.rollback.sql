DROP FUNCTION crosswalk_resolve_guard(bigint[], text, text, bigint, text, text, bigint, text, boolean, uuid, bigint[]);
