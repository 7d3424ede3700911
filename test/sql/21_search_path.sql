--
-- Privileges and search_path.  An application role with the documented
-- grants plants objects in public and pg_temp that would take over every
-- unqualified name the extension's SQL and C statements use (functions,
-- aggregates, operators, types, tables), sets its search_path to find
-- them first, and runs the whole API: the results and events are those
-- of an untampered run, and no planted object is ever called.  It cannot
-- act as the extension's owner, through the API, an error inside it or a
-- presence.join_check function; a role with no grants can call and read
-- nothing; and events never carry data of invisible users.  (t_err() is
-- from 01_setup, r_listen(), r_seq(), r_received() and r_notified() from
-- 10_room_events, h_connect() and h_listen() from 13_hostile.)
--
CREATE ROLE regress_sp_app LOGIN;
GRANT USAGE ON SCHEMA presence TO regress_sp_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO regress_sp_app;
-- A lax database, where the application may create objects in public.
GRANT CREATE ON SCHEMA public TO regress_sp_app;
CREATE ROLE regress_sp_nobody;
SELECT session_user AS login \gset

-- What a run printed, line by line, and when it started.
CREATE TABLE sp_out (n serial, run text, line text);
CREATE TABLE sp_runs (run text, t0 timestamptz);
GRANT SELECT, INSERT ON sp_out, sp_runs TO regress_sp_app;
GRANT USAGE ON SEQUENCE sp_out_n_seq TO regress_sp_app;
CREATE FUNCTION sp_say(run text, line text) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.sp_out (run, line) VALUES (run, line) $$;

-- The whole API, with ids prefixed by p, and times relative to the start.
-- It has no SET clause: every call runs under the caller's search_path.
-- Its own code names everything with its schema, so that it never calls
-- a planted object itself.
CREATE PROCEDURE sp_run(p text)
LANGUAGE plpgsql AS $$
DECLARE
	t0 pg_catalog.timestamptz := pg_catalog.now();
	a pg_catalog.text := pg_catalog.concat(p, 'alice');
	b pg_catalog.text := pg_catalog.concat(p, 'bob');
	c pg_catalog.text := pg_catalog.concat(p, 'carol');
	room pg_catalog.text := pg_catalog.concat(p, 'room');
	r record;
