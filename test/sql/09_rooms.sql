--
-- Rooms: join(), leave(), set_meta(), typing() and broadcast(), as the
-- reads members(), room_count(), rooms() and typing_users() show them;
-- presence.join_check; room_channel(); bad input.  The events themselves
-- are in 10_room_events.
--

-- A room's members with times relative to base.
CREATE FUNCTION r_members(r text, base timestamptz)
RETURNS TABLE(user_id text, status presence.status, message text,
			  metas jsonb, joined_at interval)
LANGUAGE sql AS $$
	SELECT m.user_id, m.status, m.message,
		   (SELECT jsonb_agg(e - 'joined_at' ||
							 jsonb_build_object('joined_at',
								((e->>'joined_at')::timestamptz - base)::text)
							 ORDER BY o)
			  FROM jsonb_array_elements(m.metas) WITH ORDINALITY AS x(e, o)),
		   m.joined_at - base
	  FROM presence.members(r) WITH ORDINALITY AS m
	 ORDER BY m.ordinality
$$;

-- A room's members and their sessions, oldest first, with no times.
CREATE FUNCTION r_who(r text) RETURNS text
LANGUAGE sql AS $$
	SELECT COALESCE(string_agg(m.user_id || ' (' ||
		   (SELECT string_agg(e->>'session_id', ', ' ORDER BY o)
			  FROM jsonb_array_elements(m.metas) WITH ORDINALITY AS x(e, o)) ||
		   ')', ', ' ORDER BY m.ordinality), '(nobody)')
	  FROM presence.members(r) WITH ORDINALITY AS m
$$;

-- The stored room rows of a user, with times relative to base.
CREATE FUNCTION r_rows(uid text, base timestamptz)
RETURNS TABLE(room text, session_id text, meta jsonb, joined_at interval,
			  meta_sent_at interval, meta_due_at interval)
LANGUAGE sql AS $$
	SELECT m.room, m.session_id, m.meta, m.joined_at - base,
		   m.meta_sent_at - base, m.meta_due_at - base
	  FROM presence.members m WHERE m.user_id = uid
	 ORDER BY m.room, m.session_id
$$;


-- Everything presence stores, as one text, to show that something
-- changed nothing; with_seq => false leaves out the sequence.
CREATE FUNCTION r_state(with_seq boolean DEFAULT true) RETURNS text
LANGUAGE sql AS $$
	SELECT concat_ws(E'\n',
		(SELECT string_agg(u::text, ',' ORDER BY u.user_id) FROM presence.users u),
		(SELECT string_agg(s::text, ',' ORDER BY s.user_id, s.session_id)
		   FROM presence.sessions s),
		(SELECT string_agg(m::text, ',' ORDER BY m.room, m.user_id, m.session_id)
		   FROM presence.members m),
		(SELECT string_agg(t::text, ',' ORDER BY t.room, t.user_id)
		   FROM presence.typing t),
		(SELECT count(*)::text FROM presence.history),
		(SELECT last_value::text || is_called::text FROM presence.seq
		  WHERE with_seq))
$$;

-- Metadata updates are announced at once here; their throttling is in
-- 10_room_events.
SET presence.meta_interval = 0;

------------------------------------------------------------------------
-- join(): the session enters the room, with optional metadata.  It is an
-- active heartbeat of that session too: the first join creates the user
-- and the session, with the default timers.
------------------------------------------------------------------------
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 1}');
SELECT presence.join('lobby', 'alice', 'phone');
SELECT presence.join('lobby', 'bob');
SELECT presence.join('kitchen', 'alice', 'tab', '{"cursor": 7}');
COMMIT;
SELECT * FROM r_members('lobby', :'t0');
SELECT * FROM r_members('kitchen', :'t0');
SELECT presence.room_count('lobby') AS lobby, presence.room_count('kitchen') AS kitchen,
	   presence.room_count('empty') AS empty;
SELECT * FROM presence.rooms('alice');
SELECT * FROM presence.rooms('bob');
SELECT * FROM presence.rooms('nobody');
SELECT * FROM r_rows('alice', :'t0');
SELECT * FROM t_sessions('alice', :'t0');
SELECT * FROM t_sessions('bob', :'t0');
SELECT user_id, status, previous, reason, at FROM t_events(:'t0');

