--
-- Room events, as a LISTEN session receives them (through dblink): join,
-- leave, update, typing, broadcast, and status events in rooms; metadata
-- throttling; invisible users; the size of events at the limits.
--
SELECT dblink_connect('rooms',
	format('dbname=%s port=%s host=%s', current_database(),
		   current_setting('port'),
		   split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('rooms', 'LISTEN presence');
SELECT dblink_exec('rooms', 'LISTEN r_sentinel');

-- Listen to the channels of these rooms too.
CREATE FUNCTION r_listen(VARIADIC rooms text[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY rooms LOOP
		PERFORM dblink_exec('rooms', format('LISTEN %I', presence.room_channel(r)));
	END LOOP;
END
$$;

-- The last seq drawn.
CREATE FUNCTION r_seq() RETURNS bigint
LANGUAGE sql AS $$
	SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM presence.seq
$$;

-- Everything the listener has been sent so far, oldest first, taken out
-- of the inbox.  The listener notifies itself on r_sentinel and collects
-- until that arrives: notifications are delivered in commit order, so by
-- then every notification committed before this call has arrived too.
CREATE TABLE r_inbox (n serial, channel text, payload text);
CREATE FUNCTION r_received() RETURNS SETOF r_inbox
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
	PERFORM dblink_exec('rooms', 'NOTIFY r_sentinel');
	LOOP
		INSERT INTO r_inbox (channel, payload)
			SELECT notify_name, extra FROM dblink_get_notify('rooms');
		EXIT WHEN EXISTS (SELECT FROM r_inbox WHERE channel = 'r_sentinel')
			OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.01);
	END LOOP;
	RETURN QUERY
		WITH d AS (DELETE FROM r_inbox RETURNING *)
		SELECT * FROM d WHERE d.channel <> 'r_sentinel' ORDER BY d.n;
END
$$;

-- The notifications received, with seq relative to base_seq and times to
-- base.  detail is the rest of the payload; "room" is left out when the
-- channel is that room's.  keys lists the payload's keys as written.
CREATE FUNCTION r_notified(base timestamptz, base_seq bigint)
RETURNS TABLE(channel text, seq bigint, event text, user_id text,
			  detail jsonb, at interval, keys text)
LANGUAGE sql AS $$
	SELECT i.channel,
		   (j->>'seq')::bigint - base_seq,
		   j->>'event',
		   j->>'user_id',
		   j - 'seq' - 'event' - 'user_id' - 'at' - 'last_active'
			 - CASE WHEN NOT j ? 'room' THEN ''
					WHEN i.channel = presence.room_channel(j->>'room') THEN 'room'
					ELSE '' END
			 || CASE WHEN j ? 'last_active'
					 THEN jsonb_build_object('last_active',
							((j->>'last_active')::timestamptz - base)::text)
					 ELSE '{}' END,
		   (j->>'at')::timestamptz - base,
		   (SELECT string_agg(k, ',' ORDER BY o)
			  FROM json_object_keys(i.payload::json) WITH ORDINALITY AS x(k, o))
	  FROM r_received() i, LATERAL (SELECT i.payload::jsonb AS j) p
	 ORDER BY i.n
$$;

-- End every session, so that sweeps into the future meet only what a
-- test sets up; the caller then drains what that announced.
CREATE FUNCTION r_end_all() RETURNS bigint
LANGUAGE sql AS $$
	SELECT count(presence.disconnect(s.user_id))
	  FROM (SELECT DISTINCT user_id FROM presence.sessions ORDER BY 1) s
$$;

-- Every metadata update is announced at once, except where throttling is
-- tested.
SET presence.meta_interval = 0;
SELECT r_listen('lobby', 'kitchen', 'cellar', 'vault');
SELECT count(*) FROM r_received();

------------------------------------------------------------------------
-- A user's first session in a room announces a join; other sessions
-- entering are updates.  Status events keep their seq on every channel,
-- the same as their history row.
------------------------------------------------------------------------
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 1}');
SELECT presence.join('lobby', 'alice', 'phone', '{"cursor": 9}');
SELECT presence.join('kitchen', 'alice', 'phone');
SELECT presence.join('lobby', 'bob');
COMMIT;
SELECT * FROM r_notified(:'t0', :s0);
SELECT seq - :s0 AS seq, user_id, status, reason FROM presence.history
 WHERE seq > :s0 ORDER BY seq;

------------------------------------------------------------------------
-- Metadata changes and sessions leaving are updates; the last session
-- leaving is a leave.
------------------------------------------------------------------------
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_meta('lobby', 'alice', 'tab', '{"cursor": 2}');
SELECT presence.join('lobby', 'alice', 'tab', '{"cursor": 3}');
SELECT presence.set_meta('lobby', 'alice', 'phone', NULL);
SELECT presence.leave('lobby', 'alice', 'tab');
SELECT presence.leave('lobby', 'alice', 'phone');
SELECT presence.leave('lobby', 'alice');
SELECT presence.leave('lobby', 'nobody');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- leave() without a session: the user's sessions go, the last as a leave;
-- a typing flag there stops first.
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'carol', 'tab');
SELECT presence.join('lobby', 'carol', 'phone');
SELECT presence.typing('lobby', 'carol');
SELECT presence.leave('lobby', 'carol');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

------------------------------------------------------------------------
-- A session's rooms end with it.  disconnect(): typing stops, then the
-- leave, with reason disconnect, in each room; a session that leaves
-- while another stays is an update.
------------------------------------------------------------------------
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('kitchen', 'alice', 'tab');
SELECT presence.join('kitchen', 'bob');
SELECT presence.typing('kitchen', 'bob');
SELECT presence.disconnect('alice', 'phone');
SELECT presence.disconnect('bob');
SELECT presence.disconnect('alice');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- The ttl: a session that times out leaves its rooms at its end, with
-- reason timeout, then the user goes offline.
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'dave', 'tab');
SELECT presence.join('kitchen', 'dave', 'tab');
SELECT presence.join('lobby', 'dave', 'phone');
SELECT presence.heartbeat('dave', 'tab', ttl => '30 s');
SELECT presence.heartbeat('dave', 'phone', ttl => '2 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '30 s') AS events \gset
SELECT presence.sweep(:'t0'::timestamptz + interval '2 min') AS events \gset
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- A typing flag still running when the session times out ends with it,
-- at the session's end, before the leave: whether the sweep comes before
-- the flag would have run out ...
SET presence.typing_timeout = '10 min';
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'erin', 'tab');
SELECT presence.heartbeat('erin', 'tab', ttl => '1 min');
SELECT presence.typing('lobby', 'erin');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 min') AS events \gset
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);
-- ... or after.
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'erin', 'tab');
SELECT presence.heartbeat('erin', 'tab', ttl => '1 min');
SELECT presence.typing('lobby', 'erin');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour') AS events \gset
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);
RESET presence.typing_timeout;

