--
-- Hostile input to every function: NULLs, empty and 1 MB strings, invalid
-- UTF-8, control characters, quotes and backslashes, deeply nested JSON,
-- huge and negative intervals and numbers, timestamps at infinity.  Each
-- is a clear error that changes nothing, or is handled correctly: every
-- payload it produces is valid JSON that gives the values back exactly,
-- and no other user's state moves.  (r_state() is from 09_rooms, and
-- r_listen() and r_received() from 10_room_events.)
--
SELECT pg_postmaster_start_time() AS h_started \gset
SET presence.meta_interval = 0;
SET presence.typing_timeout = '1h';

-- A second connection to this database, by name (21_search_path uses
-- these too).
CREATE FUNCTION h_connect(name text) RETURNS text
LANGUAGE sql AS $$
	SELECT dblink_connect(name,
		format('dbname=%s port=%s host=%s', current_database(),
			   current_setting('port'),
			   split_part(current_setting('unix_socket_directories'), ',', 1)))
$$;
-- The listener that r_received() reads, on the status channel.
CREATE FUNCTION h_listen() RETURNS void
LANGUAGE sql AS $$
	SELECT h_connect('rooms');
	SELECT dblink_exec('rooms', 'LISTEN presence');
	SELECT dblink_exec('rooms', 'LISTEN r_sentinel');
$$;
SELECT h_listen();

-- Bystanders, whose rows no call below may change: busy with a message in
-- a room, typing in it, and invisible.
SELECT presence.join('h_room', 'h_by_alice', 'tab', '{"cursor": 1}');
SELECT presence.heartbeat('h_by_alice', 'tab', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('h_by_alice', 'busy', 'Focus');
SELECT presence.join('h_room', 'h_by_bob', 'phone');
SELECT presence.heartbeat('h_by_bob', 'phone', ttl => '1 day', away_after => '1 day');
SELECT presence.typing('h_room', 'h_by_bob');
SELECT presence.heartbeat('h_by_carol', ttl => '1 day', away_after => '1 day');
SELECT presence.set_status('h_by_carol', 'invisible', 'Hidden');
SELECT r_listen('h_room');
SELECT count(*) >= 0 AS drained FROM r_received();

-- The bystanders' rows, as one text.
CREATE FUNCTION h_bystanders() RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(E'\n',
		(SELECT string_agg(u::text, ',' ORDER BY u.user_id) FROM presence.users u
		  WHERE u.user_id IN ('h_by_alice', 'h_by_bob', 'h_by_carol')),
		(SELECT string_agg(s::text, ',' ORDER BY s.user_id, s.session_id)
		   FROM presence.sessions s
		  WHERE s.user_id IN ('h_by_alice', 'h_by_bob', 'h_by_carol')),
		(SELECT string_agg(m::text, ',' ORDER BY m.room, m.user_id, m.session_id)
		   FROM presence.members m
		  WHERE m.user_id IN ('h_by_alice', 'h_by_bob', 'h_by_carol')),
		(SELECT string_agg(t::text, ',' ORDER BY t.room, t.user_id)
		   FROM presence.typing t
		  WHERE t.user_id IN ('h_by_alice', 'h_by_bob', 'h_by_carol')))
$$;
SELECT h_bystanders() AS bystanders \gset

-- A call that must be refused, and its error (SQLSTATE, message, detail,
-- hint); it says so if any presence table or the seq changed.
CREATE FUNCTION h_err(q text, with_detail boolean DEFAULT true) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	before text := r_state();
	result text := t_err(q, with_detail);
BEGIN
	RETURN q || E'\n    -> ' || result ||
		CASE WHEN r_state() = before THEN '' ELSE ' (STATE CHANGED)' END;
END
$$;

\pset tuples_only on
\pset format unaligned

------------------------------------------------------------------------
-- NULL in each argument that may not be NULL: 22004.
------------------------------------------------------------------------
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat(NULL)$q$,
	$q$SELECT presence.heartbeat('h_x', NULL)$q$,
	$q$SELECT presence.heartbeat('h_x', 'tab', NULL)$q$,
	$q$SELECT presence.heartbeat_many(NULL, ARRAY['tab'])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], NULL)$q$,
	$q$SELECT presence.heartbeat_many(ARRAY[NULL], ARRAY['tab'])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], ARRAY[NULL])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], ARRAY['tab'], NULL)$q$,
	$q$SELECT presence.disconnect(NULL)$q$,
	$q$SELECT presence.set_status(NULL, 'busy')$q$,
	$q$SELECT presence.set_status('h_by_alice', NULL)$q$,
	$q$SELECT presence.sweep(NULL)$q$,
	$q$SELECT presence.join(NULL, 'h_by_alice')$q$,
	$q$SELECT presence.join('h_room', NULL)$q$,
	$q$SELECT presence.join('h_room', 'h_by_alice', NULL)$q$,
	$q$SELECT presence.leave(NULL, 'h_by_alice')$q$,
	$q$SELECT presence.leave('h_room', NULL)$q$,
	$q$SELECT presence.set_meta(NULL, 'h_by_alice', 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', NULL, 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', 'h_by_alice', NULL, '{}')$q$,
	$q$SELECT presence.typing(NULL, 'h_by_bob')$q$,
	$q$SELECT presence.typing('h_room', NULL)$q$,
	$q$SELECT presence.typing('h_room', 'h_by_bob', NULL)$q$,
	$q$SELECT presence.broadcast(NULL, '{}')$q$,
	$q$SELECT presence.broadcast('h_room', NULL)$q$,
	$q$SELECT presence.room_channel(NULL)$q$,
	$q$SELECT * FROM presence.time_in_status(NULL, now())$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', NULL)$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', now(), NULL)$q$]) q;

