DROP INDEX identity_link_active;
CREATE UNIQUE INDEX identity_link_active ON identity_link (identity_id) WHERE valid_to IS NULL;