-- sweep() counts every event it makes, in rooms too.
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'erin', 'tab');
SELECT presence.join('lobby', 'erin', 'phone');
SELECT presence.heartbeat('erin', 'tab', ttl => '30 s');
SELECT presence.heartbeat('erin', 'phone', ttl => '1 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '30 s') AS update_left;
SELECT presence.sweep(:'t0'::timestamptz + interval '1 min') AS leave_and_offline;
COMMIT;
SELECT channel, event, detail FROM r_notified(:'t0', 0);

------------------------------------------------------------------------
-- typing(): true when it starts; renewing says nothing; false when it
-- stops, with reason timeout when the clock stops it (dated at its end).
------------------------------------------------------------------------
SET presence.typing_timeout = '3s';
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'frank');
SELECT presence.join('kitchen', 'frank');
SELECT presence.typing('lobby', 'frank');
SELECT presence.typing('lobby', 'frank');
SELECT presence.typing('lobby', 'frank', true);
SELECT presence.typing('kitchen', 'frank');
SELECT presence.typing('lobby', 'frank', false);
SELECT presence.typing('lobby', 'frank', false);
SELECT presence.typing('lobby', 'frank');
SELECT presence.sweep(:'t0'::timestamptz + interval '2.999 s');
SELECT presence.sweep(:'t0'::timestamptz + interval '3 s');
COMMIT;
SELECT * FROM r_notified(:'t0', :s0);

