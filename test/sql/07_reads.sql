--
-- get(), statuses(), online_users(), counts(), changes(), last_seq().
--
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('u1', 'a', ttl => '1 day', away_after => '1 day');
SELECT presence.heartbeat('u2', 'a', ttl => '1 day', away_after => '0');
SELECT presence.heartbeat('u3', 'a', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('u3', 'busy', 'Call');
SELECT presence.heartbeat('u4', 'a', ttl => '1 day', away_after => '1 day');
SELECT presence.heartbeat('u4', 'b', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('u5', 'invisible');
SELECT presence.heartbeat('u5', 'a', ttl => '1 day', away_after => '1 day');
COMMIT;

-- online first, then busy, then away; each by most recent activity
SELECT user_id, status, message, sessions FROM presence.online_users();
SELECT user_id FROM presence.online_users(2);
SELECT count(*) FROM presence.online_users(0);
SELECT count(*) FROM presence.online_users(-1);

SELECT * FROM presence.counts();

-- one row per requested id, in order; unknown users are offline with NULLs
SELECT user_id, status, message, last_active IS NULL AS no_active,
	   since IS NULL AS no_since, sessions
  FROM presence.statuses(ARRAY['u4', 'nobody', 'u1', 'u5']);
SELECT count(*) FROM presence.statuses('{}');
SELECT * FROM presence.get('nobody');
SELECT user_id, status, sessions, last_active - :'t0' AS last_active,
	   since - :'t0' AS since
  FROM presence.get('u4');

-- changes(since, max_rows) pages through history in seq order
SELECT max(seq) AS last FROM presence.history \gset
SELECT count(*) FROM presence.changes(:last);
SELECT count(*) FROM presence.changes(:last - 3);
SELECT count(*) FROM presence.changes(0, 2);
SELECT bool_and(seq > 0) FROM presence.changes();
SELECT user_id, status, previous, reason FROM presence.changes(:last - 2, 1);
-- changes() carries each event's fields as the history holds them
SELECT count(*) AS rows_that_differ
  FROM presence.changes(0, 1000000) c
  JOIN presence.history h USING (seq)
 WHERE (c.user_id, c.status, c.previous, c.reason, c.message, c.last_active, c.at)
	   IS DISTINCT FROM
	   (h.user_id, h.status, h.previous, h.reason, h.message, h.last_active, h.at);
SELECT count(*) FILTER (WHERE last_active IS NOT NULL) > 0 AS some_have_last_active
  FROM presence.changes(0, 1000000);
-- last_seq(): the end of the history, where a new listener starts
SELECT presence.last_seq() = :last AS last_seq_is_the_end;
SELECT count(*) FROM presence.changes(presence.last_seq());
BEGIN;
DELETE FROM presence.history;
SELECT presence.last_seq() AS last_seq_of_an_empty_history;
ROLLBACK;

SELECT presence.disconnect(user_id) FROM presence.users ORDER BY user_id;
SELECT count(*) >= 0 FROM t_events(now());
