-- breakdown: an empty SQL function, SECURITY DEFINER with SET search_path
\set uid random(1, :users)
SELECT bench.call_sql_definer('u' || :uid, 's1');
