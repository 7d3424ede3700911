-- presence.heartbeat_many: one prepared batch of 1000 existing sessions
\set b random(1, :batches)
SELECT presence.heartbeat_many(user_ids, session_ids) FROM bench.batches WHERE id = :b;