BEGIN
	INSERT INTO public.sp_runs VALUES (p, t0);
	-- writes, committed
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'heartbeat',
		presence.heartbeat(a, 'tab', meta => '{"page": 1}', ttl => '1 hour',
						   away_after => '10 min'),
		presence.heartbeat(a, 'tab', ttl => '1 hour', away_after => '10 min'),
		presence.heartbeat(a, 'phone', false, ttl => '1 hour')));
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'heartbeat_many',
		presence.heartbeat_many(ARRAY[b, c], ARRAY['tab', 'tab'])));
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'set_status',
		presence.set_status(a, 'busy', 'In a meeting',
							t0 OPERATOR(pg_catalog.+) '30 min'::pg_catalog.interval),
		presence.set_status(c, 'invisible', 'Hidden')));
	PERFORM presence.join(room, a, 'tab', '{"cursor": 1}');
	PERFORM presence.join(room, b, 'tab');
	PERFORM presence.heartbeat(a, 'tab', ttl => '1 hour', away_after => '10 min');
	PERFORM presence.heartbeat(b, 'tab', ttl => '1 hour', away_after => '1 hour');
	PERFORM presence.set_meta(room, a, 'tab', '{"cursor": 2}');
	PERFORM presence.typing(room, b);
	PERFORM presence.broadcast(room, '{"ping": 1}');
	PERFORM presence.typing(room, b, false);
	PERFORM presence.typing(room, a);
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'room_channel',
		presence.room_channel(room)));
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'disconnect',
		presence.disconnect(c), presence.disconnect(b, 'nothing')));
	COMMIT;
	-- time passes
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'sweep',
		presence.sweep(t0 OPERATOR(pg_catalog.+) '31 min'::pg_catalog.interval)));
	COMMIT;
	-- reads
	FOR r IN SELECT * FROM presence.statuses(ARRAY[a, b, c]) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'statuses',
			r.user_id, r.status, r.message, r.sessions,
			r.last_active OPERATOR(pg_catalog.-) t0,
			r.since OPERATOR(pg_catalog.-) t0));
	END LOOP;
	FOR r IN SELECT * FROM presence.get(a) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'get', r.user_id,
			r.status, r.message, r.sessions));
	END LOOP;
	FOR r IN SELECT * FROM presence.online_users(100000) o
			  WHERE pg_catalog.starts_with(o.user_id, p) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'online_users',
			r.user_id, r.status));
	END LOOP;
	FOR r IN SELECT * FROM presence.counts() LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'counts', r.status));
	END LOOP;
	FOR r IN SELECT * FROM presence.changes(0, 1000000) h
			  WHERE pg_catalog.starts_with(h.user_id, p) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'changes', r.user_id,
			r.status, r.previous, r.reason, r.message,
			r.at OPERATOR(pg_catalog.-) t0));
	END LOOP;
	FOR r IN SELECT * FROM presence.members(room) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'members', r.user_id,
			r.status, r.message, r.metas OPERATOR(pg_catalog.#-) '{0,joined_at}',
			r.joined_at OPERATOR(pg_catalog.-) t0));
	END LOOP;
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'room_count',
		presence.room_count(room)));
	FOR r IN SELECT * FROM presence.rooms(a) x LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'rooms', r.x));
	END LOOP;
	FOR r IN SELECT * FROM presence.typing_users(room) x LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'typing_users', r.x));
	END LOOP;
	FOR r IN SELECT * FROM presence.time_in_status(a, t0,
			t0 OPERATOR(pg_catalog.+) '1 hour'::pg_catalog.interval) LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'time_in_status',
			r.status, r.duration));
	END LOOP;
	FOR r IN SELECT * FROM presence.worker_status() LOOP
		PERFORM public.sp_say(p, 'worker_status: a worker');
	END LOOP;
	FOR r IN SELECT * FROM presence.cache_status() LOOP
		PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'cache_status',
			r.max_sessions, r.sessions, r.rejected));
	END LOOP;
	-- and the end of it all, by the clock
	PERFORM public.sp_say(p, pg_catalog.concat_ws(' ', 'sweep',
		presence.sweep(t0 OPERATOR(pg_catalog.+) '2 hours'::pg_catalog.interval)));
	COMMIT;
END
$$;

-- The listener hears the status channel and both runs' rooms.
SELECT h_listen();
SELECT r_listen('sp_clean_room', 'sp_dirty_room');
SELECT count(*) >= 0 AS drained FROM r_received();

------------------------------------------------------------------------
-- The untampered run: the app role, the default search_path.
------------------------------------------------------------------------
-- (a user for later, not due in either run)
SELECT presence.heartbeat('sp_locked', ttl => '1 day', away_after => '1 day');
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
SET SESSION AUTHORIZATION regress_sp_app;
CALL sp_run('sp_clean_');
RESET SESSION AUTHORIZATION;
CREATE TABLE sp_events AS
	SELECT 'clean' AS run, e.*
	  FROM r_notified((SELECT t0 FROM sp_runs WHERE run = 'sp_clean_'), :s0)
		   WITH ORDINALITY AS e;
SELECT dblink_disconnect('rooms');

