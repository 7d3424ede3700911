-- reference for status_presence.sql: the same two changes, each a plain
-- single-row UPDATE plus pg_notify in one transaction
\set uid random(1, :users / 8) * 8 + :client_id
BEGIN;
UPDATE bench.status_ref SET status = 'online', since = now() WHERE user_id = 'c' || :uid;
SELECT pg_notify('status_ref', json_build_object('user_id', 'c' || :uid, 'status', 'online', 'previous', 'offline', 'at', now())::text);
END;
BEGIN;
UPDATE bench.status_ref SET status = 'offline', since = now() WHERE user_id = 'c' || :uid;
SELECT pg_notify('status_ref', json_build_object('user_id', 'c' || :uid, 'status', 'offline', 'previous', 'online', 'at', now())::text);
END;
