-- naive.sql: the plain-SQL reference implementation of presence that the
-- benchmarks measure presence against.  It is the design most tutorials
-- show: one row per (user, session) upserted by every heartbeat, an index
-- on last_active, and a set-based sweep that marks everyone whose last
-- heartbeat is older than a timeout as offline and announces each change
-- with pg_notify.  No per-session timers, no idle state, no history.
--
-- Loaded by bench/run.sh into each benchmark database (psql -f).

CREATE SCHEMA naive;

CREATE TABLE naive.presence (
	user_id text NOT NULL,
	session_id text NOT NULL,
	status text NOT NULL DEFAULT 'online',
	last_active timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, session_id)
);
CREATE INDEX presence_last_active_idx ON naive.presence (last_active);

-- Every heartbeat writes: insert the session, or mark it online and move
-- last_active.
CREATE FUNCTION naive.heartbeat(user_id text, session_id text DEFAULT 'default')
RETURNS void
LANGUAGE sql
AS $$
	INSERT INTO naive.presence AS p (user_id, session_id, status, last_active)
	VALUES (heartbeat.user_id, heartbeat.session_id, 'online', now())
	ON CONFLICT (user_id, session_id)
	DO UPDATE SET status = 'online', last_active = excluded.last_active
$$;

-- The same for a batch, set-based.
CREATE FUNCTION naive.heartbeat_many(user_ids text[], session_ids text[])
RETURNS integer
LANGUAGE sql
AS $$
	WITH up AS (
		INSERT INTO naive.presence AS p (user_id, session_id, status, last_active)
		SELECT u, s, 'online', now()
		  FROM unnest(user_ids, session_ids) AS b(u, s)
		ON CONFLICT (user_id, session_id)
		DO UPDATE SET status = 'online', last_active = excluded.last_active
		RETURNING 1
	)
	SELECT count(*)::integer FROM up
$$;

-- Everyone silent for longer than timeout goes offline, one NOTIFY each.
CREATE FUNCTION naive.sweep(timeout interval DEFAULT '60 seconds',
							as_of timestamptz DEFAULT now())
RETURNS integer
LANGUAGE sql
AS $$
	WITH gone AS (
		UPDATE naive.presence p SET status = 'offline'
		 WHERE p.last_active < as_of - timeout
		   AND p.status = 'online'
		RETURNING p.user_id, p.session_id, p.last_active
	)
	SELECT count(pg_notify('naive_presence',
						   json_build_object('user_id', g.user_id,
											 'session_id', g.session_id,
											 'status', 'offline',
											 'last_active', g.last_active,
											 'at', as_of)::text))::integer
	  FROM gone g
$$;
