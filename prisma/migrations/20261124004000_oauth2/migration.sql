-- OAuth 2 sign-in (issue 5, PROTOCOL.md section 4). The device redeems an authorization code at our token
-- endpoint and gets our own access token and refresh token. One sign-in is one grant (RFC 6749 "authorization
-- grant"); every refresh token and access token it produces belongs to that grant, so reuse of a rotated
-- refresh token can revoke all of them at once (RFC 6819 section 5.2.2.3, OAuth 2.1 section 4.3.1).

CREATE TABLE oauth2_grants (
  id                           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id                      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  team_id                      uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  -- The IdP's own refresh token, AES-256-GCM under SERVER_SECRET (SecretBox, the grant id as associated
  -- data). Refreshing ours also refreshes it, so a user the IdP has cut off cannot keep a device token.
  -- Never sent to the device.
  idp_refresh_token_ciphertext bytea,
  idp_refresh_token_nonce      bytea,
  idp_refresh_token_tag        bytea,
  created_at                   timestamptz(3) NOT NULL DEFAULT now(),
  revoked_at                   timestamptz(3),
  -- Why: refresh_token_reuse, idp_refused, ...
  revoked_reason               text
);
CREATE INDEX oauth2_grants_user_id_idx ON oauth2_grants (user_id);

-- Our refresh tokens: 256 random bits, stored as SHA-256, single use. `used_at` is set atomically when the
-- token is exchanged; presenting it again means it leaked, and revokes its grant.
CREATE TABLE oauth2_refresh_tokens (
  id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  token_hash      bytea       NOT NULL,
  grant_id        uuid        NOT NULL REFERENCES oauth2_grants (id) ON DELETE CASCADE,
  -- The access token handed out together with this refresh token; the next one continues it.
  access_token_id uuid        NOT NULL REFERENCES access_tokens (id) ON DELETE CASCADE,
  created_at      timestamptz(3) NOT NULL DEFAULT now(),
  expires_at      timestamptz(3) NOT NULL,
  used_at         timestamptz(3)
);
CREATE UNIQUE INDEX oauth2_refresh_tokens_token_hash_key ON oauth2_refresh_tokens (token_hash);
CREATE INDEX oauth2_refresh_tokens_grant_id_idx ON oauth2_refresh_tokens (grant_id);

ALTER TABLE access_tokens
  -- When the token stops being accepted at all (OAuth 2 `expires_in`); null: until revoked (web sign-in).
  ADD COLUMN expires_at        timestamptz(3),
  -- The OAuth 2 grant the token belongs to: check-in accepts any live token of the grant whose first
  -- token fetched the enrollment profile.
  ADD COLUMN oauth2_grant_id   uuid REFERENCES oauth2_grants (id) ON DELETE CASCADE,
  -- The token a refresh replaced. A refreshed token never fetches a profile: it is minted with its
  -- enrollment window already closed (enroll_until = created_at).
  ADD COLUMN refreshed_from_id uuid REFERENCES access_tokens (id) ON DELETE SET NULL;
CREATE INDEX access_tokens_oauth2_grant_id_idx ON access_tokens (oauth2_grant_id);
