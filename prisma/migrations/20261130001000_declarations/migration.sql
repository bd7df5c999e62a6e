-- Enrollment SSO and declarative management (issue 13, PROTOCOL.md sections 5 and 9): a team's own
-- Enrollment SSO settings, the declarations an administrator assigns to a team, the team's declaration
-- set token, and the last status report of each channel.

-- null: the server's ESSO_* settings; {"enabled": false}: no Enrollment SSO for this team; otherwise the
-- team's own settings (the admin API's JSON form).
ALTER TABLE teams ADD COLUMN esso_settings jsonb;
-- The DeclarationsToken of the team's set as last served, and when the set last changed (the
-- SyncTokens' Timestamp): a change queues a DeclarativeManagement command to the team's enrollments.
ALTER TABLE teams ADD COLUMN declarations_token text;
ALTER TABLE teams ADD COLUMN declarations_changed_at timestamptz(3);

CREATE TABLE team_declarations (
  id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  team_id      uuid        NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
  -- DeclarationBase: Identifier and ServerToken "should not exceed 64 octets".
  identifier   text        NOT NULL,
  type         text        NOT NULL,
  server_token text        NOT NULL,
  payload      jsonb       NOT NULL,
  created_at   timestamptz(3) NOT NULL DEFAULT now(),
  updated_at   timestamptz(3) NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX team_declarations_team_id_identifier_key ON team_declarations (team_id, identifier);

-- The latest declarative-management status report of a channel, decoded from its Base64 JSON.
ALTER TABLE mdm_channels ADD COLUMN ddm_status jsonb;
ALTER TABLE mdm_channels ADD COLUMN ddm_status_at timestamptz(3);