-- Where NULL means something, it is that: every session, no metadata,
-- the default timers, no message, no expiry.  The reads are STRICT: no
-- rows, or NULL; a NULL in statuses()' array reads as an unknown user.
BEGIN;
SELECT presence.disconnect('h_nobody', NULL) || ', ' ||
	   presence.heartbeat('h_null', 'tab', true, NULL, NULL, NULL) || ', ' ||
	   presence.set_status('h_null', 'auto', NULL, NULL) AS accepted;
SELECT presence.leave('h_room', 'h_nobody', NULL);
SELECT (SELECT count(*) FROM presence.get(NULL)) AS get,
	   (SELECT count(*) FROM presence.statuses(NULL)) AS statuses,
	   (SELECT status || '/' || sessions FROM presence.statuses(ARRAY[NULL])) AS null_element,
	   (SELECT count(*) FROM presence.online_users(NULL)) AS online_users,
	   (SELECT count(*) FROM presence.changes(NULL)) AS changes,
	   (SELECT count(*) FROM presence.changes(0, NULL)) AS changes_max,
	   (SELECT count(*) FROM presence.members(NULL)) AS members,
	   presence.room_count(NULL) IS NULL AS room_count_null,
	   (SELECT count(*) FROM presence.rooms(NULL)) AS rooms,
	   (SELECT count(*) FROM presence.typing_users(NULL)) AS typing_users;
ROLLBACK;
-- worker_status(), cache_status() and counts() take no argument: no worker
-- and no cache without preloading, and one row per status.
SELECT (SELECT count(*) FROM presence.worker_status()) AS workers,
	   (SELECT c::text FROM presence.cache_status() c) AS cache,
	   (SELECT count(*) FROM presence.counts()) AS counts;

