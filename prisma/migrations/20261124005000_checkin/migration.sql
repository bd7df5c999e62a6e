-- Check-in (issue 7, PROTOCOL.md section 8): the MDM enrollments devices establish with Authenticate, the
-- identity certificates bound to them, and the channels (device, and on macOS each user) that later
-- receive pushes and commands.
--
-- The binding rules live in unique indexes so that they hold under concurrent requests and across
-- server processes: a certificate binds to one enrollment, ever (mdm_enrollment_certificates primary
-- key); an EnrollmentID has at most one enrollment that is not checked out; an enrollment has one row
-- per channel.

CREATE TABLE mdm_enrollments (
  id                      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Apple's EnrollmentID: chosen by the device per enrollment (user enrollment has no UDID).
  enrollment_id           text        NOT NULL,
  -- Who and what the identity certificate was issued for (device_certificates), copied at Authenticate.
  user_id                 uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id                 uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  -- The access token the enrollment profile was issued for.
  access_token_id         uuid        NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
  enrollment_profile_id   uuid        REFERENCES enrollment_profiles (id) ON DELETE SET NULL,
  -- The last bearer token the device presented and we accepted (a re-authentication replaces it), and
  -- when the user last signed in interactively behind it: REAUTH_AFTER counts from here.
  current_access_token_id uuid        REFERENCES access_tokens (id) ON DELETE SET NULL,
  signed_in_at            timestamptz(3) NOT NULL,
  -- authenticated (Authenticate seen) -> active (first device-channel TokenUpdate) -> checked_out.
  status                  text        NOT NULL,
  topic                   text        NOT NULL,
  product_name            text,
  os_version              text,
  build_version           text,
  authenticated_at        timestamptz(3) NOT NULL,
  activated_at            timestamptz(3),
  checked_out_at          timestamptz(3),
  last_seen_at            timestamptz(3) NOT NULL,
  created_at              timestamptz(3) NOT NULL DEFAULT now(),
  updated_at              timestamptz(3) NOT NULL DEFAULT now(),
  CONSTRAINT mdm_enrollments_status_check CHECK (status IN ('authenticated', 'active', 'checked_out')),
  CONSTRAINT mdm_enrollments_checked_out_at CHECK ((status = 'checked_out') = (checked_out_at IS NOT NULL))
);
-- A checked-out enrollment stays as history; a new Authenticate for its EnrollmentID starts a new row.
CREATE UNIQUE INDEX mdm_enrollments_live_enrollment_id_key ON mdm_enrollments (enrollment_id) WHERE status <> 'checked_out';
CREATE INDEX mdm_enrollments_enrollment_id_idx ON mdm_enrollments (enrollment_id);
CREATE INDEX mdm_enrollments_user_id_idx ON mdm_enrollments (user_id);

-- The identity certificates an enrollment accepts: the one that sent Authenticate, then each SCEP
-- renewal of it, bound when the renewed certificate is first used. The primary key is the rule that a
-- certificate belongs to one enrollment for its whole life, checked out or not.
CREATE TABLE mdm_enrollment_certificates (
  device_certificate_id uuid        PRIMARY KEY REFERENCES device_certificates (id) ON DELETE CASCADE,
  mdm_enrollment_id     uuid        NOT NULL REFERENCES mdm_enrollments (id) ON DELETE CASCADE,
  bound_at              timestamptz(3) NOT NULL DEFAULT now()
);
CREATE INDEX mdm_enrollment_certificates_mdm_enrollment_id_idx ON mdm_enrollment_certificates (mdm_enrollment_id);

-- Where pushes and commands go: the device channel (created at Authenticate) and, on macOS, one channel
-- per user (EnrollmentUserID, created by that user's first TokenUpdate). Command queues reference this.
CREATE TABLE mdm_channels (
  id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  mdm_enrollment_id      uuid        NOT NULL REFERENCES mdm_enrollments (id) ON DELETE CASCADE,
  -- EnrollmentID for the device channel, EnrollmentID:EnrollmentUserID for a user channel.
  channel_id             text        NOT NULL,
  -- null for the device channel.
  enrollment_user_id     text,
  user_short_name        text,
  user_long_name         text,
  topic                  text        NOT NULL,
  -- TokenUpdate's Token as lowercase hex (the APNs device token); null until the first TokenUpdate and
  -- after CheckOut, so nothing can push to a channel that has none.
  push_token             text,
  push_magic             text,
  awaiting_configuration boolean     NOT NULL DEFAULT false,
  token_updated_at       timestamptz(3),
  last_seen_at           timestamptz(3) NOT NULL,
  created_at             timestamptz(3) NOT NULL DEFAULT now(),
  updated_at             timestamptz(3) NOT NULL DEFAULT now(),
  CONSTRAINT mdm_channels_push_token_format CHECK (push_token ~ '^[0-9a-f]+$')
);
CREATE UNIQUE INDEX mdm_channels_mdm_enrollment_id_channel_id_key ON mdm_channels (mdm_enrollment_id, channel_id);
CREATE INDEX mdm_channels_channel_id_idx ON mdm_channels (channel_id);