-- A flag that ran out but was not swept yet is stopped (timeout) before
-- a new start is announced.
SET presence.typing_timeout = '1ms';
SELECT presence.typing('lobby', 'frank');
SELECT pg_sleep(0.01);
SELECT presence.typing('lobby', 'frank');
SELECT channel, event, user_id, detail FROM r_notified(now(), 0);
RESET presence.typing_timeout;

------------------------------------------------------------------------
-- Status events reach every room the user is in, with the same seq as on
-- the status channel and in history: idle, busy with a message, a new
-- message, back to auto.  An active join of an idle user is a status
-- change too, announced before the join itself.
------------------------------------------------------------------------
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'gina', 'tab');
SELECT presence.join('kitchen', 'gina', 'tab');
SELECT presence.heartbeat('gina', 'tab', ttl => '1 hour', away_after => '10 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '10 min');
SELECT presence.set_status('gina', 'busy', 'In a meeting');
SELECT presence.set_status('gina', 'busy', 'Still in a meeting');
SELECT presence.set_status('gina', 'auto');
COMMIT;
SELECT * FROM r_notified(:'t0', :s0);
SELECT seq - :s0 AS seq, status, reason, message FROM presence.history
 WHERE seq > :s0 ORDER BY seq;

SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('gina', 'tab', ttl => '1 hour', away_after => '0');
SELECT presence.join('cellar', 'gina', 'tab');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();


------------------------------------------------------------------------
-- Metadata updates are throttled per session to one per
-- presence.meta_interval: updates within the interval of the last one
-- announced are held back, and the latest is announced when the interval
-- ends (sweep(as_of) sends it, dated at that time).  A join counts as an
-- announcement.
------------------------------------------------------------------------
SET presence.meta_interval = '1s';
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'hank', 'tab', '{"v": 0}');
SELECT presence.set_meta('lobby', 'hank', 'tab', '{"v": 1}');
SELECT presence.set_meta('lobby', 'hank', 'tab', '{"v": 2}');
SELECT meta, meta_sent_at - :'t0' AS sent_at, meta_due_at - :'t0' AS due_at
  FROM presence.members WHERE user_id = 'hank';
SELECT presence.sweep(:'t0'::timestamptz + interval '0.999 s');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 s');
SELECT meta, meta_sent_at - :'t0' AS sent_at, meta_due_at - :'t0' AS due_at
  FROM presence.members WHERE user_id = 'hank';
-- the interval runs from the trailing update
SELECT presence.set_meta('lobby', 'hank', 'tab', '{"v": 3}');
SELECT presence.join('lobby', 'hank', 'tab', '{"v": 4}');
SELECT presence.sweep(:'t0'::timestamptz + interval '2 s');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- Once the interval is over, an update is announced at once.  Each
-- session has its own interval.
SET presence.meta_interval = '5ms';
SELECT presence.join('lobby', 'hank', 'phone', '{"p": 0}');
SELECT presence.join('lobby', 'hank', 'laptop', '{"l": 0}');
SELECT count(*) AS updates_joined FROM r_received();
SELECT pg_sleep(0.01);
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_meta('lobby', 'hank', 'phone', '{"p": 1}');
SELECT presence.set_meta('lobby', 'hank', 'phone', '{"p": 2}');
SELECT presence.set_meta('lobby', 'hank', 'laptop', '{"l": 1}');
SELECT presence.sweep(:'t0'::timestamptz + interval '5 ms');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- A held-back update dies with its session: leaving the room, or the
-- session ending, before it is due drops it, whenever the sweep runs.
SET presence.meta_interval = '10 min';
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('lobby', 'hank', 'tab', '{"v": 0}');
SELECT presence.join('lobby', 'hank', 'phone', '{"p": 0}');
SELECT presence.set_meta('lobby', 'hank', 'tab', '{"v": 1}');
SELECT presence.set_meta('lobby', 'hank', 'phone', '{"p": 1}');
SELECT presence.leave('lobby', 'hank', 'tab');
SELECT presence.heartbeat('hank', 'phone', ttl => '1 min');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour') AS events \gset
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);
SET presence.meta_interval = 0;