------------------------------------------------------------------------
-- Empty strings: 22023 for ids, rooms and the status; reads treat an
-- empty id or room as one nobody uses.
------------------------------------------------------------------------
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat('')$q$,
	$q$SELECT presence.heartbeat('h_x', '')$q$,
	$q$SELECT presence.heartbeat_many(ARRAY[''], ARRAY['tab'])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], ARRAY[''])$q$,
	$q$SELECT presence.disconnect('')$q$,
	$q$SELECT presence.disconnect('h_by_alice', '')$q$,
	$q$SELECT presence.set_status('', 'busy')$q$,
	$q$SELECT presence.set_status('h_by_alice', '')$q$,
	$q$SELECT presence.join('', 'h_by_alice')$q$,
	$q$SELECT presence.join('h_room', '')$q$,
	$q$SELECT presence.join('h_room', 'h_by_alice', '')$q$,
	$q$SELECT presence.leave('', 'h_by_alice')$q$,
	$q$SELECT presence.leave('h_room', '')$q$,
	$q$SELECT presence.leave('h_room', 'h_by_alice', '')$q$,
	$q$SELECT presence.set_meta('', 'h_by_alice', 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', '', 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', 'h_by_alice', '', '{}')$q$,
	$q$SELECT presence.typing('', 'h_by_bob')$q$,
	$q$SELECT presence.typing('h_room', '')$q$,
	$q$SELECT presence.broadcast('', '{}')$q$,
	$q$SELECT presence.room_channel('')$q$]) q;
-- An empty message is no message, and an empty metadata object is one.
BEGIN;
SELECT presence.set_status('h_empty', 'busy', '') AS accepted;
SELECT presence.heartbeat('h_empty', 'tab', meta => '{}') AS accepted;
SELECT message IS NULL AS no_message FROM presence.get('h_empty');
SELECT meta FROM presence.sessions WHERE user_id = 'h_empty';
ROLLBACK;
SELECT (SELECT status || '/' || sessions FROM presence.get('')) AS get,
	   (SELECT count(*) FROM presence.members('')) AS members,
	   presence.room_count('') AS room_count,
	   (SELECT count(*) FROM presence.rooms('')) AS rooms,
	   (SELECT count(*) FROM presence.typing_users('')) AS typing_users,
	   (SELECT string_agg(status || ' ' || duration, ', ')
		  FROM presence.time_in_status('', now() - interval '1 hour')) AS time_in_status;

------------------------------------------------------------------------
-- 1 MB strings: 22001 for ids, rooms, the message, metadata and the
-- broadcast payload; 22023 for the status, whose error quotes only its
-- start.  Reads look the value up and find nobody.
------------------------------------------------------------------------
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat(repeat('u', 1048576))$q$,
	$q$SELECT presence.heartbeat('h_x', repeat('s', 1048576))$q$,
	$q$SELECT presence.heartbeat('h_x', meta => jsonb_build_object('k', repeat('m', 1048576)))$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x', repeat('u', 1048576)], ARRAY['a', 'b'])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], ARRAY[repeat('s', 1048576)])$q$,
	$q$SELECT presence.disconnect(repeat('u', 1048576))$q$,
	$q$SELECT presence.disconnect('h_by_alice', repeat('s', 1048576))$q$,
	$q$SELECT presence.set_status(repeat('u', 1048576), 'busy')$q$,
	$q$SELECT presence.set_status('h_by_alice', repeat('b', 1048576))$q$,
	$q$SELECT presence.set_status('h_by_alice', 'busy', repeat('é', 524288))$q$,
	$q$SELECT presence.join(repeat('r', 1048576), 'h_by_alice')$q$,
	$q$SELECT presence.join('h_room', repeat('u', 1048576))$q$,
	$q$SELECT presence.join('h_room', 'h_by_alice', repeat('s', 1048576))$q$,
	$q$SELECT presence.join('h_room', 'h_by_alice', 'tab', jsonb_build_object('k', repeat('m', 1048576)))$q$,
	$q$SELECT presence.leave(repeat('r', 1048576), 'h_by_alice')$q$,
	$q$SELECT presence.leave('h_room', repeat('u', 1048576))$q$,
	$q$SELECT presence.leave('h_room', 'h_by_alice', repeat('s', 1048576))$q$,
	$q$SELECT presence.set_meta(repeat('r', 1048576), 'h_by_alice', 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', repeat('u', 1048576), 'tab', '{}')$q$,
	$q$SELECT presence.set_meta('h_room', 'h_by_alice', repeat('s', 1048576), '{}')$q$,
	$q$SELECT presence.set_meta('h_room', 'h_by_alice', 'tab', jsonb_build_object('k', repeat('m', 1048576)))$q$,
	$q$SELECT presence.typing(repeat('r', 1048576), 'h_by_bob')$q$,
	$q$SELECT presence.typing('h_room', repeat('u', 1048576))$q$,
	$q$SELECT presence.broadcast(repeat('r', 1048576), '{}')$q$,
	$q$SELECT presence.broadcast('h_room', jsonb_build_object('k', repeat('p', 1048576)))$q$,
	$q$SELECT presence.room_channel(repeat('r', 1048576))$q$]) q;