-- Room metadata belongs to the room, not to the session.
SELECT presence.heartbeat('alice', 'tab', meta => '{"device": "laptop"}');
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 1}');
SELECT session_id, meta FROM presence.sessions WHERE user_id = 'alice'
 ORDER BY session_id;

-- Joining again replaces the metadata (with none, if none is given), and
-- is a heartbeat: it refreshes the session's deadlines.
BEGIN;
SELECT now() AS t1 \gset
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 2, "selection": [3, 4]}');
SELECT presence.join('kitchen', 'alice', 'tab');
SELECT room, session_id, meta, joined_at = :'t0' AS joined_at_kept,
	   meta_sent_at = :'t1' AS sent_now, meta_due_at
  FROM presence.members WHERE user_id = 'alice' ORDER BY room, session_id;
SELECT session_id, away_at, end_at FROM t_sessions('alice', :'t1')
 WHERE session_id = 'tab';
COMMIT;
SELECT * FROM r_members('lobby', :'t0');

-- set_meta() replaces the metadata of a session in the room; NULL clears it.
SELECT presence.set_meta('lobby', 'alice', 'phone', '{"page": "/inbox"}');
SELECT presence.set_meta('kitchen', 'alice', 'tab', '{"stove": "on"}');
SELECT presence.set_meta('lobby', 'alice', 'tab', NULL);
SELECT room, session_id, meta FROM r_rows('alice', :'t0');

-- Joining a room changes no status: alice and bob are still online, and
-- nothing was announced since they connected.
SELECT user_id, status, sessions FROM presence.statuses(ARRAY['alice', 'bob']);
SELECT count(*) FROM t_events(now());

------------------------------------------------------------------------
-- members() lists users in the order they joined, each with their
-- sessions' metadata oldest first; a user's joined_at is that of their
-- oldest session there.
------------------------------------------------------------------------
SELECT presence.join('hall', 'zed', 'z-first');
SELECT presence.join('hall', 'amy', 'a-only');
SELECT presence.join('hall', 'zed', 'a-second');
SELECT r_who('hall');
SELECT user_id, joined_at = (metas->0->>'joined_at')::timestamptz AS oldest_session,
	   jsonb_array_length(metas) AS sessions
  FROM presence.members('hall');
-- When zed's first session leaves, zed joined after amy.
SELECT presence.leave('hall', 'zed', 'z-first');
SELECT r_who('hall');

------------------------------------------------------------------------
-- leave(): one session, or with no session all of the user's sessions.
-- Leaving ends no session; leaving a room one is not in does nothing.
------------------------------------------------------------------------
SELECT presence.join('hall', 'zed', 'z-third');
SELECT presence.leave('hall', 'zed', 'a-second');
SELECT r_who('hall');
SELECT presence.leave('hall', 'zed');
SELECT r_who('hall');
SELECT presence.room_count('hall');
SELECT * FROM presence.rooms('zed');
SELECT user_id, status, sessions FROM presence.get('zed');
SELECT presence.leave('hall', 'zed');
SELECT presence.leave('hall', 'zed', 'z-first');
SELECT presence.leave('hall', 'amy', 'no-such-session');
SELECT presence.leave('no-such-room', 'amy');
SELECT presence.leave('hall', 'nobody');
SELECT count(*) AS nobody_created FROM presence.users WHERE user_id = 'nobody';
SELECT r_who('hall');
SELECT user_id, status, reason FROM t_events(now());

------------------------------------------------------------------------
-- A session's rooms end with the session: disconnect() and the ttl.
------------------------------------------------------------------------
SELECT presence.disconnect('alice', 'tab');
SELECT r_who('lobby'), r_who('kitchen');
SELECT * FROM presence.rooms('alice');
SELECT presence.disconnect('amy');
SELECT r_who('hall');

SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT user_id, status, reason FROM t_events(now());
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('attic', 'carol', 'tab');
SELECT presence.heartbeat('carol', 'tab', ttl => '30 s');
SELECT presence.join('attic', 'carol', 'phone');
SELECT presence.heartbeat('carol', 'phone', ttl => '2 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '30 s') AS events \gset
SELECT r_who('attic');
SELECT presence.sweep(:'t0'::timestamptz + interval '2 min') AS events \gset
SELECT r_who('attic');
SELECT count(*) AS carol_rows FROM presence.members WHERE user_id = 'carol';
COMMIT;
SELECT user_id, status, previous, reason, at FROM t_events(:'t0');

------------------------------------------------------------------------
-- typing(): the user's flag in a room, until presence.typing_timeout
-- after the last renewal; typing_users() lists who types, first starter
-- first.
------------------------------------------------------------------------
SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT count(*) >= 0 FROM t_events(now());
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('den', 'dave', 'tab');
SELECT presence.join('den', 'dave', 'phone');
SELECT presence.join('den', 'erin');
SELECT presence.join('study', 'erin');
SELECT presence.typing('den', 'dave');
SELECT room, user_id, started_at - :'t0' AS started_at, until - :'t0' AS until
  FROM presence.typing ORDER BY room, user_id;
SELECT * FROM presence.typing_users('den');
COMMIT;
SELECT presence.typing('den', 'erin');
SELECT presence.typing('study', 'erin', true);
SELECT * FROM presence.typing_users('den');
SELECT * FROM presence.typing_users('study');
SELECT * FROM presence.typing_users('nowhere');

-- Renewing keeps the start and moves the end; the timeout is a setting.
SET presence.typing_timeout = '2s';
BEGIN;
SELECT now() AS t1 \gset
SELECT presence.typing('den', 'dave');
SELECT started_at = :'t0' AS same_start, until - :'t1' AS until
  FROM presence.typing WHERE room = 'den' AND user_id = 'dave';
COMMIT;
RESET presence.typing_timeout;
SELECT * FROM presence.typing_users('den');

-- Stopping by hand; stopping when not typing is fine.
SELECT presence.typing('study', 'erin', false);
SELECT presence.typing('study', 'erin', false);
SELECT * FROM presence.typing_users('study');
SELECT * FROM presence.typing_users('den');

-- The flag belongs to the user in the room: it outlives one of two
-- sessions, and ends when the user's last session there goes.
SELECT presence.leave('den', 'dave', 'tab');
SELECT * FROM presence.typing_users('den');
SELECT presence.leave('den', 'dave', 'phone');
SELECT * FROM presence.typing_users('den');
SELECT presence.disconnect('erin');
SELECT * FROM presence.typing_users('den');
SELECT count(*) AS typing_rows FROM presence.typing;

-- Stopping by the clock: the flag is gone at start + typing_timeout.
SELECT presence.disconnect('dave');
BEGIN;
SELECT now() AS t2 \gset
SELECT presence.join('study', 'erin');
SELECT presence.typing('study', 'erin');
SELECT presence.sweep(:'t2'::timestamptz + interval '4.999 s');
SELECT * FROM presence.typing_users('study');
SELECT presence.sweep(:'t2'::timestamptz + interval '5 s');
SELECT * FROM presence.typing_users('study');
SELECT count(*) AS typing_rows FROM presence.typing;
COMMIT;

-- A flag that ran out is not listed, even before a sweep removes it.
SET presence.typing_timeout = '1ms';
SELECT presence.typing('study', 'erin');
SELECT pg_sleep(0.01);
SELECT * FROM presence.typing_users('study');
SELECT count(*) AS typing_rows FROM presence.typing;
RESET presence.typing_timeout;

------------------------------------------------------------------------
-- Invisible users are absent from every room function, as if they had
-- disconnected; their rooms come back with them.
------------------------------------------------------------------------
SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('cellar', 'frank', 'tab', '{"cursor": 1}');
SELECT presence.join('cellar', 'gina');
SELECT presence.join('vault', 'frank', 'tab');
SELECT presence.typing('cellar', 'frank');
COMMIT;
SELECT presence.set_status('frank', 'invisible');
SELECT r_who('cellar'), r_who('vault');
SELECT presence.room_count('cellar') AS cellar, presence.room_count('vault') AS vault;
SELECT * FROM presence.rooms('frank');
SELECT * FROM presence.typing_users('cellar');
SELECT count(*) AS typing_rows FROM presence.typing;

-- While invisible: joining, typing and metadata are kept out of sight;
-- typing is not even recorded.
SELECT presence.join('cellar', 'frank', 'phone', '{"cursor": 2}');
SELECT presence.join('garden', 'frank', 'tab');
SELECT presence.typing('cellar', 'frank');
SELECT presence.set_meta('cellar', 'frank', 'tab', '{"cursor": 3}');
SELECT r_who('cellar'), r_who('garden');
SELECT * FROM presence.typing_users('cellar');
SELECT count(*) AS typing_rows FROM presence.typing;
SELECT room, session_id, meta FROM r_rows('frank', :'t0');

-- Back: every room, with every session and its metadata, as stored.
SELECT presence.set_status('frank', 'auto');
SELECT user_id, (SELECT jsonb_agg(e - 'joined_at' ORDER BY o)
				   FROM jsonb_array_elements(metas) WITH ORDINALITY AS x(e, o)) AS metas
  FROM presence.members('cellar');
SELECT * FROM presence.rooms('frank');
SELECT presence.room_count('cellar') AS cellar, presence.room_count('garden') AS garden;

------------------------------------------------------------------------
-- broadcast() is stored nowhere.
------------------------------------------------------------------------
SELECT r_state(with_seq => false) AS before_broadcast \gset
SELECT presence.broadcast('cellar', '{"kind": "ping"}');
SELECT presence.broadcast('no-members-here', '[1, 2, 3]');
SELECT presence.broadcast('cellar', '"just a string"');
SELECT r_state(with_seq => false) = :'before_broadcast' AS nothing_stored;

------------------------------------------------------------------------
-- room_channel(): the status channel, a colon and the room, when that
-- fits NOTIFY's 63 bytes; past that, as much of it as fits, '~' and 24 hex
-- digits of the room's SHA-256.
------------------------------------------------------------------------
SELECT presence.room_channel('lobby');
SELECT presence.room_channel('Ünïcödé room');
SELECT presence.room_channel(repeat('a', 54)) AS ch,
	   octet_length(presence.room_channel(repeat('a', 54))) AS bytes;
SELECT presence.room_channel(repeat('a', 55)) AS ch,
	   octet_length(presence.room_channel(repeat('a', 55))) AS bytes;
SELECT presence.room_channel(repeat('b', 200)) AS ch,
	   octet_length(presence.room_channel(repeat('b', 200))) AS bytes;
-- The hash is the start of the room's SHA-256, so it is stable.
SELECT presence.room_channel(repeat('a', 55)) =
	   'presence:' || repeat('a', 29) || '~' ||
	   left(encode(sha256(convert_to(repeat('a', 55), 'UTF8')), 'hex'), 24) AS is_sha256,
	   presence.room_channel(repeat('a', 55)) = presence.room_channel(repeat('a', 55)) AS stable;
-- Long rooms that share their start get different channels.
SELECT presence.room_channel(repeat('x', 60) || '1') <>
	   presence.room_channel(repeat('x', 60) || '2') AS distinct_channels,
	   left(presence.room_channel(repeat('x', 60) || '1'), 39) =
	   left(presence.room_channel(repeat('x', 60) || '2'), 39) AS same_prefix;
-- Multibyte names are cut at a character boundary.
SELECT presence.room_channel(repeat('é', 40)) AS ch,
	   octet_length(presence.room_channel(repeat('é', 40))) AS bytes;
-- A short room whose name looks like the end of a long room's channel
-- must not share that channel: the long room's events would reach it.
SELECT presence.room_channel(repeat('a', 60)) AS long_channel \gset
SELECT substr(:'long_channel', 10) AS lookalike \gset
SELECT octet_length(:'lookalike') AS lookalike_bytes,
	   presence.room_channel(:'lookalike') <> :'long_channel' AS distinct_channels;
-- The prefix follows presence.channel.
SET presence.channel = 'chat';
SELECT presence.room_channel('lobby');
RESET presence.channel;

------------------------------------------------------------------------
-- presence.join_check: a function (room, user_id) that join() calls as
-- the calling role; anything but true refuses the join with 42501 and
-- changes nothing.
------------------------------------------------------------------------
CREATE FUNCTION public.r_join_check(room text, user_id text)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'join_check(%, %) as %', room, user_id,
		CASE WHEN current_user = session_user THEN 'the session user'
			 ELSE current_user END;
	RETURN CASE WHEN room LIKE 'secret%' THEN user_id = 'hank'
				WHEN room = 'undecided' THEN NULL
				ELSE true END;
END
$$;
CREATE FUNCTION public.r_join_check_int(room text, user_id text)
RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT count(*) >= 0 FROM t_events(now());

-- Unset: anyone may join.
SHOW presence.join_check;
SELECT presence.join('secret-1', 'ivan');
SELECT presence.leave('secret-1', 'ivan');

SET presence.join_check = 'public.r_join_check';
SELECT presence.join('secret-1', 'hank', 'tab', '{"a": 1}');
SELECT r_state() AS before_check \gset
SELECT t_err($q$SELECT presence.join('secret-1', 'mallory', 'tab', '{"a": 1}')$q$);
SELECT t_err($q$SELECT presence.join('undecided', 'mallory')$q$);
SELECT t_err($q$SELECT presence.join('undecided', 'hank', 'tab')$q$);
SELECT r_state() = :'before_check' AS nothing_changed;
SELECT count(*) AS mallory_created FROM presence.users WHERE user_id = 'mallory';
SELECT r_who('secret-1'), r_who('undecided');
SELECT presence.join('open', 'ivan');
SELECT r_who('open');

-- It runs as the role that called join(), not as the extension's owner.
CREATE ROLE regress_room_app;
GRANT USAGE ON SCHEMA presence TO regress_room_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO regress_room_app;
SET ROLE regress_room_app;
SELECT presence.join('open', 'judy');
SELECT t_err($q$SELECT presence.join('secret-2', 'judy')$q$);
-- Only a superuser may set it.
SELECT t_err($q$SET presence.join_check = ''$q$, false);
RESET ROLE;
SHOW presence.join_check;

-- A function that does not exist, or does not return boolean.
SET presence.join_check = 'public.r_no_such_check';
SELECT t_err($q$SELECT presence.join('open', 'kate')$q$);
SET presence.join_check = 'public.r_join_check_int';
SELECT t_err($q$SELECT presence.join('open', 'kate')$q$);
SELECT count(*) AS kate_created FROM presence.users WHERE user_id = 'kate';
RESET presence.join_check;
SELECT presence.join('secret-3', 'kate');
SELECT r_who('secret-3');
DROP FUNCTION public.r_join_check(text, text);
DROP FUNCTION public.r_join_check_int(text, text);

------------------------------------------------------------------------
-- Bad input: a clear error with a fitting SQLSTATE, and nothing changed.
------------------------------------------------------------------------
SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 1}');
SELECT presence.join('lobby', 'bob', 'tab');
SELECT presence.join('kitchen', 'carol');
SELECT presence.typing('lobby', 'alice');
SELECT r_state() AS before_errors \gset