------------------------------------------------------------------------
-- Invisible users are absent from room events exactly as if they had
-- disconnected: going invisible is a leave with reason disconnect (after
-- their typing stops), nothing they do while invisible is announced, and
-- coming back is a join.
------------------------------------------------------------------------
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.join('cellar', 'ivan', 'tab', '{"cursor": 1}');
SELECT presence.join('cellar', 'ivan', 'phone', '{"cursor": 2}');
SELECT presence.join('vault', 'ivan', 'tab');
SELECT presence.join('cellar', 'judy');
SELECT presence.heartbeat('judy', ttl => '1 day', away_after => '1 day');
SELECT presence.typing('cellar', 'ivan');
SELECT presence.set_status('ivan', 'invisible');
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.typing('cellar', 'ivan');
SELECT presence.typing('cellar', 'ivan', false);
SELECT presence.set_meta('cellar', 'ivan', 'tab', '{"cursor": 3}');
SELECT presence.join('cellar', 'ivan', 'laptop', '{"cursor": 4}');
SELECT presence.leave('cellar', 'ivan', 'phone');
SELECT presence.join('vault', 'ivan', 'phone');
SELECT presence.leave('vault', 'ivan', 'tab');
SELECT presence.join('lobby', 'ivan');
SELECT presence.leave('lobby', 'ivan');
SELECT presence.heartbeat('ivan', 'tab');
SELECT presence.set_status('ivan', 'invisible', 'Hiding');
COMMIT;
SELECT count(*) AS announced FROM r_received();

-- Back: a join in every room (with the oldest session there and its
-- metadata), and the other sessions there as updates.
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_status('ivan', 'auto');
COMMIT;
-- (last_active is from before ivan went invisible)
SELECT channel, seq, event, user_id, detail - 'last_active' AS detail, at
  FROM r_notified(:'t0', :s0);

-- Invisible until a time: the join comes when it runs out.
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('ivan', 'tab', ttl => '1 day');
SELECT presence.heartbeat('ivan', 'laptop', ttl => '1 day');
SELECT presence.set_status('ivan', 'invisible', NULL, :'t0'::timestamptz + interval '1 hour');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 hour') AS events \gset
COMMIT;
SELECT channel, seq, event, user_id, detail, at FROM r_notified(:'t0', :s0);

-- An invisible user's held-back metadata update is not announced either.
SET presence.meta_interval = '1 min';
SELECT r_seq() AS s0 \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.set_meta('cellar', 'ivan', 'tab', '{"cursor": 5}');
SELECT presence.set_meta('cellar', 'ivan', 'tab', '{"cursor": 6}');
SELECT presence.set_status('ivan', 'invisible');
SELECT presence.sweep(:'t0'::timestamptz + interval '1 min');
COMMIT;
SELECT channel, seq, event, user_id, detail - 'last_active' AS detail, at
  FROM r_notified(:'t0', :s0);
SET presence.meta_interval = 0;
SELECT r_end_all();
SELECT count(*) >= 0 AS drained FROM r_received();


