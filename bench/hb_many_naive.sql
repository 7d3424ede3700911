-- the naive set-based upsert of the same batch
\set b random(1, :batches)
SELECT naive.heartbeat_many(user_ids, session_ids) FROM bench.batches WHERE id = :b;
