-- Identity: users signed in at the IdP, the access tokens sign-in mints, the enrollment profiles issued
-- with them, and the one-time SCEP challenges inside those profiles. Secrets are stored as SHA-256 hashes.

CREATE TABLE users (
  id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  -- Who vouches for the identity: a SAML IdP entity id, an OIDC issuer, or 'dev' (development sign-in).
  issuer       text        NOT NULL,
  subject      text        NOT NULL,
  email        text,
  display_name text,
  groups       text[]      NOT NULL DEFAULT '{}',
  active       boolean     NOT NULL DEFAULT true,
  created_at   timestamptz(3) NOT NULL DEFAULT now(),
  updated_at   timestamptz(3) NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_issuer_subject_key ON users (issuer, subject);
CREATE INDEX users_email_idx ON users (lower(email));

CREATE TABLE access_tokens (
  id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash      bytea       NOT NULL,
  user_id         uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id         uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  -- How the user signed in: saml, oauth2 or dev.
  method          text        NOT NULL,
  -- What the user typed on the device, when the sign-in flow carried it.
  user_identifier text,
  created_at      timestamptz(3) NOT NULL DEFAULT now(),
  -- End of the enrollment window: after it the token can no longer start a new enrollment.
  enroll_until    timestamptz(3) NOT NULL,
  revoked_at      timestamptz(3),
  CONSTRAINT access_tokens_method_check CHECK (method IN ('saml', 'oauth2', 'dev'))
);
CREATE UNIQUE INDEX access_tokens_token_hash_key ON access_tokens (token_hash);
CREATE INDEX access_tokens_user_id_idx ON access_tokens (user_id);

-- What each enrollment profile was issued with. A device refuses a later profile whose ServerURL,
-- CheckInURL, Topic, AssignedManagedAppleID or EnrollmentMode differ, so a re-issue is built from here.
CREATE TABLE enrollment_profiles (
  id                        uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  access_token_id           uuid        NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
  user_id                   uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id                   uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  payload_uuid              uuid        NOT NULL,
  server_url                text        NOT NULL,
  check_in_url              text,
  topic                     text        NOT NULL,
  assigned_managed_apple_id text        NOT NULL,
  enrollment_mode           text        NOT NULL,
  device_product            text,
  device_version            text,
  device_language           text,
  created_at                timestamptz(3) NOT NULL DEFAULT now()
);
CREATE INDEX enrollment_profiles_access_token_id_idx ON enrollment_profiles (access_token_id);

CREATE TABLE scep_challenges (
  id                    uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  challenge_hash        bytea       NOT NULL,
  access_token_id       uuid        NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
  enrollment_profile_id uuid        REFERENCES enrollment_profiles (id) ON DELETE CASCADE,
  user_id               uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id               uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  created_at            timestamptz(3) NOT NULL DEFAULT now(),
  expires_at            timestamptz(3) NOT NULL,
  used_at               timestamptz(3)
);
CREATE UNIQUE INDEX scep_challenges_challenge_hash_key ON scep_challenges (challenge_hash);
CREATE INDEX scep_challenges_access_token_id_idx ON scep_challenges (access_token_id);
