/* presence--1.0.sql: schema, state tables and SQL API of the presence extension */

\echo Use "CREATE EXTENSION presence" to load this file. \quit

-- A user's visible status, in the order the type sorts.
CREATE TYPE presence.status AS ENUM ('online', 'away', 'busy', 'offline');

-- Ids and room names are opaque byte strings: they compare and sort
-- bytewise (COLLATE "C"), which is also the cheapest comparison.
--
-- The tables have no foreign keys between them: pg_restore -j loads the
-- data of an extension's tables in parallel, in any order, and would fail
-- on them.  Every write locks the user's row first and keeps the tables
-- consistent itself: a session has a users row, and a session's members
-- rows are deleted, with their events, before the session is (rooms.c).
--
-- One row per user ever seen.  The first group of columns is the announced,
-- public view (what get() and the events show); the manual_* columns are the
-- user's private override, which is never shown while it is 'invisible'.
CREATE TABLE presence.users (
	user_id text COLLATE "C" PRIMARY KEY,
	status presence.status NOT NULL DEFAULT 'offline',
	message text,
	since timestamptz NOT NULL,
	last_active timestamptz,
	last_seen timestamptz,
	manual text CHECK (manual IN ('away', 'busy', 'invisible')),
	manual_message text,
	manual_until timestamptz
);
CREATE INDEX users_manual_until_idx ON presence.users (manual_until)
	WHERE manual_until IS NOT NULL;
CREATE INDEX users_status_idx ON presence.users (status)
	WHERE status <> 'offline';

-- One row per live session (a tab, a device).  Deadlines are stored when
-- the row is written: the session is away from away_at and ends at end_at;
-- due_at is the next of the two that has not been processed yet, and the
-- sweep finds its work through the index on it.
CREATE TABLE presence.sessions (
	user_id text COLLATE "C" NOT NULL,
	session_id text COLLATE "C" NOT NULL,
	started_at timestamptz NOT NULL,
	last_seen timestamptz NOT NULL,
	last_active timestamptz,
	away_at timestamptz NOT NULL,
	end_at timestamptz NOT NULL,
	due_at timestamptz NOT NULL,
	meta jsonb,
	PRIMARY KEY (user_id, session_id)
);
CREATE INDEX sessions_due_at_idx ON presence.sessions (due_at);

-- Rooms: one row per session in a room, with its metadata (a cursor, a
-- selection).  An update of the metadata within presence.meta_interval of
-- the last one announced is held back: meta_due_at says when its trailing
-- event is due.  A session's rooms end with it.
CREATE TABLE presence.members (
	room text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	session_id text COLLATE "C" NOT NULL,
	meta jsonb,
	joined_at timestamptz NOT NULL,
	meta_sent_at timestamptz NOT NULL,
	meta_due_at timestamptz,
	PRIMARY KEY (room, user_id, session_id)
);
CREATE INDEX members_session_idx ON presence.members (user_id, session_id);
CREATE INDEX members_meta_due_idx ON presence.members (meta_due_at)
	WHERE meta_due_at IS NOT NULL;

-- Who is typing where, until when (presence.typing_timeout after the last
-- renewal).  The flag belongs to the user in the room.
CREATE TABLE presence.typing (
	room text COLLATE "C" NOT NULL,
	user_id text COLLATE "C" NOT NULL,
	started_at timestamptz NOT NULL,
	until timestamptz NOT NULL,
	PRIMARY KEY (room, user_id)
);
CREATE INDEX typing_until_idx ON presence.typing (until);

-- Every announced change, with the seq of its NOTIFY payload.  Rows are
-- written at commit, in commit order, so seq never has an in-flight gap.
CREATE SEQUENCE presence.seq;
CREATE TABLE presence.history (
	seq bigint PRIMARY KEY,
	user_id text COLLATE "C" NOT NULL,
	status presence.status NOT NULL,
	previous presence.status NOT NULL,
	reason text NOT NULL,
	message text,
	last_active timestamptz,
	at timestamptz NOT NULL
);
CREATE INDEX history_user_idx ON presence.history (user_id, seq);
CREATE INDEX history_at_idx ON presence.history (at);

