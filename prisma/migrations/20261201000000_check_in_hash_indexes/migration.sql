-- The check-in lookup (storage/device-context.ts) reads its rows by equality on each request: the identity
-- certificate by fingerprint, its enrollment binding, the enrollment, its channels, the presented token by
-- hash, the token's user and the OAuth 2 grant behind it, and (when they differ from those) the
-- enrollment's current token and users. Issue 15: on a database of 100,000 enrollments each of these
-- B-tree lookups read three index pages and the row's page (the keys are random: a SHA-256 or a UUID),
-- twice what it reads on a small database, and the signed Idle fell below 0.9x of its small-database
-- figure. A hash index reads one bucket page whatever the table's size (the backend caches its metapage),
-- so each lookup is two pages again. The B-tree indexes stay: they enforce uniqueness (a hash index
-- cannot) and serve the other queries' ranges and orderings.
CREATE INDEX device_certificates_fingerprint_sha256_hash_idx ON device_certificates USING hash (fingerprint_sha256);
CREATE INDEX mdm_enrollment_certificates_device_certificate_id_hash_idx ON mdm_enrollment_certificates USING hash (device_certificate_id);
CREATE INDEX mdm_enrollments_id_hash_idx ON mdm_enrollments USING hash (id);
CREATE INDEX mdm_channels_mdm_enrollment_id_hash_idx ON mdm_channels USING hash (mdm_enrollment_id);
CREATE INDEX access_tokens_token_hash_hash_idx ON access_tokens USING hash (token_hash);
CREATE INDEX users_id_hash_idx ON users USING hash (id);
CREATE INDEX oauth2_grants_id_hash_idx ON oauth2_grants USING hash (id);
CREATE INDEX access_tokens_id_hash_idx ON access_tokens USING hash (id);