SELECT (SELECT length(user_id) || ' ' || status || '/' || sessions
		  FROM presence.get(repeat('u', 1048576))) AS get,
	   (SELECT count(*) FROM presence.statuses(ARRAY[repeat('u', 1048576), 'h_by_alice'])) AS statuses,
	   (SELECT count(*) FROM presence.members(repeat('r', 1048576))) AS members,
	   presence.room_count(repeat('r', 1048576)) AS room_count,
	   (SELECT count(*) FROM presence.rooms(repeat('u', 1048576))) AS rooms,
	   (SELECT count(*) FROM presence.typing_users(repeat('r', 1048576))) AS typing_users,
	   (SELECT string_agg(status || ' ' || duration, ', ')
		  FROM presence.time_in_status(repeat('u', 1048576), now() - interval '1 hour')) AS time_in_status;

------------------------------------------------------------------------
-- Invalid UTF-8 never gets in: PostgreSQL refuses it (22021), and NUL
-- characters (54000, 22P05), surrogates and code points beyond U+10FFFF,
-- before presence sees the value.
------------------------------------------------------------------------
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat(E'\xff')$q$,
	$q$SELECT presence.heartbeat(E'h_\xc3\x28')$q$,
	$q$SELECT presence.heartbeat('h_x', E'\xed\xa0\x80')$q$,
	$q$SELECT presence.heartbeat('h_x', E'\xf4\x90\x80\x80')$q$,
	$q$SELECT presence.heartbeat('h_x', E'\xc0\x80')$q$,
	$q$SELECT presence.heartbeat(convert_from('\xfe'::bytea, 'UTF8'))$q$,
	$q$SELECT presence.heartbeat(E'h_\u0000')$q$,
	$q$SELECT presence.heartbeat('h_' || chr(0))$q$,
	$q$SELECT presence.heartbeat('h_' || chr(55296))$q$,
	$q$SELECT presence.heartbeat(U&'h_\D800')$q$,
	$q$SELECT presence.set_status('h_x', 'busy', E'\x80')$q$,
	$q$SELECT presence.join(E'room\xe2\x82', 'h_x')$q$,
	$q$SELECT presence.heartbeat('h_x', meta => '{"k": "\u0000"}')$q$,
	$q$SELECT presence.heartbeat('h_x', meta => '{"k": "\ud800"}')$q$,
	$q$SELECT presence.broadcast('h_room', '"\udfff\ud800"')$q$,
	$q$SELECT presence.broadcast('h_room', E'"\xff"')$q$]) q;

