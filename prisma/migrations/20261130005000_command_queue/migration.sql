-- Handing a command out (pending -> sent) and NotNow change only columns no index reads, so Postgres can
-- write the new row version beside the old one without touching the indexes (a HOT update): the queue
-- index now says "open" with the timestamps a command gets when it ends (completed_at, cancelled_at)
-- instead of with its status, and each page keeps a fifth free for those versions. Issue 15: each command
-- delivered was two updates each adding an entry to all six indexes. The constraint keeps the two ways of
-- saying "open" the same.
ALTER TABLE mdm_commands ADD CONSTRAINT mdm_commands_open_check
  CHECK ((status IN ('pending', 'sent', 'not_now')) = (completed_at IS NULL AND cancelled_at IS NULL));
DROP INDEX mdm_commands_queue_idx;
CREATE INDEX mdm_commands_queue_idx ON mdm_commands (mdm_channel_id, seq) WHERE completed_at IS NULL AND cancelled_at IS NULL;
ALTER TABLE mdm_commands SET (fillfactor = 80);
