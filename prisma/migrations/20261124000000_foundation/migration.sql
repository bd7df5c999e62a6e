-- Foundation: teams and the server's own key material.

CREATE TABLE teams (
  id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  name             text        NOT NULL,
  enrollment_token text        NOT NULL,
  is_default       boolean     NOT NULL DEFAULT false,
  auth_method      text,
  created_at       timestamptz(3) NOT NULL DEFAULT now(),
  CONSTRAINT teams_auth_method_check CHECK (auth_method IS NULL OR auth_method IN ('saml', 'oauth2'))
);
CREATE UNIQUE INDEX teams_enrollment_token_key ON teams (enrollment_token);
-- At most one default team, even when two processes start at once.
CREATE UNIQUE INDEX teams_one_default ON teams (is_default) WHERE is_default;

CREATE TABLE key_material (
  name            text        PRIMARY KEY,
  certificate_pem text        NOT NULL,
  key_ciphertext  bytea       NOT NULL,
  key_nonce       bytea       NOT NULL,
  key_tag         bytea       NOT NULL,
  created_at      timestamptz(3) NOT NULL DEFAULT now()
);
