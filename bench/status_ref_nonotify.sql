-- diagnostic for section 3: status_ref.sql without pg_notify, so the cost
-- of the global lock that committing a NOTIFY takes shows up as the
-- difference between the two
\set uid random(1, :users / 8) * 8 + :client_id
BEGIN;
UPDATE bench.status_ref SET status = 'online', since = now() WHERE user_id = 'c' || :uid;
END;
BEGIN;
UPDATE bench.status_ref SET status = 'offline', since = now() WHERE user_id = 'c' || :uid;
END;
