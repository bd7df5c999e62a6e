-- SAML web sign-in state, in the database so that any server process can finish a sign-in another one
-- started (SECURITY.md rows 14 and 15).

-- One row per AuthnRequest sent to the IdP. The response's InResponseTo must name an unconsumed,
-- unexpired row; consuming it is one atomic UPDATE ... WHERE consumed_at IS NULL, so a response is
-- accepted at most once even when posted twice at the same moment.
CREATE TABLE saml_authn_requests (
  -- The AuthnRequest ID attribute (160 random bits, chosen by node-saml).
  request_id       text        PRIMARY KEY,
  team_id          uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  -- What the user typed on the device (the page's user-identifier), carried to the access token.
  user_identifier  text,
  -- SHA-256 of the RelayState sent with the request; the response must come back with the same one.
  relay_state_hash bytea       NOT NULL,
  created_at       timestamptz(3) NOT NULL DEFAULT now(),
  expires_at       timestamptz(3) NOT NULL,
  consumed_at      timestamptz(3)
);
CREATE INDEX saml_authn_requests_expires_at_idx ON saml_authn_requests (expires_at);

-- Assertion IDs already accepted, per IdP, kept until the assertion would have expired anyway. The
-- primary key makes a second insert of the same assertion fail: that assertion is refused.
CREATE TABLE saml_assertions (
  issuer       text        NOT NULL,
  assertion_id text        NOT NULL,
  expires_at   timestamptz(3) NOT NULL,
  created_at   timestamptz(3) NOT NULL DEFAULT now(),
  PRIMARY KEY (issuer, assertion_id)
);
CREATE INDEX saml_assertions_expires_at_idx ON saml_assertions (expires_at);