------------------------------------------------------------------------
-- Deeply nested JSON: what fits the size limits is carried as is; deeper
-- is too long (22001), and deeper than PostgreSQL parses is refused by
-- jsonb itself (54001).
------------------------------------------------------------------------
SELECT h_err(q, false) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat('h_x', meta => (repeat('{"a":', 400) || '1' || repeat('}', 400))::jsonb)$q$,
	$q$SELECT presence.join('h_room', 'h_x', 'tab', (repeat('{"a":', 400) || '1' || repeat('}', 400))::jsonb)$q$,
	$q$SELECT presence.broadcast('h_room', (repeat('[', 2100) || repeat(']', 2100))::jsonb)$q$,
	$q$SELECT presence.broadcast('h_room', (repeat('[', 1000000) || repeat(']', 1000000))::jsonb)$q$,
	$q$SELECT presence.heartbeat('h_x', meta => (repeat('{"a":', 1000000) || '1' || repeat('}', 1000000))::jsonb)$q$]) q;

------------------------------------------------------------------------
-- Intervals: ttl more than 0 and away_after at least 0, both at most 365
-- days (a month counts as 30 days), whatever mix of months, days and
-- microseconds gives them, up to the extremes of the interval type: 22023.
------------------------------------------------------------------------
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat('h_x', ttl => '0')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '-1 microsecond')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '1 mon -30 days')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '365 days 00:00:00.000001')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '1 year 6 days')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '178000000 years')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '-178000000 years')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '2147483647 days')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '-2147483648 days 1 hour')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '2562047788:00:54.775807')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '-2562047788:00:54.775808')$q$,
	$q$SELECT presence.heartbeat('h_x', ttl => '178956970 years 7 months 2147483647 days 2562047788:00:54.775807')$q$,
	$q$SELECT presence.heartbeat('h_x', away_after => '-1 microsecond')$q$,
	$q$SELECT presence.heartbeat('h_x', away_after => '-178956970 years -8 months -2147483648 days -2562047788:00:54.775808')$q$,
	$q$SELECT presence.heartbeat('h_x', away_after => '12 mon 5 days 1 microsecond')$q$,
	$q$SELECT presence.heartbeat('h_x', away_after => '366 days -24 hours 1 microsecond')$q$]) q;
-- At the edges they are accepted, a month as 30 days.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('h_timers', 'micro', ttl => '1 microsecond') AS micro,
	   presence.heartbeat('h_timers', 'year', ttl => '1 year', away_after => '12 mon -5 days') AS year,
	   presence.heartbeat('h_timers', 'mixed', ttl => '-1 mon 31 days', away_after => '1 mon -30 days') AS mixed,
	   presence.heartbeat('h_timers', 'max', ttl => '365 days', away_after => '364 days 24:00:00') AS max;
SELECT session_id, away_at, end_at FROM t_sessions('h_timers', :'t0');
ROLLBACK;

------------------------------------------------------------------------
-- Timestamps at and near infinity.  until: in the future; 'infinity'
-- means no expiry.  time_in_status(): a finite period (22023) that an
-- interval can hold (22008).  sweep() at -infinity has nothing to do.
-- (The details, which give the times, are left out but for one.)
------------------------------------------------------------------------
SELECT h_err($q$SELECT * FROM presence.time_in_status('h_by_alice', '-infinity', 'infinity')$q$);
SELECT h_err(q, false) FROM unnest(ARRAY[
	$q$SELECT presence.set_status('h_x', 'busy', NULL, '-infinity')$q$,
	$q$SELECT presence.set_status('h_x', 'busy', NULL, '4714-11-24 00:00:00+00 BC')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', '2026-01-01 00:00:00+00', 'infinity')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', '-infinity', '2026-01-01 00:00:00+00')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', 'infinity', 'infinity')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', '-infinity', '-infinity')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', 'infinity', '-infinity')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', '4713-01-01 00:00:00+00 BC', '294276-12-31 23:59:59.999999+00')$q$,
	$q$SELECT * FROM presence.time_in_status('h_by_alice', '4713-01-01 00:00:00+00 BC', '287600-01-01 00:00:00+00')$q$]) q;
