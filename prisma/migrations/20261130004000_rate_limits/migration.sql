-- Rate limits shared by every server process (issue 16, SECURITY.md row 22): one row per limited
-- endpoint group and client address, counting requests in a fixed window. A per-process memory store
-- would let N processes behind a load balancer allow N times the limit. Rows whose window ended are
-- deleted now and then by the server; they hold no secret (the key is a group name and an address).
CREATE TABLE rate_limits (
  key text PRIMARY KEY,
  hits integer NOT NULL,
  window_start timestamptz(3) NOT NULL,
  window_end timestamptz(3) NOT NULL
);
CREATE INDEX rate_limits_window_end_idx ON rate_limits (window_end);
