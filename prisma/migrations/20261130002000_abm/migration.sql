-- Apple Business Manager connection (issue: ABM discovery fallback and GetToken com.apple.maid).
-- One row (id 'default'): the server token sealed with SERVER_SECRET (AES-256-GCM, services/abm.ts), its
-- expiry, and what Get Account Detail answered. The key pair the token is encrypted to is key_material
-- row 'abmToken' (generated once, like the other keys).
CREATE TABLE abm_connections (
  id                      text           PRIMARY KEY,
  token_ciphertext        bytea          NOT NULL,
  token_nonce             bytea          NOT NULL,
  token_tag               bytea          NOT NULL,
  token_expires_at        timestamptz(3) NOT NULL,
  server_uuid             text           NOT NULL,
  account                 jsonb          NOT NULL,
  account_checked_at      timestamptz(3) NOT NULL,
  discovery_url           text,
  discovery_registered_at timestamptz(3),
  uploaded_at             timestamptz(3) NOT NULL DEFAULT now(),
  updated_at              timestamptz(3) NOT NULL DEFAULT now()
);