-- State and history survive pg_dump / pg_restore.
SELECT pg_catalog.pg_extension_config_dump('presence.users', '');
SELECT pg_catalog.pg_extension_config_dump('presence.sessions', '');
SELECT pg_catalog.pg_extension_config_dump('presence.history', '');
SELECT pg_catalog.pg_extension_config_dump('presence.members', '');
SELECT pg_catalog.pg_extension_config_dump('presence.typing', '');
SELECT pg_catalog.pg_extension_config_dump('presence.seq', '');

-- Writes (C, SECURITY DEFINER, pinned search_path) ----------------------
--
-- heartbeat() and heartbeat_many() are the exception: they are not SECURITY
-- DEFINER, so that a heartbeat answered from the session cache costs no
-- more than a plain function call.  They act as their owner, with the same
-- pinned search_path, whenever they touch the tables (see src/api.c).

CREATE FUNCTION presence.heartbeat(user_id text,
								   session_id text DEFAULT 'default',
								   active boolean DEFAULT true,
								   meta jsonb DEFAULT NULL,
								   ttl interval DEFAULT NULL,
								   away_after interval DEFAULT NULL)
RETURNS presence.status
AS 'MODULE_PATHNAME', 'presence_heartbeat'
LANGUAGE C VOLATILE CALLED ON NULL INPUT;

CREATE FUNCTION presence.heartbeat_many(user_ids text[],
										session_ids text[],
										active boolean DEFAULT true)
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_heartbeat_many'
LANGUAGE C VOLATILE CALLED ON NULL INPUT;

CREATE FUNCTION presence.disconnect(user_id text,
									session_id text DEFAULT NULL)
RETURNS presence.status
AS 'MODULE_PATHNAME', 'presence_disconnect'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.set_status(user_id text,
									status text,
									message text DEFAULT NULL,
									until timestamptz DEFAULT NULL)
