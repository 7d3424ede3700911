--
-- NOTIFY payloads, as a LISTEN session receives them (through dblink), and
-- what is not announced: rolled-back work, prepared transactions.
--
SELECT dblink_connect('listener',
	format('dbname=%s port=%s host=%s', current_database(),
		   current_setting('port'),
		   split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('listener', 'LISTEN presence');

-- Notifications reach the listener asynchronously: collect them into an
-- inbox until as many as expected have arrived (or 30 seconds pass).
CREATE TABLE t_inbox (n serial, channel text, payload text);
CREATE FUNCTION t_collect(expected integer) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + interval '30 s';
BEGIN
	LOOP
		INSERT INTO t_inbox (channel, payload)
			SELECT notify_name, extra FROM dblink_get_notify('listener');
		EXIT WHEN (SELECT count(*) FROM t_inbox) >= expected
			OR clock_timestamp() > deadline;
		PERFORM pg_sleep(0.01);
	END LOOP;
END
$$;

-- The expected number of payloads, taken out of the inbox, with times
-- relative to base and seq to base_seq.
CREATE FUNCTION t_notified(expected integer, base timestamptz,
						   base_seq bigint DEFAULT 0)
RETURNS TABLE(channel text, seq bigint, payload jsonb, at interval,
			  last_active interval, keys text)
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM t_collect(expected);
	RETURN QUERY
	WITH n AS (
		DELETE FROM t_inbox RETURNING t_inbox.n, t_inbox.channel,
			t_inbox.payload::jsonb AS j, t_inbox.payload AS raw
	)
	SELECT n.channel,
		   (j->>'seq')::bigint - base_seq,
		   j - 'seq' - 'at' - 'last_active',
		   (j->>'at')::timestamptz - base,
		   (j->>'last_active')::timestamptz - base,
		   -- the payload's keys in the order they are written
		   (SELECT string_agg(m[1], ',' ORDER BY ord)
			  FROM regexp_matches(raw, '"(\w+)":', 'g') WITH ORDINALITY AS r(m, ord)
			 WHERE m[1] IN ('seq', 'event', 'user_id', 'status', 'previous',
							'reason', 'message', 'last_active', 'at'))
	  FROM n ORDER BY n.n;
END
$$;

SELECT COALESCE(max(seq), 0) AS s0 FROM presence.history \gset
BEGIN;
SELECT now() AS t0 \gset
SELECT presence.heartbeat('alice', 'tab', ttl => '10 min');
SELECT presence.set_status('alice', 'busy', E'Quote " backslash \\ tab \t done');
SELECT presence.sweep(:'t0'::timestamptz + interval '10 min');
COMMIT;
SELECT * FROM t_notified(3, :'t0', :s0);

-- The same changes, as history rows with the same seq.
SELECT h.seq - :s0 AS seq, h.user_id, h.reason FROM presence.history h
 WHERE h.seq > :s0 ORDER BY h.seq;
SELECT * FROM t_events(:'t0');

-- Times are ISO 8601 with a UTC offset, whatever the DateStyle.
SET DateStyle = 'SQL, DMY';
SET TimeZone = 'Asia/Kolkata';
SELECT presence.heartbeat('bob');
SELECT t_collect(1);
SELECT payload::jsonb->>'user_id' AS user_id,
	   payload::jsonb->>'at' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+05:30$' AS iso_8601
  FROM t_inbox;
DELETE FROM t_inbox;
RESET DateStyle;
RESET TimeZone;
SELECT presence.disconnect('bob');
SELECT count(*) FROM t_notified(1, now());

-- A rolled-back transaction or subtransaction announces nothing and
-- leaves no history; the seq it would have used is not consumed.
SELECT max(seq) AS seq_before FROM presence.history \gset
BEGIN;
SELECT presence.heartbeat('rb_carol');
ROLLBACK;
BEGIN;
SELECT presence.heartbeat('rb_dave');
SAVEPOINT s;
SELECT presence.heartbeat('rb_erin');
SAVEPOINT s2;
SELECT presence.heartbeat('rb_frank');
RELEASE SAVEPOINT s2;
ROLLBACK TO SAVEPOINT s;
SELECT presence.heartbeat('rb_gina');
COMMIT;
SELECT seq - :seq_before AS seq, user_id, reason FROM presence.history
 WHERE seq > :seq_before ORDER BY seq;
SELECT payload->>'user_id' AS notified FROM t_notified(2, now()) ORDER BY seq;
SELECT count(*) FROM presence.users WHERE user_id IN ('rb_carol', 'rb_erin', 'rb_frank');

-- Procedures that commit and roll back, and exception blocks, follow the
-- same rule: only what commits is announced.
CREATE PROCEDURE t_proc() LANGUAGE plpgsql AS $$
BEGIN
	PERFORM presence.heartbeat('proc_committed');
	COMMIT;
	PERFORM presence.heartbeat('proc_rolled_back');
	ROLLBACK;
	PERFORM presence.heartbeat('proc_last');
END
$$;
CALL t_proc();
DO $$
BEGIN
	BEGIN
		PERFORM presence.heartbeat('exc_caught');
		RAISE EXCEPTION 'boom';
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	PERFORM presence.heartbeat('exc_after');
END
$$;
SELECT payload->>'user_id' AS notified FROM t_notified(3, now()) ORDER BY seq;
SELECT user_id, reason FROM t_events(now());
DROP PROCEDURE t_proc();

-- Presence changes cannot be part of a prepared transaction.
BEGIN;
SELECT presence.heartbeat('rb_henry');
PREPARE TRANSACTION 'presence_test';
SELECT count(*) FROM presence.users WHERE user_id = 'rb_henry';

-- presence.channel (superuser only) moves events to another channel.
SET presence.channel = 'presence_other';
SELECT dblink_exec('listener', 'LISTEN presence_other');
SELECT presence.heartbeat('ivan');
SELECT channel, payload->>'user_id' AS user_id FROM t_notified(1, now());
RESET presence.channel;
SET presence.channel = '';
SELECT set_config('presence.channel', repeat('c', 63), false) IS NOT NULL AS ok_63;
SELECT set_config('presence.channel', repeat('c', 64), false);
RESET presence.channel;

SELECT dblink_disconnect('listener');
SELECT presence.disconnect(user_id) FROM presence.users WHERE status <> 'offline' ORDER BY user_id;
SELECT count(*) >= 0 FROM t_events(now());
