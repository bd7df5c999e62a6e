-- Device identity certificates issued by the SCEP CA (RFC 8894). Check-in finds the enrollment behind a
-- request by the SHA-256 fingerprint of the certificate the device presents, so that lookup is a unique
-- index. Formats: `serial` is the certificate serial number as lowercase hex without leading zero bytes;
-- `fingerprint_sha256` is the lowercase hex SHA-256 of the certificate's DER, 64 characters, no colons.
CREATE TABLE device_certificates (
  id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  serial                text        NOT NULL,
  fingerprint_sha256    text        NOT NULL,
  -- As issued (RFC 4514 string), from the server's template, never from the CSR.
  subject               text        NOT NULL,
  not_before            timestamptz(3) NOT NULL,
  not_after             timestamptz(3) NOT NULL,
  user_id               uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id               uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  access_token_id       uuid        NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
  enrollment_profile_id uuid        REFERENCES enrollment_profiles (id) ON DELETE CASCADE,
  -- The challenge a PKCSReq consumed; null for renewals. Unique: one challenge, one certificate.
  -- SET NULL so that pruning old challenges never removes the certificates they led to.
  scep_challenge_id     uuid        REFERENCES scep_challenges (id) ON DELETE SET NULL,
  -- For a RenewalReq: the certificate that signed it.
  renewed_from_id       uuid        REFERENCES device_certificates (id) ON DELETE SET NULL,
  certificate_der       bytea       NOT NULL,
  revoked_at            timestamptz(3),
  created_at            timestamptz(3) NOT NULL DEFAULT now(),
  CONSTRAINT device_certificates_serial_format CHECK (serial ~ '^[0-9a-f]+$'),
  CONSTRAINT device_certificates_fingerprint_format CHECK (fingerprint_sha256 ~ '^[0-9a-f]{64}$')
);
CREATE UNIQUE INDEX device_certificates_serial_key ON device_certificates (serial);
CREATE UNIQUE INDEX device_certificates_fingerprint_sha256_key ON device_certificates (fingerprint_sha256);
CREATE UNIQUE INDEX device_certificates_scep_challenge_id_key ON device_certificates (scep_challenge_id);
CREATE INDEX device_certificates_user_id_idx ON device_certificates (user_id);
CREATE INDEX device_certificates_enrollment_profile_id_idx ON device_certificates (enrollment_profile_id);
CREATE INDEX device_certificates_access_token_id_idx ON device_certificates (access_token_id);