RETURNS presence.status
AS 'MODULE_PATHNAME', 'presence_set_status'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.sweep(as_of timestamptz DEFAULT clock_timestamp())
RETURNS integer
AS 'MODULE_PATHNAME', 'presence_sweep'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.worker_status(OUT pid integer,
									   OUT started_at timestamptz,
									   OUT last_sweep timestamptz,
									   OUT next_wake timestamptz,
									   OUT transitions bigint,
									   OUT errors bigint,
									   OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'presence_worker_status'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.cache_status(OUT max_sessions bigint,
									  OUT sessions bigint,
									  OUT sessions_here bigint,
									  OUT rejected bigint,
									  OUT shared_bytes bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'presence_cache_status'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.join(room text,
							  user_id text,
							  session_id text DEFAULT 'default',
							  meta jsonb DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'presence_join'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.leave(room text,
							   user_id text,
							   session_id text DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'presence_leave'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.set_meta(room text,
								  user_id text,
								  session_id text,
								  meta jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'presence_set_meta'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.typing(room text,
								user_id text,
								is_typing boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'presence_typing'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.broadcast(room text, payload jsonb)
RETURNS void
AS 'MODULE_PATHNAME', 'presence_broadcast'
LANGUAGE C VOLATILE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION presence.room_channel(room text)
RETURNS text
AS 'MODULE_PATHNAME', 'presence_room_channel'
LANGUAGE C STABLE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- Reads (SQL) ------------------------------------------------------------

-- The public row of each user: an invisible user's last_active and last_seen
-- stay where they were when they went invisible; everyone else's also take
-- their live sessions into account.
CREATE FUNCTION presence.statuses(user_ids text[])
RETURNS TABLE(user_id text, status presence.status, message text,
			  last_active timestamptz, last_seen timestamptz,
			  since timestamptz, sessions integer)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT i.id,
		   COALESCE(u.status, 'offline'::presence.status),
		   u.message,
		   CASE WHEN u.manual = 'invisible' THEN u.last_active
				ELSE GREATEST(u.last_active, s.last_active) END,
		   CASE WHEN u.manual = 'invisible' THEN u.last_seen
				ELSE GREATEST(u.last_seen, s.last_seen) END,
		   u.since,
		   CASE WHEN COALESCE(u.status, 'offline') = 'offline' THEN 0
				ELSE COALESCE(s.n, 0) END
	  FROM unnest(user_ids) WITH ORDINALITY AS i(id, ord)
	  LEFT JOIN presence.users u ON u.user_id = i.id
	  LEFT JOIN LATERAL (
		  SELECT max(x.last_active) AS last_active,
				 max(x.last_seen) AS last_seen,
				 count(*)::integer AS n
			FROM presence.sessions x
		   WHERE x.user_id = i.id
	  ) s ON true
	 ORDER BY i.ord
$$;

CREATE FUNCTION presence.get(user_id text)
RETURNS TABLE(user_id text, status presence.status, message text,
			  last_active timestamptz, last_seen timestamptz,
			  since timestamptz, sessions integer)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM presence.statuses(ARRAY[$1])
$$;

CREATE FUNCTION presence.online_users(max_rows integer DEFAULT 100)
RETURNS TABLE(user_id text, status presence.status, message text,
			  last_active timestamptz, last_seen timestamptz,
			  since timestamptz, sessions integer)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT r.*
	  FROM presence.statuses(ARRAY(
			   SELECT u.user_id FROM presence.users u
				WHERE u.status <> 'offline')) r
	 ORDER BY CASE r.status WHEN 'online' THEN 0 WHEN 'busy' THEN 1 ELSE 2 END,
			  r.last_active DESC NULLS LAST, r.user_id
	 LIMIT GREATEST(max_rows, 0)
$$;

CREATE FUNCTION presence.counts()
RETURNS TABLE(status presence.status, users bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT s.status, count(u.user_id)
	  FROM unnest(enum_range(NULL::presence.status)) AS s(status)
	  LEFT JOIN presence.users u ON u.status = s.status
	 GROUP BY s.status
	 ORDER BY s.status
$$;

CREATE FUNCTION presence.changes(since bigint DEFAULT 0,
								 max_rows integer DEFAULT 1000)
RETURNS TABLE(seq bigint, user_id text, status presence.status,
			  previous presence.status, reason text, message text,
			  last_active timestamptz, at timestamptz)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT h.seq, h.user_id, h.status, h.previous, h.reason, h.message,
		   h.last_active, h.at
	  FROM presence.history h
	 WHERE h.seq > since
	 ORDER BY h.seq
	 LIMIT GREATEST(max_rows, 0)
$$;

-- The seq of the latest change in the history, 0 when it is empty: where
-- a listener that starts now begins.  After LISTEN, every notification
-- with a higher seq is new to it; one still committing is not in the
-- history yet, so it is never counted as seen.
CREATE FUNCTION presence.last_seq()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(max(h.seq), 0) FROM presence.history h
$$;

-- The users visibly present in a room, in the order they joined; an
-- invisible user is absent, as if disconnected.
CREATE FUNCTION presence.members(room text)
RETURNS TABLE(user_id text, status presence.status, message text,
			  metas jsonb, joined_at timestamptz)
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.user_id, u.status, u.message,
		   jsonb_agg(jsonb_build_object('session_id', m.session_id,
										'meta', m.meta,
										'joined_at', m.joined_at)
					 ORDER BY m.joined_at, m.session_id),
		   min(m.joined_at)
	  FROM presence.members m
	  JOIN presence.users u ON u.user_id = m.user_id
	 WHERE m.room = $1
	   AND u.status <> 'offline'
	 GROUP BY m.user_id, u.status, u.message
	 ORDER BY min(m.joined_at), m.user_id
$$;

CREATE FUNCTION presence.room_count(room text)
RETURNS integer
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(DISTINCT m.user_id)::integer
	  FROM presence.members m
	  JOIN presence.users u ON u.user_id = m.user_id
	 WHERE m.room = $1
	   AND u.status <> 'offline'
$$;

CREATE FUNCTION presence.rooms(user_id text)
RETURNS SETOF text
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT DISTINCT m.room
	  FROM presence.members m
	  JOIN presence.users u ON u.user_id = m.user_id
	 WHERE m.user_id = $1
	   AND u.status <> 'offline'
	 ORDER BY m.room
$$;

CREATE FUNCTION presence.typing_users(room text)
RETURNS SETOF text
LANGUAGE sql STABLE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT t.user_id
	  FROM presence.typing t
	  JOIN presence.users u ON u.user_id = t.user_id
	 WHERE t.room = $1
	   AND t.until > now()
	   AND u.status <> 'offline'
	 ORDER BY t.started_at, t.user_id
$$;

-- How long a user showed each status between since and until, from the
-- history (so as others saw it: invisible counts as offline).  Before the
-- first history row a user counts as offline; history older than
-- presence.history_retention is gone.
CREATE FUNCTION presence.time_in_status(user_id text,
										since timestamptz,
										until timestamptz DEFAULT now())
RETURNS TABLE(status presence.status, duration interval)
LANGUAGE plpgsql STABLE CALLED ON NULL INPUT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF time_in_status.user_id IS NULL OR time_in_status.since IS NULL
	   OR time_in_status.until IS NULL THEN
		RAISE EXCEPTION 'user_id, since and until must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF NOT isfinite(time_in_status.since) OR NOT isfinite(time_in_status.until) THEN
		RAISE EXCEPTION 'since and until must be finite'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The period given runs from %s to %s.',
								  time_in_status.since, time_in_status.until);
	END IF;
	IF time_in_status.since > time_in_status.until THEN
		RAISE EXCEPTION 'since must not be later than until'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The period given runs from %s to %s.',
								  time_in_status.since, time_in_status.until);
	END IF;
	-- A duration is an interval, which holds at most 2^63 microseconds
	-- (about 292,277 years); PostgreSQL 15 would wrap around silently.
	IF extract(epoch FROM time_in_status.until)
	   - extract(epoch FROM time_in_status.since) > 9223372036854.775807 THEN
		RAISE EXCEPTION 'period is too long'
			USING ERRCODE = 'datetime_field_overflow',
				  DETAIL = format('The period given runs from %s to %s; it can be at most 292277 years long.',
								  time_in_status.since, time_in_status.until);
	END IF;
	RETURN QUERY
	WITH changes AS (
		-- the status in force at "since", then every later change; a timed
		-- change is dated at its deadline, which can precede a change
		-- committed before it, so times only ever move forward here
		(SELECT h.seq, time_in_status.since AS at, h.status
		   FROM presence.history h
		  WHERE h.user_id = time_in_status.user_id
			AND h.at <= time_in_status.since
		  ORDER BY h.seq DESC LIMIT 1)
		UNION ALL
		SELECT h.seq, h.at, h.status
		  FROM presence.history h
		 WHERE h.user_id = time_in_status.user_id
		   AND h.at > time_in_status.since
		   AND h.at < time_in_status.until
	), timeline AS (
		SELECT c.seq, c.status,
			   max(c.at) OVER (ORDER BY c.seq) AS at
		  FROM changes c
		UNION ALL
		-- offline from "since" until the first change, if none came before
		SELECT -1, 'offline'::presence.status, time_in_status.since
		 WHERE NOT EXISTS (SELECT 1 FROM presence.history h
							WHERE h.user_id = time_in_status.user_id
							  AND h.at <= time_in_status.since)
	), spans AS (
		SELECT t.status,
			   lead(t.at, 1, time_in_status.until)
				   OVER (ORDER BY t.at, t.seq) - t.at AS d
		  FROM timeline t
	)
	SELECT s.status, COALESCE(sum(p.d), interval '0')
	  FROM unnest(enum_range(NULL::presence.status)) AS s(status)
	  LEFT JOIN spans p ON p.status = s.status
	 GROUP BY s.status
	 ORDER BY s.status;
END
$$;

-- Nothing is granted to PUBLIC: an application role needs
--   GRANT USAGE ON SCHEMA presence TO app;
--   GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO app;
REVOKE ALL ON SCHEMA presence FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA presence FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA presence FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA presence FROM PUBLIC;
