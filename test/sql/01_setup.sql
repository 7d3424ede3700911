--
-- Setup shared by the regression tests: the extension, and helpers that
-- print events deterministically (times relative to a base, seq hidden).
--
CREATE EXTENSION presence;

CREATE TABLE t_mark (seq bigint NOT NULL);
INSERT INTO t_mark VALUES (0);

-- The events announced since the last call, with "at" relative to base.
CREATE FUNCTION t_events(base timestamptz)
RETURNS TABLE(user_id text, status presence.status, previous presence.status,
			  reason text, message text, at interval)
LANGUAGE plpgsql AS $$
DECLARE
	mark bigint;
BEGIN
	SELECT t.seq INTO mark FROM t_mark t;
	RETURN QUERY
		SELECT c.user_id, c.status, c.previous, c.reason, c.message, c.at - base
		  FROM presence.changes(mark) c;
	UPDATE t_mark SET seq = COALESCE((SELECT max(h.seq) FROM presence.history h), mark);
END
$$;

-- A user's public row with times relative to base.
CREATE FUNCTION t_get(uid text, base timestamptz)
RETURNS TABLE(user_id text, status presence.status, message text,
			  last_active interval, last_seen interval, since interval,
			  sessions integer)
LANGUAGE sql AS $$
	SELECT g.user_id, g.status, g.message, g.last_active - base,
		   g.last_seen - base, g.since - base, g.sessions
	  FROM presence.get(uid) g
$$;

-- Sessions of a user with deadlines relative to base.
CREATE FUNCTION t_sessions(uid text, base timestamptz)
RETURNS TABLE(session_id text, last_active interval, away_at interval,
			  end_at interval, due_at interval, meta jsonb)
LANGUAGE sql AS $$
	SELECT s.session_id, s.last_active - base, s.away_at - base,
		   s.end_at - base, s.due_at - base, s.meta
	  FROM presence.sessions s WHERE s.user_id = uid ORDER BY s.session_id
$$;

-- Runs a statement and shows its SQLSTATE, message, detail and hint.
CREATE FUNCTION t_err(q text, with_detail boolean DEFAULT true)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hnt text;
BEGIN
	EXECUTE q;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
	RETURN st || ': ' || msg ||
		CASE WHEN with_detail THEN COALESCE(' | ' || NULLIF(det, ''), '') ||
			 COALESCE(' | hint: ' || NULLIF(hnt, ''), '') ELSE '' END;
END
$$;

SELECT extname, extversion FROM pg_extension WHERE extname = 'presence';
