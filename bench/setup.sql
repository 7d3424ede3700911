-- setup.sql: helpers the benchmarks need in each database (schema bench).
-- Loaded by bench/run.sh with psql -f after CREATE EXTENSION presence.

CREATE SCHEMA bench;

-- Copy a template user's rows of one table (presence.users or
-- presence.sessions) to users prefix||first .. prefix||last, whatever the
-- table's columns are.  Used to lay down large numbers of identical,
-- not-yet-due sessions cheaply; the template itself is made with the API.
CREATE FUNCTION bench.clone_rows(tab regclass, template text, prefix text,
								 first integer, last integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
	cols text;
	vals text;
	n bigint;
BEGIN
	SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
		   string_agg(CASE WHEN attname = 'user_id' THEN '$2 || i'
						   ELSE 't.' || quote_ident(attname) END,
					  ', ' ORDER BY attnum)
	  INTO cols, vals
	  FROM pg_attribute
	 WHERE attrelid = tab AND attnum > 0 AND NOT attisdropped;
	EXECUTE format('INSERT INTO %s (%s) SELECT %s FROM %s t,'
				   ' generate_series($3, $4) i WHERE t.user_id = $1',
				   tab, cols, vals, tab)
		USING template, prefix, first, last;
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- Run a statement n times, timing each call with clock_timestamp(); the
-- median, 90th percentile and minimum in milliseconds.
CREATE FUNCTION bench.time_calls(sql text, n integer)
RETURNS TABLE (median_ms float8, p90_ms float8, min_ms float8)
LANGUAGE plpgsql
AS $$
DECLARE
	t0 timestamptz;
	d float8[] := '{}';
BEGIN
	FOR i IN 1..n LOOP
		t0 := clock_timestamp();
		EXECUTE sql;
		d := d || (extract(epoch FROM clock_timestamp() - t0) * 1000)::float8;
	END LOOP;
	RETURN QUERY
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x),
		   percentile_cont(0.9) WITHIN GROUP (ORDER BY x),
		   min(x)
	  FROM unnest(d) x;
END
$$;

-- Where the heartbeat's time goes: the same two text arguments passed to
-- a built-in C function (textcat) declared three ways, and to an empty SQL
-- function.  bench.call_definer has exactly the call overhead of
-- presence.heartbeat(): SECURITY DEFINER with a pinned search_path.
CREATE FUNCTION bench.call_plain(text, text) RETURNS text
	LANGUAGE internal VOLATILE STRICT AS 'textcat';
CREATE FUNCTION bench.call_definer(text, text) RETURNS text
	LANGUAGE internal VOLATILE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS 'textcat';
CREATE FUNCTION bench.call_sql_definer(a text, b text) RETURNS text
	LANGUAGE sql VOLATILE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp AS 'SELECT a';