\pset tuples_only off
\pset format aligned
SELECT * FROM presence.time_in_status('h_nobody', '4713-01-01 00:00:00+00 BC',
									   '287564-01-01 00:00:00+00');
SELECT presence.sweep('-infinity') AS nothing, presence.sweep('4713-01-01 00:00:00+00 BC') AS nothing;
BEGIN;
SELECT presence.set_status('h_until', 'busy', 'Forever', 'infinity') AS accepted;
SELECT presence.set_status('h_until2', 'away', 'Almost forever',
						   '294276-12-31 23:59:59.999999+00') AS accepted;
SELECT user_id, manual, manual_message, manual_until FROM presence.users
 WHERE user_id IN ('h_until', 'h_until2') ORDER BY user_id;
ROLLBACK;

------------------------------------------------------------------------
-- Big and negative numbers in the reads: no rows, or all of them.
------------------------------------------------------------------------
SELECT (SELECT count(*) FROM presence.online_users(-2147483648)) AS online_min,
	   (SELECT count(*) FROM presence.online_users(2147483647)) =
		 (SELECT count(*) FROM presence.users WHERE status <> 'offline') AS online_max,
	   (SELECT count(*) FROM presence.changes(-9223372036854775808, 2147483647)) =
		 (SELECT count(*) FROM presence.history) AS changes_all,
	   (SELECT count(*) FROM presence.changes(9223372036854775807)) AS changes_none,
	   (SELECT count(*) FROM presence.changes(0, -2147483648)) AS changes_min;

------------------------------------------------------------------------
-- heartbeat_many(): arrays must match and be one-dimensional (2202E);
-- any lower bound is fine, and a session repeated a thousand times is
-- one session, one change.
------------------------------------------------------------------------
\pset tuples_only on
\pset format unaligned
SELECT h_err(q) FROM unnest(ARRAY[
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], '{}')$q$,
	$q$SELECT presence.heartbeat_many('{}', ARRAY['tab'])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY[['h_x', 'h_y']], ARRAY[['a', 'b']])$q$,
	$q$SELECT presence.heartbeat_many(ARRAY['h_x'], ARRAY[['a']])$q$]) q;
\pset tuples_only off
\pset format aligned
BEGIN;
SELECT presence.heartbeat_many('[-5:-4]={h_many_a,h_many_b}', '[7:8]={x,y}') AS changed;
SELECT presence.heartbeat_many(array_fill('h_many_c'::text, ARRAY[1000]),
							   array_fill('tab'::text, ARRAY[1000])) AS changed;
SELECT user_id, session_id FROM presence.sessions
 WHERE user_id LIKE 'h\_many\_%' ORDER BY 1, 2;
ROLLBACK;
SELECT count(*) AS drained FROM r_received();

------------------------------------------------------------------------
-- Ids, rooms, messages and metadata are opaque: control characters,
-- quotes, backslashes, JSON and SQL lookalikes, bidirectional overrides,
-- line separators and astral characters are kept exactly, and escaped in
-- every payload so that it is valid JSON giving them back.
------------------------------------------------------------------------
CREATE TEMP TABLE h_v AS
SELECT 'h_ctl:' || c || E'"\\/' || chr(127) AS usr,
	   E'tab\n"quoted"\\\t' || chr(8232) || chr(8233) || '😀' AS s1,
	   c || '\u0041' AS s2,
	   E'room "\\" \b\f\n\r\t' || chr(127) || chr(8238) || chr(65279) || 'é' ||
		 'e' || chr(769) || ' %_*' AS room,
	   'Msg ' || c || E' \'"\\ </script> ' || chr(8232) || ' \n\u0000' AS msg,
	   jsonb_build_object(c, E'"\\/' || c, 'nested',
			(repeat('{"a":', 200) || '[1, -0, 1e30, 1e-30, "\u00e9"]' ||
			 repeat('}', 200))::jsonb) AS meta,
	   jsonb_build_object('k', c || '\u2028') AS meta2,
	   jsonb_build_array(c, (repeat('[', 1000) || '"\"\\\/\b\f\n\r\t\u0001\ud83d\ude00"' ||
							 repeat(']', 1000))::jsonb) AS payload,
	   '","status":"online","x":"' AS inj_user,
	   E'"},{"event":"join"}\\' AS inj_room,
	   $$'); DELETE FROM presence.users; --$$ AS sql_user
  FROM (SELECT string_agg(chr(i), '' ORDER BY i) AS c
		  FROM generate_series(1, 31) i) x;
