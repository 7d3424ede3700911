-- breakdown: the heartbeat fast path's one query (src/api.c), run as a
-- plain prepared statement instead of through SPI inside the function
\set uid random(1, :users)
SELECT s.away_at, s.end_at, s.due_at, s.meta, u.status::text
  FROM presence.sessions s JOIN presence.users u ON u.user_id = s.user_id
 WHERE s.user_id = 'u' || :uid AND s.session_id = 's1';