-- room: not NULL, 1 to 200 bytes, for every function that takes one
SELECT t_err($q$SELECT presence.join(NULL, 'alice')$q$);
SELECT t_err($q$SELECT presence.join('', 'alice')$q$);
SELECT t_err($q$SELECT presence.join(repeat('r', 201), 'alice')$q$);
SELECT t_err($q$SELECT presence.join(repeat('é', 101), 'alice')$q$);
SELECT t_err($q$SELECT presence.leave(NULL, 'alice')$q$);
SELECT t_err($q$SELECT presence.leave('', 'alice')$q$);
SELECT t_err($q$SELECT presence.leave(repeat('r', 201), 'alice')$q$);
SELECT t_err($q$SELECT presence.set_meta(NULL, 'alice', 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta('', 'alice', 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta(repeat('r', 201), 'alice', 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.typing(NULL, 'alice')$q$);
SELECT t_err($q$SELECT presence.typing('', 'alice')$q$);
SELECT t_err($q$SELECT presence.typing(repeat('r', 201), 'alice')$q$);
SELECT t_err($q$SELECT presence.broadcast(NULL, '{}')$q$);
SELECT t_err($q$SELECT presence.broadcast('', '{}')$q$);
SELECT t_err($q$SELECT presence.broadcast(repeat('r', 201), '{}')$q$);
SELECT t_err($q$SELECT presence.room_channel(NULL)$q$);
SELECT t_err($q$SELECT presence.room_channel('')$q$);
SELECT t_err($q$SELECT presence.room_channel(repeat('r', 201))$q$);

-- user and session ids, as everywhere
SELECT t_err($q$SELECT presence.join('lobby', NULL)$q$);
SELECT t_err($q$SELECT presence.join('lobby', '')$q$);
SELECT t_err($q$SELECT presence.join('lobby', repeat('u', 257))$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', NULL)$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', '')$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', repeat('s', 257))$q$);
SELECT t_err($q$SELECT presence.leave('lobby', NULL)$q$);
SELECT t_err($q$SELECT presence.leave('lobby', 'alice', '')$q$);
SELECT t_err($q$SELECT presence.leave('lobby', 'alice', repeat('s', 257))$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', NULL, 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'alice', NULL, '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'alice', '', '{}')$q$);
SELECT t_err($q$SELECT presence.typing('lobby', NULL)$q$);
SELECT t_err($q$SELECT presence.typing('lobby', '')$q$);

-- meta: a JSON object of at most 2048 bytes
SELECT t_err($q$SELECT presence.join('lobby', 'alice', 'tab', '[1]')$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', 'tab', 'null')$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', 'tab', '"text"')$q$);
SELECT t_err($q$SELECT presence.join('lobby', 'alice', 'tab', jsonb_build_object('k', repeat('x', 2040)))$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'alice', 'tab', '42')$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'alice', 'tab', jsonb_build_object('k', repeat('x', 2040)))$q$);

