-- the naive upsert heartbeat (bench/naive.sql) of the same random user
\set uid random(1, :users)
SELECT naive.heartbeat('u' || :uid, 's1');