SELECT octet_length(usr) AS usr, octet_length(s1) AS s1, octet_length(room) AS room,
	   char_length(msg) AS msg, octet_length(meta::text) AS meta,
	   octet_length(payload::text) AS payload
  FROM h_v;
SELECT r_listen(room), r_listen(inj_room) FROM h_v;
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT presence.join(room, usr, s1, meta) FROM h_v;
SELECT presence.join(room, usr, s2) FROM h_v;
SELECT presence.heartbeat(usr, s2, meta => meta2) FROM h_v;
SELECT presence.set_meta(room, usr, s2, meta2) FROM h_v;
SELECT presence.typing(room, usr) FROM h_v;
SELECT presence.set_status(usr, 'busy', msg) FROM h_v;
SELECT presence.broadcast(room, payload) FROM h_v;
SELECT presence.typing(room, usr, false) FROM h_v;
SELECT presence.leave(room, usr, s2) FROM h_v;
SELECT presence.join(inj_room, inj_user) FROM h_v;
SELECT presence.set_status(sql_user, 'away', inj_room) FROM h_v;
SELECT presence.heartbeat(sql_user, inj_user) FROM h_v;
COMMIT;
-- Every payload parsed as jsonb (or this would fail) and gave back the
-- values exactly; the lookalikes added no field.
SELECT i.n - min(i.n) OVER () AS n,
	   CASE i.channel WHEN 'presence' THEN 'status'
			WHEN presence.room_channel(v.room) THEN 'room'
			WHEN presence.room_channel(v.inj_room) THEN 'inj_room' END AS channel,
	   (j->>'seq')::bigint > :s0 AS seq_ok,
	   j->>'event' AS event,
	   CASE j->>'user_id' WHEN v.usr THEN 'usr' WHEN v.inj_user THEN 'inj_user'
			WHEN v.sql_user THEN 'sql_user' ELSE j->>'user_id' END AS user_id,
	   CASE j->>'room' WHEN v.room THEN 'room' WHEN v.inj_room THEN 'inj_room'
			ELSE j->>'room' END AS room,
	   CASE j->>'session_id' WHEN v.s1 THEN 's1' WHEN v.s2 THEN 's2'
			ELSE j->>'session_id' END AS session_id,
	   CASE WHEN j->>'message' = v.msg THEN 'msg' WHEN j->>'message' = v.inj_room THEN 'inj_room'
			ELSE j->>'message' END AS message,
	   CASE j->'meta' WHEN v.meta THEN 'meta' WHEN v.meta2 THEN 'meta2'
			ELSE j->>'meta' END AS meta,
	   CASE WHEN j->'payload' = v.payload THEN 'payload' ELSE j->>'payload' END AS payload,
	   (j->>'at')::timestamptz IS NOT NULL AS at_ok,
	   (SELECT string_agg(k, ',' ORDER BY o)
		  FROM json_object_keys(i.payload::json) WITH ORDINALITY AS x(k, o)) AS keys
  FROM r_received() i, h_v v, LATERAL (SELECT i.payload::jsonb AS j) p
 ORDER BY i.n;