-- broadcast payload: not NULL, JSON text of at most 4096 bytes
SELECT t_err($q$SELECT presence.broadcast('lobby', NULL)$q$);
SELECT t_err($q$SELECT presence.broadcast('lobby', jsonb_build_object('k', repeat('x', 4088)))$q$);

-- typing: is_typing must be given
SELECT t_err($q$SELECT presence.typing('lobby', 'alice', NULL)$q$);

-- set_meta and typing need the session or user in the room
SELECT t_err($q$SELECT presence.set_meta('kitchen', 'alice', 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'alice', 'phone', '{}')$q$);
SELECT t_err($q$SELECT presence.set_meta('lobby', 'nobody', 'tab', '{}')$q$);
SELECT t_err($q$SELECT presence.typing('kitchen', 'alice')$q$);
SELECT t_err($q$SELECT presence.typing('kitchen', 'alice', false)$q$);
SELECT t_err($q$SELECT presence.typing('lobby', 'nobody')$q$);

-- Nothing changed: no user, session, member, typing flag, history row or
-- seq.
SELECT r_state() = :'before_errors' AS nothing_changed;
SELECT count(*) AS nobody_created FROM presence.users WHERE user_id = 'nobody';

-- Limits are inclusive.
\set VERBOSITY terse
SELECT presence.join(repeat('r', 200), repeat('u', 256), repeat('s', 256),
					 jsonb_build_object('k', repeat('x', 2039)));
SELECT presence.join(repeat('é', 100), 'alice', 'tab');
SELECT presence.set_meta(repeat('r', 200), repeat('u', 256), repeat('s', 256),
						 jsonb_build_object('k', repeat('y', 2039)));
SELECT presence.typing(repeat('r', 200), repeat('u', 256));
SELECT presence.broadcast(repeat('r', 200), jsonb_build_object('k', repeat('x', 4087)));
SELECT octet_length(presence.room_channel(repeat('r', 200))) AS channel_bytes;
SELECT presence.room_count(repeat('r', 200)), presence.room_count(repeat('é', 100));
\set VERBOSITY default

RESET presence.meta_interval;
SELECT presence.disconnect(user_id) FROM presence.users
 WHERE status <> 'offline' ORDER BY user_id;
SELECT count(*) AS members_left FROM presence.members;
SELECT count(*) AS typing_left FROM presence.typing;
DROP OWNED BY regress_room_app;
DROP ROLE regress_room_app;
SELECT count(*) >= 0 FROM t_events(now());