------------------------------------------------------------------------
-- broadcast(): a pass-through payload, with no user; stored nowhere and,
-- like every event, sent only if the transaction commits.
------------------------------------------------------------------------
SELECT r_seq() AS s0 \gset
SELECT count(*) AS history_before FROM presence.history \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.broadcast('lobby', '{"kind": "reaction", "emoji": "👍"}');
SELECT presence.broadcast('kitchen', '[1, "two", null]');
SELECT presence.broadcast('kitchen', 'null');
SAVEPOINT s;
SELECT presence.broadcast('lobby', '{"kind": "rolled back"}');
ROLLBACK TO SAVEPOINT s;
COMMIT;
BEGIN;
SELECT presence.broadcast('lobby', '{"kind": "rolled back"}');
SELECT presence.join('lobby', 'kate');
ROLLBACK;
SELECT * FROM r_notified(:'t0', :s0);
SELECT count(*) - :history_before AS history_rows FROM presence.history;

------------------------------------------------------------------------
-- Every event fits NOTIFY's 8000 bytes, even at the limits with the worst
-- escaping: ids, room and message of control characters (6 bytes each in
-- JSON), metadata and payload at their limits.
------------------------------------------------------------------------
SELECT repeat(chr(1), 200) AS big_room, repeat(chr(1), 256) AS big_user,
	   repeat(chr(1), 255) || 'a' AS big_s1, repeat(chr(1), 255) || 'b' AS big_s2,
	   jsonb_build_object('k', repeat(chr(1), 339) || 'xxxxx') AS big_meta,
	   jsonb_build_object('k', repeat(chr(2), 339) || 'xxxxx') AS big_meta2,
	   jsonb_build_object('k', repeat(chr(1), 681) || 'x') AS big_payload,
	   repeat(chr(1), 256) AS big_message \gset
SELECT octet_length(:'big_meta') AS meta_bytes, octet_length(:'big_meta2') AS meta2_bytes,
	   octet_length(:'big_payload') AS payload_bytes;
SELECT r_listen(:'big_room');
BEGIN;
SELECT presence.join(:'big_room', :'big_user', :'big_s1', :'big_meta');
SELECT presence.join(:'big_room', :'big_user', :'big_s2', :'big_meta');
SELECT presence.set_meta(:'big_room', :'big_user', :'big_s1', :'big_meta2');
SELECT presence.typing(:'big_room', :'big_user');
SELECT presence.set_status(:'big_user', 'busy', :'big_message');
SELECT presence.broadcast(:'big_room', :'big_payload');
SELECT presence.leave(:'big_room', :'big_user', :'big_s2');
SELECT presence.typing(:'big_room', :'big_user', false);
SELECT presence.disconnect(:'big_user');
COMMIT;
-- (bytes leaves out the seq and the times, whose length varies)
SELECT CASE WHEN i.channel = presence.room_channel(:'big_room') THEN 'room'
			ELSE i.channel END AS channel,
	   j->>'event' AS event, COALESCE(j->>'change', j->>'reason') AS what,
	   octet_length(i.payload) - octet_length(j->>'seq') - octet_length(j->>'at')
		 - COALESCE(octet_length(j->>'last_active'), 0) AS bytes,
	   octet_length(i.payload) < 8000 AS fits,
	   j->>'user_id' IS NOT DISTINCT FROM
		 CASE WHEN j->>'event' <> 'broadcast' THEN :'big_user' END AS user_ok,
	   (j->>'room') IS NOT DISTINCT FROM
		 CASE WHEN i.channel <> 'presence' THEN :'big_room' END AS room_ok,
	   j->>'session_id' IN (:'big_s1', :'big_s2') AS session_ok,
	   CASE WHEN j->'meta' <> 'null' THEN j->'meta' IN (:'big_meta', :'big_meta2')
			WHEN j ? 'payload' THEN j->'payload' = :'big_payload'
			WHEN j->>'message' IS NOT NULL THEN j->>'message' = :'big_message'
	   END AS content_ok
  FROM r_received() i, LATERAL (SELECT i.payload::jsonb AS j) p
 ORDER BY i.n;

SELECT r_end_all();
SELECT dblink_disconnect('rooms');
RESET presence.meta_interval;
SELECT count(*) >= 0 FROM t_events(now());
