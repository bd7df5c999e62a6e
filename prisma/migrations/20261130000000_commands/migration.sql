-- Managing enrolled devices (issue 12, PROTOCOL.md sections 8 and 10): the command queue, the push state
-- of each channel, and enrollments an administrator removed.

-- An administrator can remove an enrollment: its next request is answered 403 com.apple.unrecognized.device
-- so the device unenrolls. Like checked_out it is history; the EnrollmentID may enroll again.
ALTER TABLE mdm_enrollments DROP CONSTRAINT mdm_enrollments_status_check;
ALTER TABLE mdm_enrollments ADD CONSTRAINT mdm_enrollments_status_check CHECK (status IN ('authenticated', 'active', 'checked_out', 'removed'));
ALTER TABLE mdm_enrollments ADD COLUMN removed_at timestamptz(3);
ALTER TABLE mdm_enrollments ADD CONSTRAINT mdm_enrollments_removed_at CHECK ((status = 'removed') = (removed_at IS NOT NULL));
DROP INDEX mdm_enrollments_live_enrollment_id_key;
CREATE UNIQUE INDEX mdm_enrollments_live_enrollment_id_key ON mdm_enrollments (enrollment_id) WHERE status NOT IN ('checked_out', 'removed');
-- What the device reported about itself in Authenticate beyond the columns above (macOS: DeviceName,
-- Model, ModelName), as sent.
ALTER TABLE mdm_enrollments ADD COLUMN device_info jsonb NOT NULL DEFAULT '{}';
-- Listing by last check-in (stale enrollments) and by team.
CREATE INDEX mdm_enrollments_last_seen_at_idx ON mdm_enrollments (last_seen_at);
CREATE INDEX mdm_enrollments_team_id_idx ON mdm_enrollments (team_id);

-- What the last push to a channel did: delivered, invalid_token (APNs said 410 Unregistered or
-- 400 BadDeviceToken: no more pushes until the next TokenUpdate), retrying, error, config_error.
ALTER TABLE mdm_channels ADD COLUMN push_status text;
ALTER TABLE mdm_channels ADD COLUMN push_status_at timestamptz(3);
ALTER TABLE mdm_channels ADD COLUMN push_error text;
ALTER TABLE mdm_channels ADD COLUMN push_token_invalid_at timestamptz(3);

-- One row per command per channel, in the order it was queued (seq). A command is pending until sent,
-- sent until the device reports on it; Acknowledged, Error and CommandFormatError end it; NotNow puts it
-- aside until the channel's next Idle. Results are stored whole (the report, decoded to JSON).
CREATE TABLE mdm_commands (
  id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  seq               bigint      GENERATED ALWAYS AS IDENTITY,
  -- Apple's CommandUUID, generated here.
  command_uuid      text        NOT NULL,
  mdm_enrollment_id uuid        NOT NULL REFERENCES mdm_enrollments (id) ON DELETE CASCADE,
  mdm_channel_id    uuid        NOT NULL REFERENCES mdm_channels (id) ON DELETE CASCADE,
  request_type      text        NOT NULL,
  -- The Command dictionary, JSON with plist data and dates tagged ({"$data": base64}, {"$date": iso}).
  command           jsonb       NOT NULL,
  status            text        NOT NULL DEFAULT 'pending',
  created_at        timestamptz(3) NOT NULL DEFAULT now(),
  expires_at        timestamptz(3),
  sent_at           timestamptz(3),
  -- How many times it was handed to the device (a command not reported on is sent again).
  deliveries        integer     NOT NULL DEFAULT 0,
  not_now_at        timestamptz(3),
  completed_at      timestamptz(3),
  cancelled_at      timestamptz(3),
  -- The device's final report, JSON-safe (data as Base64).
  result            jsonb,
  CONSTRAINT mdm_commands_status_check CHECK (status IN ('pending', 'sent', 'not_now', 'acknowledged', 'error', 'format_error', 'cancelled'))
);
CREATE UNIQUE INDEX mdm_commands_command_uuid_key ON mdm_commands (command_uuid);
CREATE UNIQUE INDEX mdm_commands_seq_key ON mdm_commands (seq);
-- The next command of a channel: one index scan among the commands still open, however many are done.
CREATE INDEX mdm_commands_queue_idx ON mdm_commands (mdm_channel_id, seq) WHERE status IN ('pending', 'sent', 'not_now');
CREATE INDEX mdm_commands_mdm_enrollment_id_idx ON mdm_commands (mdm_enrollment_id, created_at);
CREATE INDEX mdm_commands_created_at_idx ON mdm_commands (created_at);