-- How one id is written in JSON.
SELECT to_jsonb(usr) AS usr_as_json FROM h_v;
-- The reads and the history give them back too.
SELECT g.user_id = v.usr AS get_user, g.message = v.msg AS get_message,
	   (SELECT m.user_id = v.usr AND m.metas->0->'meta' = v.meta
		  FROM presence.members(v.room) m) AS members,
	   presence.room_count(v.room) AS room_count,
	   (SELECT array_agg(r) = ARRAY[v.room] FROM presence.rooms(v.usr) r) AS rooms,
	   (SELECT count(*) FROM presence.typing_users(v.room)) AS typing,
	   (SELECT array_agg(c.message ORDER BY c.seq) = ARRAY[NULL, v.msg]
		  FROM presence.changes(:s0) c WHERE c.user_id = v.usr) AS changes,
	   (SELECT count(*) FROM presence.users u
		 WHERE u.user_id IN (v.inj_user, v.sql_user)) AS lookalike_users
  FROM h_v v, presence.get(v.usr) g;
-- Ids are compared bytewise: case, trailing spaces, a tab, a newline and
-- Unicode normalization (é precomposed or not) make different users.
BEGIN;
SELECT presence.heartbeat(u) FROM unnest(ARRAY['h_case', 'H_CASE', 'h_case ',
	E'h_case\t', E'h_case\n', 'h_café', 'h_cafe' || chr(769), ' ']) u;
SELECT count(*) AS distinct_users FROM presence.users
 WHERE user_id IN ('h_case', 'H_CASE', 'h_case ', E'h_case\t', E'h_case\n',
				   'h_café', 'h_cafe' || chr(769), ' ');
ROLLBACK;
SELECT presence.disconnect(usr), presence.disconnect(inj_user),
	   presence.disconnect(sql_user) FROM h_v;
SELECT count(*) AS drained FROM r_received();

-- The bystanders saw nothing of all this.
SELECT h_bystanders() = :'bystanders' AS bystanders_unchanged;

------------------------------------------------------------------------
-- sweep() at infinity: everything that will ever fall due does, and the
-- payloads (dated at the deadlines) are valid; afterwards everything
-- works as before.
------------------------------------------------------------------------
SELECT presence.set_status('h_by_alice', 'busy', 'Focus',
						   '294276-12-31 23:59:59.999999+00') AS until_max;
SELECT count(*) AS drained FROM r_received();
SELECT presence.sweep('infinity') > 0 AS swept;
SELECT (SELECT count(*) FROM presence.sessions) AS sessions,
	   (SELECT count(*) FROM presence.members) AS members,
	   (SELECT count(*) FROM presence.typing) AS typing,
	   (SELECT count(*) FROM presence.users WHERE status <> 'offline') AS not_offline,
	   (SELECT count(*) FROM presence.users WHERE manual_until IS NOT NULL) AS until_left;
SELECT bool_and((i.payload::jsonb->>'at')::timestamptz < 'infinity') AS finite_at,
	   count(*) FILTER (WHERE i.payload::jsonb->>'user_id' = 'h_by_alice') AS alice_events
  FROM r_received() i;
SELECT presence.heartbeat('h_by_alice') AS after_infinity;
SELECT presence.join('h_room', 'h_by_alice', 'tab', '{"cursor": 2}');
SELECT presence.set_meta('h_room', 'h_by_alice', 'tab', '{"cursor": 3}');
SELECT j->>'event' AS event, j->>'user_id' AS user_id, j->'meta' AS meta
  FROM r_received() i, LATERAL (SELECT i.payload::jsonb AS j) p ORDER BY i.n;
SELECT presence.disconnect('h_by_alice');

-- Nothing crashed: the server was never restarted.
SELECT pg_postmaster_start_time() = :'h_started' AS no_restart;

SELECT count(*) >= 0 AS drained FROM r_received();
SELECT dblink_disconnect('rooms');
RESET presence.meta_interval;
RESET presence.typing_timeout;
DROP FUNCTION h_err(text, boolean);
DROP FUNCTION h_bystanders();
SELECT count(*) >= 0 FROM t_events(now());
