--
-- Bad input: a clear error with a fitting SQLSTATE, and nothing changed.
--
SELECT presence.set_status('alice', 'auto');
SELECT presence.heartbeat('alice', 'tab', ttl => '1 hour', away_after => '1 hour');
SELECT count(*) AS seq_before FROM presence.history \gset
CREATE TEMP TABLE t_before AS
	SELECT (SELECT count(*) FROM presence.users) AS users,
		   (SELECT count(*) FROM presence.sessions) AS sessions,
		   (SELECT string_agg(s::text, ',' ORDER BY user_id, session_id)
			  FROM presence.sessions s) AS session_rows,
		   (SELECT string_agg(u::text, ',' ORDER BY user_id)
			  FROM presence.users u) AS user_rows;

-- ids: NULL, empty, too long (256 bytes is the limit)
SELECT t_err($q$SELECT presence.heartbeat(NULL)$q$);
SELECT t_err($q$SELECT presence.heartbeat('')$q$);
SELECT t_err($q$SELECT presence.heartbeat(repeat('x', 257))$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', NULL)$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', '')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', repeat('é', 129))$q$);
SELECT t_err($q$SELECT presence.disconnect(NULL)$q$);
SELECT t_err($q$SELECT presence.disconnect('', 'tab')$q$);
SELECT t_err($q$SELECT presence.disconnect('alice', '')$q$);
SELECT t_err($q$SELECT presence.set_status(NULL, 'busy')$q$);
SELECT t_err($q$SELECT presence.set_status(repeat('x', 257), 'busy')$q$);

-- active must be given
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', active => NULL)$q$);

-- meta: a JSON object of at most 2048 bytes
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', meta => '[1, 2]')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', meta => '"text"')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', meta => 'null')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', meta => jsonb_build_object('k', repeat('x', 2048)))$q$);

-- ttl positive, away_after not negative, both at most 365 days
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', ttl => '0')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', ttl => '-1 s')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', ttl => '366 days')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', away_after => '-1 s')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', away_after => '2000 years')$q$);
SELECT t_err($q$SELECT presence.heartbeat('alice', 'tab', away_after => '1 day -25 hours')$q$);

-- statuses
SELECT t_err($q$SELECT presence.set_status('alice', 'offline')$q$);
SELECT t_err($q$SELECT presence.set_status('alice', 'sleeping')$q$);
SELECT t_err($q$SELECT presence.set_status('alice', NULL)$q$);
SELECT t_err($q$SELECT presence.set_status('alice', 'BUSY')$q$);

-- message at most 256 characters
SELECT t_err($q$SELECT presence.set_status('alice', 'busy', repeat('é', 257))$q$);

-- until in the future
SELECT t_err($q$SELECT presence.set_status('alice', 'busy', 'x', now())$q$, false);
SELECT t_err($q$SELECT presence.set_status('alice', 'busy', 'x', '-infinity')$q$, false);

-- sweep needs a time
SELECT t_err($q$SELECT presence.sweep(NULL)$q$);

-- Nothing changed.
SELECT (SELECT count(*) FROM presence.history) = :seq_before AS no_events,
	   b.users = (SELECT count(*) FROM presence.users) AS same_users,
	   b.sessions = (SELECT count(*) FROM presence.sessions) AS same_sessions,
	   b.session_rows = (SELECT string_agg(s::text, ',' ORDER BY user_id, session_id)
						   FROM presence.sessions s) AS same_session_rows,
	   b.user_rows = (SELECT string_agg(u::text, ',' ORDER BY user_id)
						FROM presence.users u) AS same_user_rows
  FROM t_before b;

-- Limits are inclusive.
\set VERBOSITY terse
SELECT presence.heartbeat(repeat('x', 256), repeat('y', 256),
						  meta => jsonb_build_object('k', repeat('x', 2039)));
SELECT presence.set_status(repeat('x', 256), 'busy', repeat('é', 256));
SELECT presence.heartbeat('alice', 'tab', ttl => '365 days', away_after => '0');
SELECT presence.disconnect(repeat('x', 256));
SELECT presence.disconnect('alice');
SELECT count(*) >= 0 FROM t_events(now());