------------------------------------------------------------------------
-- The tampered run, in a new backend, so that every statement the
-- extension prepares is prepared while the tampered search_path is set.
------------------------------------------------------------------------
\c -
SELECT h_listen();
SELECT r_listen('sp_clean_room', 'sp_dirty_room');
SELECT r_seq() AS s0 \gset
SELECT h_connect('sp_locker');
-- (the helpers used below compiled before their types can be taken over:
-- for types, the temporary schema comes first in any search_path that
-- does not name it later, the superuser's default one too)
SELECT t_err('SELECT 1'), count(*) >= 0 AS drained FROM r_received();

SET SESSION AUTHORIZATION regress_sp_app;
-- Every planted object records that it was called as the app role, or
-- raises an error if it was called as anyone else: the extension's owner
-- running it would be the takeover.
CREATE TABLE public.sp_hits (n serial, what text);
CREATE FUNCTION public.sp_hit(what pg_catalog.text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
	IF current_user <> 'regress_sp_app' THEN
		RAISE EXCEPTION 'planted % called as %', what, current_user;
	END IF;
	INSERT INTO public.sp_hits (what) VALUES (what);
	RETURN true;
END
$$;

-- In public and in pg_temp, a function for each of pg_catalog's with the
-- names the extension calls, and an operator for each of pg_catalog's on
-- text, timestamps, intervals, jsonb and enums (the status) with its
-- function; each does what the real one does, once recorded.
DO $do$
DECLARE
	f record;
	s text;
BEGIN
	FOREACH s IN ARRAY ARRAY['public', 'pg_temp'] LOOP
		FOR f IN
			SELECT p.proname, p.proretset, o.oprname,
				   pg_get_function_identity_arguments(p.oid) AS args,
				   pg_get_function_result(p.oid) AS result,
				   (SELECT string_agg('$' || i, ', ')
					  FROM generate_series(1, p.pronargs) i) AS params,
				   format_type(o.oprleft, NULL) AS l, format_type(o.oprright, NULL) AS r
			  FROM (SELECT ARRAY['text', 'timestamptz', 'interval', 'jsonb',
								 'anyenum']::regtype[]::oid[] AS types) t
			 CROSS JOIN pg_proc p
			  LEFT JOIN pg_operator o ON o.oprcode = p.oid
			   AND o.oprleft = ANY (t.types) AND o.oprright = ANY (t.types)
			 WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
			   AND p.provariadic = 0
			   AND NOT p.proargtypes::oid[] && ARRAY['internal', '"any"']::regtype[]::oid[]
			   AND (o.oid IS NOT NULL OR
					p.proname IN ('now', 'clock_timestamp', 'nextval', 'lower', 'isfinite',
								  'enum_range', 'unnest', 'format', 'int8inc',
								  'timestamptz_larger', 'timestamptz_smaller', 'interval_pl'))
			 ORDER BY p.oid, o.oid
		LOOP
			EXECUTE format($f$
				CREATE OR REPLACE FUNCTION %1$s.%2$I(%3$s) RETURNS %4$s
				LANGUAGE plpgsql SET search_path = pg_catalog AS $b$
				BEGIN
					PERFORM public.sp_hit(%5$L);
					RETURN %6$s pg_catalog.%2$I(%7$s);
				END $b$$f$, s, f.proname, f.args, f.result,
				format('%s.%s(%s)', s, f.proname, f.args),
				CASE WHEN f.proretset THEN 'QUERY SELECT * FROM' END, f.params);
			IF f.oprname IS NOT NULL THEN
				EXECUTE format('CREATE OPERATOR %s.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = %s.%I)',
							   s, f.oprname, f.l, f.r, s, f.proname);
			END IF;
		END LOOP;
	END LOOP;
END
$do$;
-- and aggregates in public
CREATE AGGREGATE public.count(*) (sfunc = public.int8inc, stype = bigint, initcond = '0');
CREATE AGGREGATE public.max(timestamptz) (sfunc = public.timestamptz_larger, stype = timestamptz);
CREATE AGGREGATE public.min(timestamptz) (sfunc = public.timestamptz_smaller, stype = timestamptz);
CREATE AGGREGATE public.sum(interval) (sfunc = public.interval_pl, stype = interval);

-- Types: domains whose check records every value cast to them.
CREATE DOMAIN public.int8 AS pg_catalog.int8 CHECK (public.sp_hit('domain public.int8'));
CREATE DOMAIN public.regclass AS pg_catalog.regclass CHECK (public.sp_hit('domain public.regclass'));
CREATE DOMAIN public.status AS pg_catalog.text CHECK (public.sp_hit('domain public.status'));
CREATE DOMAIN pg_temp.text AS pg_catalog.text CHECK (public.sp_hit('domain pg_temp.text'));
CREATE DOMAIN pg_temp.timestamptz AS pg_catalog.timestamptz CHECK (public.sp_hit('domain pg_temp.timestamptz'));
CREATE DOMAIN pg_temp.jsonb AS pg_catalog.jsonb CHECK (public.sp_hit('domain pg_temp.jsonb'));

-- Tables and views named like the extension's, in public and pg_temp.
DO $$
DECLARE
	t pg_catalog.text;
BEGIN
	FOREACH t IN ARRAY ARRAY['users', 'sessions', 'members', 'typing', 'history'] LOOP
		EXECUTE format('CREATE VIEW public.%1$I AS SELECT NULL::pg_catalog.text AS user_id'
					   ' WHERE public.sp_hit(%2$L)', t, 'view public.' || t);
		EXECUTE format('CREATE TEMP VIEW %1$I AS SELECT NULL::pg_catalog.text AS user_id'
					   ' WHERE public.sp_hit(%2$L)', t, 'view pg_temp.' || t);
	END LOOP;
END
$$;
CREATE SEQUENCE public.seq;
CREATE TEMP SEQUENCE seq;

-- Everything planted, and where.
SELECT n.nspname LIKE 'pg_temp%' AS temp, count(*) AS objects
  FROM (SELECT pronamespace AS ns FROM pg_proc WHERE proowner = 'regress_sp_app'::regrole
		UNION ALL
		SELECT oprnamespace FROM pg_operator WHERE oprowner = 'regress_sp_app'::regrole
		UNION ALL
		SELECT typnamespace FROM pg_type WHERE typowner = 'regress_sp_app'::regrole
		  AND typtype = 'd'
		UNION ALL
		SELECT relnamespace FROM pg_class WHERE relowner = 'regress_sp_app'::regrole
		  AND relkind IN ('v', 'S')) o
  JOIN pg_namespace n ON n.oid = o.ns
 GROUP BY 1 ORDER BY 1;

-- The tampered search_path: the temporary schema, then public, before
-- pg_catalog.  The whole API, and its events at commit, run under it.
SELECT pg_catalog.count(*) AS hits_before FROM public.sp_hits \gset
SET search_path = pg_temp, public, pg_catalog;
CALL sp_run('sp_dirty_');
-- No planted object was called, the app role is still itself, and its
-- search_path is as it set it.
SELECT pg_catalog.count(*) OPERATOR(pg_catalog.-) :hits_before AS planted_calls
  FROM public.sp_hits;
SELECT current_user AS current_user_, session_user AS session_user_,
	   pg_catalog.current_setting('search_path') AS search_path;

-- The planted sequences were not used.
SELECT (SELECT last_value || ' ' || is_called FROM public.seq) AS public_seq,
	   (SELECT last_value || ' ' || is_called FROM pg_temp.seq) AS temp_seq;

-- An error while heartbeat() acts as the owner (here a lock timeout, on a
-- user another session holds) leaves the app role as it was, its
-- search_path too; so does one in a SECURITY DEFINER function.
RESET SESSION AUTHORIZATION;
SELECT dblink_exec('sp_locker', 'BEGIN');
SELECT * FROM dblink('sp_locker',
	$$SELECT 1 FROM presence.users WHERE user_id = 'sp_locked' FOR UPDATE$$) AS t(locked integer);
SET SESSION AUTHORIZATION regress_sp_app;
SET lock_timeout = '50ms';
SELECT t_err($q$SELECT presence.heartbeat('sp_locked', 'new-tab')$q$);
SELECT t_err($q$SELECT presence.heartbeat_many(ARRAY['sp_locked'], ARRAY['other-tab'])$q$);
SELECT t_err($q$SELECT presence.disconnect('sp_locked')$q$);
SELECT current_user AS current_user_, session_user AS session_user_,
	   pg_catalog.current_setting('search_path') AS search_path;
SELECT t_err($q$SELECT pg_catalog.count(*) FROM presence.users$q$);
RESET lock_timeout;
RESET SESSION AUTHORIZATION;
SELECT dblink_exec('sp_locker', 'ROLLBACK');
SELECT dblink_disconnect('sp_locker');
SET SESSION AUTHORIZATION regress_sp_app;

-- The planted objects do take over unqualified names, in the app's own
-- statements.
SELECT pg_catalog.count(*) AS hits_before FROM public.sp_hits \gset
SELECT now() IS NOT NULL AS now, 'a' = 'a' AS eq, lower('A') AS lower,
	   now() - now() = '0' AS minus, 'x'::text AS text,
	   (SELECT count(*) FROM (VALUES (1)) v) AS count;
SELECT t_err('SELECT * FROM users') AS users,
	   t_err('SELECT * FROM public.history') AS history;
RESET search_path;
SELECT what, count(*) FROM public.sp_hits
 WHERE n > :hits_before GROUP BY what ORDER BY what;
-- The temporary objects go with the session; here they go now, since
-- they would take over the types of the superuser's statements below.
DISCARD TEMP;
RESET SESSION AUTHORIZATION;

-- The same results and the same events as the untampered run, ids aside.
INSERT INTO sp_events
	SELECT 'dirty', e.*
	  FROM r_notified((SELECT t0 FROM sp_runs WHERE run = 'sp_dirty_'), :s0)
		   WITH ORDINALITY AS e;
SELECT (SELECT array_agg(line ORDER BY n) FROM sp_out WHERE run = 'sp_clean_') =
	   (SELECT array_agg(replace(line, 'sp_dirty_', 'sp_clean_') ORDER BY n)
		  FROM sp_out WHERE run = 'sp_dirty_') AS same_results,
	   (SELECT array_agg(e::text ORDER BY ordinality)
		  FROM (SELECT channel, seq, event, user_id, detail, at, keys, ordinality
				  FROM sp_events WHERE run = 'clean') e) =
	   (SELECT array_agg(replace(e::text, 'sp_dirty_', 'sp_clean_') ORDER BY ordinality)
		  FROM (SELECT channel, seq, event, user_id, detail, at, keys, ordinality
				  FROM sp_events WHERE run = 'dirty') e) AS same_events,
	   (SELECT count(*) FROM sp_events WHERE run = 'dirty') AS events;
SELECT line FROM sp_out WHERE run = 'sp_dirty_' ORDER BY n;
SELECT channel, seq, event, user_id, detail, at FROM sp_events
 WHERE run = 'dirty' ORDER BY ordinality;

------------------------------------------------------------------------
-- The app role cannot act as the extension's owner.
------------------------------------------------------------------------
-- DDL and role changes that would reach the tables or the owner's rights.
-- (The owner's name is shown as "OWNER".)
CREATE FUNCTION sp_err(q text) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
	RETURN replace(q || E'\n    -> ' || t_err(q, false),
				   (SELECT format('"%s"', extowner::regrole) FROM pg_extension
					 WHERE extname = 'presence'), '"OWNER"');
END
$$;
SELECT extowner::regrole AS owner FROM pg_extension WHERE extname = 'presence' \gset
CREATE FUNCTION sp_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RETURN NEW;
END
$$;
SET SESSION AUTHORIZATION regress_sp_app;
\pset tuples_only on
\pset format unaligned
SELECT sp_err(q) FROM unnest(ARRAY[
	format('SET ROLE "%s"', :'owner'),
	'ALTER ROLE regress_sp_app SUPERUSER',
	format('GRANT "%s" TO regress_sp_app', :'owner'),
	'CREATE TRIGGER sp_trg BEFORE INSERT ON presence.history FOR EACH ROW EXECUTE FUNCTION public.sp_trigger()',
	'CREATE RULE sp_rule AS ON INSERT TO presence.history DO ALSO NOTHING',
	'CREATE POLICY sp_policy ON presence.users USING (true)',
	'ALTER TABLE presence.users ADD COLUMN sp_x integer',
	'CREATE INDEX ON presence.sessions (public.lower(session_id))',
	'COMMENT ON TABLE presence.users IS $c$mine$c$',
	'LOCK TABLE presence.users',
	'CREATE FUNCTION presence.sp_new() RETURNS void LANGUAGE sql AS $c$ $c$',
	'CREATE OR REPLACE FUNCTION presence.sweep(as_of timestamptz DEFAULT clock_timestamp()) RETURNS integer LANGUAGE sql AS $c$ SELECT 0 $c$',
	'ALTER FUNCTION presence.heartbeat(text, text, boolean, jsonb, interval, interval) SECURITY DEFINER',
	'ALTER FUNCTION presence.disconnect(text, text) RESET search_path',
	'ALTER FUNCTION presence.sweep(timestamptz) OWNER TO regress_sp_app',
	'ALTER TYPE presence.status ADD VALUE $c$sp_new$c$',
	'ALTER EXTENSION presence DROP FUNCTION presence.sweep(timestamptz)',
	'DROP EXTENSION presence',
	'ALTER SEQUENCE presence.seq RESTART',
	'SELECT pg_catalog.setval($c$presence.seq$c$, 1)',
	'SELECT pg_catalog.set_config($c$presence.join_check$c$, $c$public.sp_check$c$, false)',
	'GRANT SELECT, INSERT ON presence.users TO regress_sp_app']) q;
\pset tuples_only off
\pset format aligned
SELECT has_table_privilege('presence.users', 'SELECT') AS can_select,
	   has_table_privilege('presence.users', 'INSERT') AS can_insert;
RESET SESSION AUTHORIZATION;

-- presence.join_check calls its function as the app role, and what it
-- calls as a SECURITY DEFINER function of the app runs as the app too:
-- neither can write the tables, read them, use the seq or change role.
CREATE TABLE public.sp_log (n serial, who text, what text, result text);
GRANT ALL ON public.sp_log, public.sp_log_n_seq TO regress_sp_app;
SET SESSION AUTHORIZATION regress_sp_app;
CREATE FUNCTION public.sp_attempts(who text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
	q text;
BEGIN
	INSERT INTO public.sp_log (who, what, result)
		VALUES (who, 'current_user', current_user);
	FOREACH q IN ARRAY ARRAY[
		$q$INSERT INTO presence.users (user_id, since) VALUES ('sp_forged', now())$q$,
		$q$UPDATE presence.sessions SET end_at = 'infinity'$q$,
		$q$DELETE FROM presence.history$q$,
		$q$SELECT count(*) FROM presence.members$q$,
		$q$SELECT nextval('presence.seq')$q$,
		$q$SET ROLE NONE$q$,
		$q$SELECT set_config('role', 'none', true)$q$,
		$q$SET SESSION AUTHORIZATION DEFAULT$q$]
	LOOP
		BEGIN
			EXECUTE q;
			INSERT INTO public.sp_log (who, what, result) VALUES (who, q, 'done');
		EXCEPTION WHEN OTHERS THEN
			INSERT INTO public.sp_log (who, what, result) VALUES (who, q, SQLSTATE);
		END;
	END LOOP;
END
$$;
CREATE FUNCTION public.sp_definer() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	PERFORM public.sp_attempts('SECURITY DEFINER function');
END
$$;
CREATE FUNCTION public.sp_check(room text, user_id text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.sp_attempts('join_check');
	PERFORM public.sp_definer();
	RETURN true;
END
$$;
RESET SESSION AUTHORIZATION;
SET presence.join_check = 'public.sp_check';
SET SESSION AUTHORIZATION regress_sp_app;
SELECT presence.join('sp_room', 'sp_joiner');
RESET SESSION AUTHORIZATION;
RESET presence.join_check;
SELECT who, what, result FROM sp_log ORDER BY n;
SELECT (SELECT count(*) FROM presence.users WHERE user_id = 'sp_forged') AS forged,
	   (SELECT count(*) FROM presence.sessions WHERE end_at = 'infinity') AS endless,
	   (SELECT count(*) > 0 FROM presence.history) AS history_kept;
SELECT presence.disconnect('sp_joiner');

------------------------------------------------------------------------
-- A role with no grants can call no function and read or write no table
-- or sequence.
------------------------------------------------------------------------
SET SESSION AUTHORIZATION regress_sp_nobody;
SELECT p.proname, t_err(format('SELECT presence.%I(%s)', p.proname,
		   (SELECT string_agg('NULL::' || format_type(t, NULL), ', ' ORDER BY o)
			  FROM unnest(p.proargtypes) WITH ORDINALITY AS a(t, o))), false) AS result
  FROM pg_proc p WHERE p.pronamespace = 'presence'::regnamespace
 ORDER BY 1;
SELECT q, t_err(q, false) AS result
  FROM pg_class c, LATERAL (VALUES
	   (format('SELECT * FROM presence.%I', c.relname)),
	   (CASE c.relkind WHEN 'S' THEN format('SELECT nextval(%L)', 'presence.' || c.relname)
			ELSE format('DELETE FROM presence.%I', c.relname) END)) AS v(q)
 WHERE c.relnamespace = 'presence'::regnamespace AND c.relkind IN ('r', 'S')
 ORDER BY 1, 2;
RESET SESSION AUTHORIZATION;

------------------------------------------------------------------------
-- Invisible users: while invisible, nothing they do reaches any channel
-- or the history, in any room, and nobody else's events carry it; their
-- secret message is never shown.
------------------------------------------------------------------------
SELECT r_listen('sp_lounge', 'sp_secret_room');
SELECT count(*) >= 0 AS drained FROM r_received();
SET SESSION AUTHORIZATION regress_sp_app;
SELECT presence.join('sp_lounge', 'sp_inv', 'tab', '{"cursor": 1}');
SELECT presence.join('sp_lounge', 'sp_inv', 'phone');
SELECT presence.join('sp_lounge', 'sp_vis', 'tab');
SELECT presence.heartbeat('sp_vis', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('sp_inv', 'auto', 'Public message');
SELECT presence.set_status('sp_inv', 'invisible');
RESET SESSION AUTHORIZATION;
-- Going invisible is the last thing announced: a disconnect, and a leave.
SELECT channel, event, user_id, detail->>'reason' AS reason, detail->>'message' AS message
  FROM r_notified(now(), 0);
SELECT r_seq() AS s_inv \gset
SET SESSION AUTHORIZATION regress_sp_app;
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('sp_inv', 'tab');
SELECT presence.heartbeat('sp_inv', 'laptop', meta => '{"secret": "laptop"}');
SELECT presence.heartbeat_many(ARRAY['sp_inv', 'sp_inv'], ARRAY['tab', 'tablet']);
SELECT presence.set_status('sp_inv', 'invisible', 'Secret message');
SELECT presence.join('sp_secret_room', 'sp_inv', 'tab', '{"secret": "room"}');
SELECT presence.join('sp_lounge', 'sp_inv', 'laptop', '{"secret": "lounge"}');
SELECT presence.set_meta('sp_lounge', 'sp_inv', 'tab', '{"secret": "cursor"}');
SELECT presence.typing('sp_lounge', 'sp_inv');
SELECT presence.typing('sp_secret_room', 'sp_inv');
SELECT presence.typing('sp_lounge', 'sp_inv', false);
SELECT presence.leave('sp_secret_room', 'sp_inv', 'tab');
SELECT presence.join('sp_secret_room', 'sp_inv', 'laptop');
SELECT presence.set_status('sp_inv', 'invisible', 'Secret until later',
						   :'t0'::timestamptz + interval '3 hours');
-- others carry on around them
SELECT presence.join('sp_lounge', 'sp_vis', 'phone', '{"cursor": 9}');
SELECT presence.heartbeat('sp_vis', 'phone', ttl => '1 day', away_after => '1 day');
SELECT presence.typing('sp_lounge', 'sp_vis');
SELECT presence.broadcast('sp_lounge', '{"from": "the app"}');
SELECT presence.disconnect('sp_inv', 'phone');
-- and time passes: their sessions idle and end
SELECT presence.sweep(:'t0'::timestamptz + interval '10 min') AS events;
COMMIT;
SELECT * FROM presence.members('sp_secret_room');
SELECT user_id FROM presence.members('sp_lounge');
SELECT presence.room_count('sp_secret_room') AS secret_count,
	   presence.room_count('sp_lounge') AS lounge_count,
	   (SELECT count(*) FROM presence.rooms('sp_inv')) AS rooms,
	   (SELECT array_agg(u) FROM presence.typing_users('sp_lounge') u) AS typing,
	   (SELECT count(*) FROM presence.online_users() WHERE user_id = 'sp_inv') AS online;
SELECT user_id, status, message, sessions FROM presence.get('sp_inv');
RESET SESSION AUTHORIZATION;
-- Everything announced meanwhile is about someone else, and nothing
-- names them, their secret or their metadata.
SELECT channel, event, user_id, detail - 'meta' - 'last_active' AS detail
  FROM r_notified(now(), 0) ORDER BY seq;
SELECT count(*) AS history_rows FROM presence.history
 WHERE seq > :s_inv AND (user_id = 'sp_inv' OR message ILIKE '%secret%');

-- Coming back is announced, still without the secret.
SET SESSION AUTHORIZATION regress_sp_app;
SELECT presence.heartbeat('sp_inv', 'tab');
SELECT presence.set_status('sp_inv', 'auto');
RESET SESSION AUTHORIZATION;
SELECT channel, event, user_id, detail->>'reason' AS reason, detail->>'message' AS message
  FROM r_notified(now(), 0);
SELECT count(*) AS secrets FROM presence.history WHERE message ILIKE '%secret%';
SELECT presence.disconnect(u) FROM unnest(ARRAY['sp_inv', 'sp_vis', 'sp_locked']) u;

SELECT count(*) >= 0 AS drained FROM r_received();
SELECT dblink_disconnect('rooms');

------------------------------------------------------------------------
-- Logged in as the app role (above, a superuser's session could have
-- taken its authorization back), it cannot become the owner either, and
-- the API leaves it as it was.
------------------------------------------------------------------------
\c - regress_sp_app
\pset tuples_only on
\pset format unaligned
SELECT sp_err(q) FROM unnest(ARRAY[
	format('SET ROLE "%s"', :'owner'),
	format('SET SESSION AUTHORIZATION "%s"', :'owner'),
	$q$SELECT pg_catalog.count(*) FROM presence.users$q$]) q;
\pset tuples_only off
\pset format aligned
SELECT presence.heartbeat('sp_login'), presence.disconnect('sp_login'),
	   current_user AS current_user_, session_user AS session_user_;
\c - :"login"

DROP TABLE sp_out, sp_runs, sp_events, sp_log;
DROP PROCEDURE sp_run(text);
DROP FUNCTION sp_say(text, text);
DROP FUNCTION sp_err(text);
DROP FUNCTION sp_trigger();
DROP OWNED BY regress_sp_app, regress_sp_nobody;
DROP ROLE regress_sp_app, regress_sp_nobody;
SELECT count(*) >= 0 FROM t_events(now());
