-- Enrollment (issue 3): everything an enrollment profile was issued with, so a re-issue is built from
-- the record and never from current config (a device rejects an update whose ServerURL, CheckInURL,
-- Topic, AssignedManagedAppleID or EnrollmentMode differ), and one profile per access token.
-- The table has no rows before this migration: nothing wrote enrollment_profiles until now.

-- Set when the token fetched its profile; the conditional UPDATE that sets it is what lets a token fetch
-- exactly one profile, even when two requests race.
ALTER TABLE access_tokens ADD COLUMN profile_issued_at timestamptz(3);

ALTER TABLE enrollment_profiles
  -- Top-level PayloadIdentifier (stable: a profile update replaces the profile with the same one).
  ADD COLUMN payload_identifier     text    NOT NULL,
  ADD COLUMN mdm_payload_uuid       uuid    NOT NULL,
  ADD COLUMN scep_payload_uuid      uuid    NOT NULL,
  ADD COLUMN display_name           text    NOT NULL,
  ADD COLUMN organization           text    NOT NULL,
  ADD COLUMN sign_message           boolean NOT NULL,
  ADD COLUMN check_out_when_removed boolean NOT NULL,
  -- com.apple.mdm.per-user-connections must not be added or removed by an update either.
  ADD COLUMN server_capabilities    text[]  NOT NULL,
  ADD COLUMN scep_url               text    NOT NULL,
  ADD COLUMN scep_name              text    NOT NULL,
  -- The SCEP payload's Subject: [[["O", "..."]], [["CN", "..."]]].
  ADD COLUMN scep_subject           jsonb   NOT NULL,
  -- SHA-1 of the SCEP CA certificate (CAFingerprint).
  ADD COLUMN scep_ca_fingerprint    bytea   NOT NULL;
