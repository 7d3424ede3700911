
# 009_lifecycle.pl: DDL on the extension and its database while presence is
# busy, and a dump and restore.
#
#  - DROP EXTENSION, then CREATE EXTENSION, and then both in one
#    transaction, each while the worker is in the middle of ending thousands
#    of sessions in batches of 25 and psql clients keep calling the API:
#    the DROP does not wait long, nothing crashes (no server process dies,
#    no crash restart, the worker logs no error), the clients' calls fail
#    only with "does not exist" errors while the extension is gone and work
#    again after, the worker stops and a worker serves the new extension,
#    whose new sessions end with their events; the events a LISTEN client
#    gets after the new extension is committed are exactly its history;
#    a call that waited for the DROP's locks fails with a clear error
#    (42704), not an internal one, and changes nothing;
#  - DROP DATABASE ... WITH (FORCE) of a database with presence under the
#    same load, with clients and a listener connected: it succeeds within
#    seconds, its clients are ended, its worker is gone, its sessions leave
#    the session cache, and the worker of another database goes on ending
#    sessions on time meanwhile;
#  - ALTER EXTENSION presence UPDATE (and UPDATE TO '1.0'), already at 1.0,
#    is a no-op that leaves the worker running and working; SET SCHEMA is
#    refused (the extension is not relocatable);
#  - the extension created by one superuser, REASSIGN OWNED to a role that
#    is not a superuser, the first role dropped: an application role with
#    the documented grants still uses the API, events are written and the
#    worker still ends sessions;
#  - pg_dump of a busy database (with --snapshot, so that the test knows
#    exactly what the dump holds) and pg_restore --single-transaction into
#    a new database: users, sessions, members, typing and history are
#    restored as dumped, the sequence continues after the restored history
#    (new events have higher seqs, no duplicate), and the restored
#    database's worker ends the restored sessions whose ttl passed, each
#    once, dated at its deadline;
#  - restores in several transactions: a plain restore in one psql session
#    that pauses after the users and sessions, past their deadlines (no
#    worker runs in the database meanwhile, and the log says why), plain
#    pg_restore and pg_restore -j 2: each restores exactly what was dumped,
#    and only then does the worker end the due sessions, with seqs after
#    the dumped ones.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use List::Util qw(max);
use DBD::Pg qw(:async);
use PresenceTAP;

my $BULK = 3000;    # sessions that fall due together
my $BOUND = 3;      # seconds: an ending comes this soon after its deadline

my $node = presence_node('lifecycle', conf => "presence.batch_size = 25\n");
my $start_pos = log_position($node);

# API calls of a client, for about a minute unless stopped; errors do not
# stop it.  Each iteration: a heartbeat, a join with metadata, a typing
# flag, a status change now and then.
sub api_script
{
	my ($tag) = @_;
	my $sql = "SET presence.session_ttl = '2s';\n";
	for my $i (1 .. 2000)
	{
		my $u = "${tag}_u" . ($i % 10);
		$sql .= "SELECT presence.heartbeat('$u', 's1', ttl => '2 s');\n";
		$sql .= "SELECT presence.join('$tag', '$u', 's1', '{\"i\": $i}');\n";
		$sql .= "SELECT presence.typing('$tag', '$u');\n";
		$sql .= "SELECT presence.set_status('$u', 'busy', 'm$i', now() + interval '1 s');\n"
		  if $i % 7 == 0;
		$sql .= "SELECT pg_sleep(0.02);\n";
	}
	return $sql;
}

# Errors in a client's output, by message (statement context left out).
sub client_errors
{
	my ($c) = @_;
	my %n;
	$n{$_}++ foreach client_stderr($c) =~ /(?:ERROR|FATAL|PANIC):\s+(.*)/g;
	return \%n;
}

# The messages of calls made while the extension is gone: a function or a
# table that does not exist; or, for a call that began before the DROP and
# had to wait for it, the extension was dropped during the call; or, for a
# typing() after a join() that failed so, the user is not in the room (of
# the new, empty tables).
my $GONE = qr/^(?:function presence\.\w+\(.*\) does not exist|relation "presence\.\w+" does not exist|extension "presence" was dropped during the call|user "\w+" is not in room "\w+")/;

sub server_died
{
	my ($pos) = @_;
	my $log = log_since($node, $pos);
	return join("\n",
		$log =~ /^.*(?:was terminated by signal|terminated; reinitializing|PANIC|exited with exit code [^01]).*$/mg);
}

# The worker's own errors and warnings since a log position; a worker
# stopped for a DROP DATABASE says "terminating ... due to administrator
# command", which is no complaint.
sub worker_complaints
{
	my ($pos) = @_;
	my ($prev, @found) = ('');
	foreach my $line (split /\n/, log_since($node, $pos))
	{
		push @found, "$prev\n$line"
		  if $line =~ /CONTEXT:  presence worker for database/
		  && $prev !~ /terminating background worker "presence worker" due to administrator command/;
		$prev = $line;
	}
	return join("\n", @found);
}

# Make $n sessions that end $ttl from now, in one statement.
sub bulk_sessions
{
	my ($dbh, $prefix, $n, $ttl) = @_;
	$dbh->do(q{SELECT count(presence.heartbeat(? || i, 's1', ttl => ?::interval))
				 FROM generate_series(1, ?) AS i}, undef, $prefix, $ttl, $n);
	return;
}

# Wait until the worker has ended some of the sessions whose ids start with
# $prefix but not all; returns how many were left.
sub wait_mid_sweep
{
	my ($dbh, $prefix, $n) = @_;
	my $left;
	wait_until(30,
		sub {
			$left = query_value($dbh,
				q{SELECT count(*) FROM presence.sessions WHERE user_id LIKE ?},
				"$prefix%");
			$left < $n;
		},
		0.005);
	return $left;
}

# Sessions $prefix1..$n with a 1 s ttl end, each announced to $listener
# within $BOUND s of its deadline; returns the worst latency.
sub check_endings
{
	my ($dbh, $listener, $prefix, $n, $what) = @_;
	bulk_sessions($dbh, $prefix, $n, '1 s');
	my $end = epoch_of($dbh,
		query_value($dbh,
			q{SELECT max(end_at)::text FROM presence.sessions WHERE user_id LIKE ?},
			"$prefix%"));
	my @got = $listener->wait_for(
		sub {
			my $ev = $_[0]->{ev};
			$ev && $ev->{status} eq 'offline' && $ev->{user_id} =~ /^\Q$prefix\E\d+$/;
		},
		$BOUND + 20, $n);
	is(scalar @got, $n, "$what: $n new sessions are ended by the worker");
	my $worst = @got ? max(map { $_->{received} } @got) - $end : -1;
	cmp_ok($worst, '<', $BOUND, "$what: within ${BOUND}s of their deadline");
	note sprintf('%s: the last of %d endings came %.3f s after the deadline',
		$what, $n, $worst);
	return $worst;
}

# A new database with presence under load: its worker, a handle, a LISTEN
# client and $n API clients whose users are named "<prefix><i>_u...".
sub busy_database
{
	my ($db, $prefix, $n, $running) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION presence');
	ok(defined wait_until(30, sub { defined worker_pid($node, $db) }),
		"$db has a worker");
	my $h = db_connect($node, $db);
	my $l = PresenceTAP::Listener->new($node, $db);
	my @c = map { start_psql_client($node, $db, api_script("$prefix$_"), "$prefix$_") } 1 .. $n;
	ok( defined wait_until(30,
			sub {
				query_value($h, qq{SELECT count(*) FROM presence.users
									WHERE user_id LIKE '${prefix}_\\_u%'}) >= 20;
			}),
		$running);
	return (worker_pid($node, $db), $h, $l, @c);
}

# ===========================================================================
# DROP EXTENSION / CREATE EXTENSION under load
# ===========================================================================

my ($w_churn, $dbh, $listener, @clients) =
  busy_database('churn', 'c', 3, 'the API clients are running');

# --- DROP, then CREATE ------------------------------------------------------

my $pos = log_position($node);
bulk_sessions($dbh, 'bulk', $BULK, '1.5 s');
my $left = wait_mid_sweep($dbh, 'bulk', $BULK);
my $t0 = time;
$dbh->do('BEGIN');
$dbh->do('DROP EXTENSION presence');
$dbh->do(q{NOTIFY presence, 'dropped'});
$dbh->do('COMMIT');
my $t_drop = time - $t0;
note sprintf('DROP EXTENSION with %d of %d due sessions left took %.3f s',
	$left, $BULK, $t_drop);
cmp_ok($left, '>', 0, 'the worker was in the middle of ending the due sessions');
cmp_ok($t_drop, '<', 5, 'DROP EXTENSION does not wait long for the worker');
my $t = wait_until(15, sub { !defined worker_pid($node, 'churn') });
ok(defined $t, 'the worker of churn stops');
note sprintf('worker gone %.2f s after DROP EXTENSION', $t // -1);

# The clients keep calling while the extension is gone.
my %err_before = map { $_->{name} => scalar keys %{ client_errors($_) } } @clients;
ok( defined wait_until(15,
		sub {
			!grep { !%{ client_errors($_) } } @clients;
		}),
	'every client sees its calls fail while the extension is gone');

$t0 = time;
$dbh->do('BEGIN');
$dbh->do('CREATE EXTENSION presence');
$dbh->do(q{NOTIFY presence, 'created'});
$dbh->do('COMMIT');
$t = wait_until(15, sub { defined worker_pid($node, 'churn') });
ok(defined $t, 'CREATE EXTENSION brings a worker back');
note sprintf('worker back %.2f s after CREATE EXTENSION', $t // -1);
isnt(worker_pid($node, 'churn'), $w_churn, '(a new one)');
ok( defined wait_until(30,
		sub {
			query_value($dbh, q{SELECT count(DISTINCT user_id) FROM presence.sessions
								 WHERE user_id LIKE 'c_\_u%'}) == 30;
		}),
	'the clients\' calls work again in the new extension');
check_endings($dbh, $listener, 'fresh', 200, 'after DROP and CREATE');

# --- DROP and CREATE in one transaction -------------------------------------

bulk_sessions($dbh, 'bulk2_', $BULK, '1.5 s');
$left = wait_mid_sweep($dbh, 'bulk2_', $BULK);
my $w_before = worker_pid($node, 'churn');
$t0 = time;
$dbh->do('BEGIN');
$dbh->do('DROP EXTENSION presence');
$dbh->do('CREATE EXTENSION presence');
$dbh->do(q{NOTIFY presence, 'recreated'});
$dbh->do('COMMIT');
note sprintf('DROP and CREATE EXTENSION in one transaction with %d of %d due '
	  . 'sessions left took %.3f s', $left, $BULK, time - $t0);
cmp_ok($left, '>', 0, 'the worker was in the middle of ending the due sessions');
ok( defined wait_until(30,
		sub {
			query_value($dbh, q{SELECT count(DISTINCT user_id) FROM presence.sessions
								 WHERE user_id LIKE 'c_\_u%'}) == 30;
		}),
	'the clients\' calls work in the re-created extension');
ok(defined wait_until(15, sub { defined worker_pid($node, 'churn') }),
	'a worker serves churn');
note 'the worker ' . (worker_pid($node, 'churn') == $w_before ? 'went on' : 'was restarted');
check_endings($dbh, $listener, 'fresh2_', 200, 'after DROP and CREATE in one transaction');

# --- What the clients, the listener and the log saw -------------------------

my %unexpected;
my %all_errors;
foreach my $c (@clients)
{
	my $errors = client_errors($c);
	foreach my $msg (keys %$errors)
	{
		$all_errors{$msg} += $errors->{$msg};
		$unexpected{"$c->{name}: $msg"} = $errors->{$msg} unless $msg =~ $GONE;
	}
}
note "client errors while the extension was gone:\n"
  . join("\n", map { "  $all_errors{$_} x $_" } sort keys %all_errors);
is_deeply(\%unexpected, {},
	'the clients\' calls failed only because the extension was gone');
is_deeply([ map { $_->{h}->pumpable ? 'running' : 'ended' } @clients ],
	[ ('running') x 3 ], 'every client is still connected and calling');

# Stop the clients and let the worker end what they left, so that the
# events can be compared with a history that no longer grows.
stop_psql_client($_, 'TERM') foreach @clients;
ok( defined wait_until(30,
		sub {
			query_value($dbh, q{SELECT (SELECT count(*) FROM presence.sessions)
									 + (SELECT count(*) FROM presence.users
										 WHERE manual_until IS NOT NULL)}) == 0;
		}),
	'the worker ends what the clients left');
$listener->drain(1);
my @notes = $listener->all;
my ($i_created) = grep { $notes[$_]{payload} eq 'recreated' } 0 .. $#notes;
ok(defined $i_created, 'the listener got the marker of the re-creation');
my @after = grep { defined $_->{ev} } @notes[ $i_created + 1 .. $#notes ];
my $history = query_rows($dbh,
	q{SELECT seq, user_id, status::text FROM presence.history ORDER BY seq});
is(join(' ', map { "$_->{ev}{seq}:$_->{ev}{user_id}:$_->{ev}{status}" } @after),
	join(' ', map { "$_->{seq}:$_->{user_id}:$_->{status}" } @$history),
	'the events after the re-creation are exactly the new history, in order');
my ($i_dropped) = grep { $notes[$_]{payload} eq 'dropped' } 0 .. $#notes;
my ($i_first) = grep { $notes[$_]{payload} eq 'created' } 0 .. $#notes;
ok(defined $i_dropped && defined $i_first && $i_first == $i_dropped + 1,
	'no event at all while the extension was gone');
note sprintf('the listener got %d notifications in all', scalar @notes);
$listener->disconnect;

is(server_died($pos), '', 'no server process died, no crash restart');
is(worker_complaints($pos), '', 'the worker logged no error or warning');
my $v = table_violations($dbh);
is_deeply($v, { map { $_ => 0 } keys %$v }, 'the re-created tables are consistent')
  or diag explain $v;

# --- Calls that wait for DROP and CREATE EXTENSION in one transaction -------
#
# A call that began before the DROP and waited for its locks goes on once
# it commits, with the new tables, but the type its dropped function
# returns is gone: it must fail with a clear error, not an internal one
# ("cache lookup failed"), and change nothing.  One backend has used
# heartbeat() before (its enum values are cached), one never called the API.
my $warm = db_connect($node, 'churn');
$warm->do(q{SELECT presence.heartbeat('warm', 's1')});
my $cold = db_connect($node, 'churn');
my $ddl = db_connect($node, 'churn');
$ddl->begin_work;
$ddl->do('DROP EXTENSION presence');
$ddl->do('CREATE EXTENSION presence');
$warm->do(q{SELECT presence.heartbeat('waiting1', 's1')}, { pg_async => PG_ASYNC });
$cold->do(q{SELECT presence.set_status('waiting2', 'busy', 'x')}, { pg_async => PG_ASYNC });
ok( defined wait_until(10,
		sub {
			query_value($dbh,
				q{SELECT count(*) FROM pg_stat_activity
				   WHERE wait_event_type = 'Lock' AND pid IN (?, ?)},
				$warm->{pg_pid}, $cold->{pg_pid}) == 2;
		}),
	'a heartbeat() and a set_status() wait for DROP and CREATE EXTENSION');
$ddl->commit;
foreach my $call ([ $warm, 'heartbeat()' ], [ $cold, 'set_status()' ])
{
	my ($h, $what) = @$call;
	eval { $h->pg_result };
	my $err = $@;
	like($err, qr/extension "presence" was dropped during the call/,
		"$what that waited fails with a clear error");
	is($h->state, '42704', "... SQLSTATE 42704 (undefined_object)");
}
is(query_value($dbh, q{SELECT count(*) FROM presence.users WHERE user_id LIKE 'waiting%'}),
	0, 'and changes nothing');
is(query_value($warm, q{SELECT presence.heartbeat('waiting1', 's1')}),
	'online', 'the same call made again works');
is(query_value($cold, q{SELECT presence.set_status('waiting2', 'busy', 'x')}),
	'offline', '(both)');
$_->disconnect foreach $warm, $cold, $ddl;

# ===========================================================================
# DROP DATABASE ... WITH (FORCE) under load
# ===========================================================================

my ($w_doomed, $ddbh, $dlistener, @dclients) =
  busy_database('doomed', 'd', 2, 'the API clients of doomed are running');
ok(query_value($dbh, 'SELECT sessions - sessions_here FROM presence.cache_status()') > 0,
	'doomed has sessions in the cache');

# churn, the bystander, has sessions that end during the drop.
my $w_bystander = worker_pid($node, 'churn');
my $blistener = PresenceTAP::Listener->new($node, 'churn');
$pos = log_position($node);
bulk_sessions($ddbh, 'bulk', $BULK, '1 s');
bulk_sessions($dbh, 'by', 100, '2 s');
my $by_end = epoch_of($dbh,
	query_value($dbh, q{SELECT max(end_at)::text FROM presence.sessions WHERE user_id LIKE 'by%'}));
$left = wait_mid_sweep($ddbh, 'bulk', $BULK);
$t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE doomed WITH (FORCE)');
my $t_dropdb = time - $t0;
is($ret, 0, 'DROP DATABASE doomed WITH (FORCE) under load succeeds') or diag $stderr;
note sprintf('DROP DATABASE WITH (FORCE) with %d of %d due sessions left took %.3f s',
	$left, $BULK, $t_dropdb);
cmp_ok($t_dropdb, '<', 10, 'within 10 s');
eval { $ddbh->disconnect };
eval { $dlistener->disconnect };

my @dstatus = map { stop_psql_client($_) } @dclients;
is(scalar(grep { $_ != 0 } @dstatus), 0 + @dclients, 'its clients were ended');
my @dend = grep { !/terminating connection due to administrator command|server closed the connection|connection to server was lost|database "doomed" does not exist|no connection to the server/ }
  map { client_stderr($_) =~ /^.*(?:FATAL|ERROR|PANIC):.*$/mg } @dclients;
is_deeply(\@dend, [], '... by the FORCE, with no other error');
ok(defined wait_until(15, sub { !defined worker_pid($node, 'doomed') }),
	'no worker is left for doomed');
is(query_value($dbh, 'SELECT sessions - sessions_here FROM presence.cache_status()'),
	0, 'the session cache holds nothing of doomed');
is(worker_pid($node, 'churn'), $w_bystander, 'the worker of churn kept running');
my @by = $blistener->wait_for(
	sub { my $ev = $_[0]->{ev}; $ev && $ev->{status} eq 'offline' && $ev->{user_id} =~ /^by\d+$/ },
	$BOUND + 20, 100);
is(scalar @by, 100, 'the bystander\'s sessions ended meanwhile');
my $by_late = @by ? max(map { $_->{received} } @by) - $by_end : -1;
note sprintf('the last of them %.3f s after its deadline', $by_late);
cmp_ok($by_late, '<', $BOUND, "... within ${BOUND}s of their deadline");
$blistener->disconnect;
is(server_died($pos), '', 'no server process died, no crash restart');

# ===========================================================================
# ALTER EXTENSION
# ===========================================================================

$listener = PresenceTAP::Listener->new($node, 'churn');
my $w_alter = worker_pid($node, 'churn');
($ret, $stdout, $stderr) = $node->psql('churn', 'ALTER EXTENSION presence UPDATE');
is($ret, 0, 'ALTER EXTENSION presence UPDATE succeeds');
like($stderr, qr/version "1.0" of extension "presence" is already installed/,
	'... and says 1.0 is already installed');
($ret, $stdout, $stderr) = $node->psql('churn', q{ALTER EXTENSION presence UPDATE TO '1.0'});
is($ret, 0, q{ALTER EXTENSION presence UPDATE TO '1.0' succeeds});
($ret, $stdout, $stderr) = $node->psql('churn', 'ALTER EXTENSION presence SET SCHEMA public');
isnt($ret, 0, 'ALTER EXTENSION presence SET SCHEMA is refused');
like($stderr, qr/does not support SET SCHEMA/, '... as the extension is not relocatable');
is(worker_pid($node, 'churn'), $w_alter, 'the worker still runs (the same process)');
check_endings($dbh, $listener, 'altered', 50, 'after ALTER EXTENSION');
$listener->disconnect;

# --- Ownership: REASSIGN OWNED to a role that is not a superuser ------------

$node->safe_psql('postgres', q{
	CREATE DATABASE owned;
	CREATE ROLE admin1 SUPERUSER;
	CREATE ROLE owner2;
	CREATE ROLE app LOGIN;});
$node->safe_psql('owned', q{SET ROLE admin1; CREATE EXTENSION presence;});
ok(defined wait_until(30, sub { defined worker_pid($node, 'owned') }),
	'owned has a worker');
my $odbh = db_connect($node, 'owned');
my $oclient = start_psql_client($node, 'owned', api_script('o1'), 'o1');
ok( defined wait_until(30,
		sub { query_value($odbh, q{SELECT count(*) FROM presence.users WHERE user_id LIKE 'o1\_u%'}) >= 10 }),
	'a client calls the API in owned');
$node->safe_psql('owned', 'REASSIGN OWNED BY admin1 TO owner2');
$node->safe_psql('owned', 'DROP OWNED BY admin1');
$node->safe_psql('postgres', 'DROP ROLE admin1');
is( query_value($odbh,
		q{SELECT string_agg(DISTINCT o, ',') FROM (
			SELECT extowner::regrole::text AS o FROM pg_extension WHERE extname = 'presence'
			UNION ALL SELECT relowner::regrole::text FROM pg_class
			 WHERE relnamespace = 'presence'::regnamespace
			UNION ALL SELECT proowner::regrole::text FROM pg_proc
			 WHERE pronamespace = 'presence'::regnamespace
			UNION ALL SELECT nspowner::regrole::text FROM pg_namespace
			 WHERE nspname = 'presence') x}),
	'owner2', 'the extension and all its objects now belong to owner2');
$odbh->do(q{GRANT USAGE ON SCHEMA presence TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO app});
my $olistener = PresenceTAP::Listener->new($node, 'owned');
my $app = db_connect($node, 'owned');
$app->do('SET ROLE app');
is(query_value($app, q{SELECT presence.heartbeat('app_user', 's1', ttl => '1 s')}),
	'online', 'the app role starts a session');
is(query_value($app, q{SELECT presence.set_status('app_user2', 'busy', 'reassigned')}),
	'offline', 'and sets a status');
ok(scalar $olistener->wait_for_user_status('app_user', 'offline', $BOUND + 20),
	'the worker ends the app role\'s session');
is( query_value($odbh,
		q{SELECT string_agg(reason, ',' ORDER BY seq) FROM presence.history
		   WHERE user_id = 'app_user'}),
	'connect,timeout', 'history has both events');
check_endings($odbh, $olistener, 'owned', 20, 'after REASSIGN OWNED');
my $oerr = client_errors($oclient);
is_deeply($oerr, {}, 'the client saw no error across the change of owner')
  or diag explain $oerr;
stop_psql_client($oclient, 'TERM');
$olistener->disconnect;
$app->disconnect;
is(worker_complaints($start_pos), '', 'the workers logged no error or warning so far');

# ===========================================================================
# pg_dump and pg_restore
# ===========================================================================

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', 'CREATE EXTENSION presence');
my $sdbh = db_connect($node, 'src');
$sdbh->do(q{SET presence.typing_timeout = '1h'});
$sdbh->do(q{
	SELECT count(presence.heartbeat('long' || i, 's' || j, ttl => '1 h',
									 meta => jsonb_build_object('dev', j)))
	  FROM generate_series(1, 40) i, generate_series(1, 2) j});
$sdbh->do(q{SELECT count(presence.join('room' || (i % 3), 'long' || i, 's1',
									   jsonb_build_object('cursor', i)))
			  FROM generate_series(1, 30) i});
$sdbh->do(q{SELECT count(presence.heartbeat('long' || i, 's1', ttl => '1 h'))
			  FROM generate_series(1, 30) i});
$sdbh->do(q{SELECT count(presence.typing('room' || (i % 3), 'long' || i))
			  FROM generate_series(1, 10) i});
$sdbh->do(q{SELECT presence.set_status('long1', 'busy', 'in a meeting', now() + interval '1 day')});
$sdbh->do(q{SELECT presence.set_status('long2', 'invisible')});
$sdbh->do(q{SELECT presence.set_status('long3', 'away', 'brb')});
$sdbh->do(q{SELECT presence.set_status('gone1', 'auto', 'on holiday')});
$sdbh->do(q{SELECT count(presence.disconnect('long' || i)) FROM generate_series(35, 40) i});
# History with a few hundred rows, and sessions that end 4 s from now, some
# in a room: their ttl passes between the dump and the restore.
$sdbh->do(q{SELECT count(presence.heartbeat('churn' || i, 's1', ttl => '1 h'))
			  FROM generate_series(1, 100) i});
$sdbh->do(q{SELECT count(presence.disconnect('churn' || i)) FROM generate_series(1, 100) i});
$sdbh->do(q{SELECT count(presence.heartbeat('due' || i, 's1', ttl => '4 s'))
			  FROM generate_series(1, 20) i});
$sdbh->do(q{SELECT count(presence.join('room0', 'due' || i, 's1'))
			  FROM generate_series(1, 5) i});
$sdbh->do(q{SELECT count(presence.heartbeat('due' || i, 's1', ttl => '4 s'))
			  FROM generate_series(1, 5) i});

# Dump with an exported snapshot, and read in the same snapshot what the
# dump holds.
my $snap = db_connect($node, 'src');
$snap->do('BEGIN ISOLATION LEVEL REPEATABLE READ');
my $snapshot = query_value($snap, 'SELECT pg_export_snapshot()');
my %state_sql = (
	users => q{SELECT concat_ws('|', user_id, status, message, since, last_active,
								last_seen, manual, manual_message, manual_until)
				 FROM presence.users %s ORDER BY user_id},
	sessions => q{SELECT concat_ws('|', user_id, session_id, started_at, last_seen,
								   last_active, away_at, end_at, due_at, meta)
					FROM presence.sessions %s ORDER BY user_id, session_id},
	members => q{SELECT concat_ws('|', room, user_id, session_id, meta, joined_at,
								  meta_sent_at, meta_due_at)
				   FROM presence.members %s ORDER BY room, user_id, session_id},
	typing => q{SELECT concat_ws('|', room, user_id, started_at, until)
				  FROM presence.typing %s ORDER BY room, user_id},
	history => q{SELECT concat_ws('|', seq, user_id, status, previous, reason, message,
								  last_active, at)
				   FROM presence.history %s ORDER BY seq},
);

# The state outside the users due at the restore ($where filters out their
# rows), one string per table.
sub state_of
{
	my ($h, $where) = @_;
	my %s;
	foreach my $t (keys %state_sql)
	{
		my $w = $t eq 'history' ? '' : $where;
		$s{$t} = join("\n", @{ $h->selectcol_arrayref(sprintf($state_sql{$t}, $w)) });
	}
	return \%s;
}
my $NOT_DUE = q{WHERE user_id NOT LIKE 'due%'};
my $dumped = state_of($snap, $NOT_DUE);
my $dumped_seq = query_value($snap, 'SELECT last_value FROM presence.seq');
my $dumped_max = query_value($snap, 'SELECT max(seq) FROM presence.history');
my $due = query_rows($snap,
	q{SELECT user_id, end_at::text AS end_at, extract(epoch FROM end_at)::float8 AS end_e
		FROM presence.sessions WHERE user_id LIKE 'due%' ORDER BY user_id});
my %due_rooms = map { $_->[0] => 1 } @{ $snap->selectall_arrayref(
	q{SELECT user_id FROM presence.members WHERE user_id LIKE 'due%'}) };
my $dump = "$PostgreSQL::Test::Utils::tmp_check/src.dump";
$t0 = time;
$node->command_ok(
	[ 'pg_dump', '-Fc', "--snapshot=$snapshot", '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump of a database with presence');
note sprintf('pg_dump took %.2f s; it holds %d users, %d sessions, %d history rows, seq %d',
	time - $t0, scalar(split /\n/, $dumped->{users}) + @$due,
	scalar(split /\n/, $dumped->{sessions}) + @$due,
	scalar(split /\n/, $dumped->{history}), $dumped_seq);
$snap->do('COMMIT');
$snap->disconnect;
is(scalar @$due, 20, 'the dump holds 20 sessions due 4 s after it');
my $due_by = max(map { $_->{end_e} } @$due);

# Restore into a new database once their ttl has passed; returns a handle,
# a listener connected before the restore, and pg_restore's stderr.
sub restore_into
{
	my ($db, @opts) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my $l = PresenceTAP::Listener->new($node, $db);
	wait_until(30, sub { time > $due_by + 0.1 }, 0.05);
	my $t0 = time;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'pg_restore', @opts, '-d', $node->connstr($db), $dump ],
		'>', \$out, '2>', \$err);
	note sprintf('pg_restore %s took %.2f s', join(' ', @opts) || '(plain)', time - $t0);
	return (db_connect($node, $db), $l, $ok, $err);
}

# What must hold after a restore into $db.
sub check_restored
{
	my ($db, $h, $l, $what) = @_;
	my $now = state_of($h, $NOT_DUE);
	foreach my $t (sort keys %$now)
	{
		my $mine = $now->{$t};
		# the history may already hold the endings of the due sessions
		$mine = join("\n", grep { (split /\|/)[0] <= $dumped_max } split /\n/, $mine)
		  if $t eq 'history';
		is($mine, $dumped->{$t}, "$what: $t restored as dumped");
	}
	cmp_ok(query_value($h, 'SELECT last_value FROM presence.seq'), '>=', $dumped_seq,
		"$what: the sequence is restored");

	ok( defined wait_until(30,
			sub {
				query_value($h, q{SELECT count(*) FROM presence.sessions
								   WHERE user_id LIKE 'due%'}) == 0;
			}),
		"$what: the worker ends the restored sessions whose ttl passed");
	$l->drain(1);
	my (@wrong, @events);
	foreach my $d (@$due)
	{
		my $rows = query_rows($h,
			q{SELECT seq, reason, at::text FROM presence.history
			   WHERE user_id = ? AND seq NOT IN (SELECT unnest(?::bigint[]))
			   ORDER BY seq},
			$d->{user_id}, [ map { (split /\|/)[0] } split /\n/, $dumped->{history} ]);
		my @ev = grep { $_->{ev}{status} eq 'offline' } $l->for_user($d->{user_id});
		push @events, @ev;
		push @wrong, "$d->{user_id}: " . join(' ; ', map { "$_->{seq} $_->{reason} $_->{at}" } @$rows)
		  . ' / ' . scalar(@ev) . " events (deadline $d->{end_at})"
		  unless @$rows == 1 && $rows->[0]{reason} eq 'timeout'
		  && timestamps_equal($h, $rows->[0]{at}, $d->{end_at})
		  && @ev == 1 && $ev[0]{ev}{seq} == $rows->[0]{seq};
	}
	is_deeply(\@wrong, [], "$what: each ended once, as a timeout dated at its deadline, announced once");
	is( query_value($h, q{SELECT count(*) FROM presence.members WHERE user_id LIKE 'due%'}),
		0, "$what: their rooms ended with them");
	my $v = table_violations($h);
	is_deeply($v, { map { $_ => 0 } keys %$v }, "$what: the tables are consistent")
	  or diag explain $v;
	my $ws = query_row($h, 'SELECT * FROM presence.worker_status()');
	note sprintf('%s: the worker made %d transitions with %d errors%s', $what,
		$ws->{transitions} // -1, $ws->{errors} // -1,
		$ws->{last_error} ? " (last: $ws->{last_error})" : '');
	return \@events;
}

# --- pg_restore --single-transaction ----------------------------------------

my ($h1, $l1, $ok1, $err1) = restore_into('dst1', '--single-transaction');
ok($ok1, 'pg_restore --single-transaction succeeds') or diag $err1;
my $events = check_restored('dst1', $h1, $l1, 'single-transaction restore');
my @low = grep { $_->{ev}{seq} <= $dumped_seq } @$events;
is(scalar @low, 0, 'single-transaction restore: the endings have seqs after the dumped sequence');
my $next = query_value($h1, q{SELECT presence.heartbeat('newcomer', 's1')});
my $seq_new = query_value($h1, q{SELECT seq FROM presence.history WHERE user_id = 'newcomer'});
cmp_ok($seq_new, '>', max($dumped_seq, map { $_->{ev}{seq} } @$events),
	'single-transaction restore: a new event takes the next seq');
is(query_value($h1, 'SELECT count(*) - count(DISTINCT seq) FROM presence.history'),
	0, 'single-transaction restore: no duplicate seq');
is(query_value($h1, 'SELECT errors FROM presence.worker_status()'),
	0, 'single-transaction restore: the worker had no error');
$l1->disconnect;
$h1->disconnect;
# each restored database has a worker: make room for the next ones
$node->safe_psql('postgres', 'DROP DATABASE dst1');

# --- Restores in several transactions --------------------------------------
#
# Without --single-transaction, a restore creates the extension in one
# transaction and loads each table in a later one.  A worker started as
# soon as CREATE EXTENSION commits would end the due sessions before their
# memberships are loaded (which would then belong to no session) and draw
# seqs from the new sequence, which collide with the history still to
# come; pg_restore -j also loads the tables in any order.  The restoring sessions run with check_function_bodies off, and
# the worker waits until they have all ended (restore.c).
#
# First a plain restore made slow on purpose, in one psql session: the
# extension, users and sessions, then a pause well past the due sessions'
# deadlines, during which no worker may run there, then the history,
# members, typing and the sequence.
my ($toc) = run_command([ 'pg_restore', '-l', $dump ]);
my @toc = split /\n/, $toc;
my $LATER = qr/TABLE DATA presence (?:history|members|typing)|SEQUENCE SET presence seq/;
is(scalar(grep { /$LATER/ } @toc), 4, 'the dump has the data of history, members, typing and seq');
my @part;
foreach my $i (1, 2)
{
	my $list = "$PostgreSQL::Test::Utils::tmp_check/restore.list.$i";
	PostgreSQL::Test::Utils::append_to_file($list,
		join("\n", grep { ($i == 2) == /$LATER/ } @toc) . "\n");
	($part[$i]) = run_command([ 'pg_restore', '-L', $list, '-f', '-', $dump ]);
}
$node->safe_psql('postgres', 'CREATE DATABASE dst3');
my $l3 = PresenceTAP::Listener->new($node, 'dst3');
my $log3 = log_position($node);
wait_until(30, sub { time > $due_by + 0.1 }, 0.05);
my ($in3, $out3, $err3) = ('', '', '');
my $psql3 = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('dst3') ],
	'<', \$in3, '>', \$out3, '2>', \$err3);
$in3 = $part[1] . "\n\\echo part-1-done\n";
ok( defined wait_until(60, sub { $psql3->pump_nb; $out3 =~ /part-1-done/ || !$psql3->pumpable }),
	'restore, step 1: the extension, users and sessions')
  or diag $err3;
my $h3 = db_connect($node, 'dst3');
my $pause = 4;
my ($seen_worker, $min_due) = (0, 20);
my $t3 = time;
while (time < $t3 + $pause)
{
	$psql3->pump_nb;
	$seen_worker ||= defined worker_pid($node, 'dst3');
	my $n = query_value($h3, q{SELECT count(*) FROM presence.sessions WHERE user_id LIKE 'due%'});
	$min_due = $n if $n < $min_due;
	usleep(100_000);
}
ok(!$seen_worker, "no worker in the database for the $pause s the restore pauses");
is($min_due, 20, 'the due sessions are left alone meanwhile');
like(log_since($node, $log3),
	qr/presence will not start its worker in this database until the restore has ended/,
	'the server log says why the worker waits');
$in3 .= $part[2] . "\n\\q\n";
$psql3->finish;
is($?, 0, 'restore, step 2: history, members, typing and the sequence') or diag $err3;
my $events3 = check_restored('dst3', $h3, $l3, 'paused plain restore');
is(scalar(grep { $_->{ev}{seq} <= $dumped_seq } @$events3), 0,
	'paused plain restore: the endings have seqs after the dumped sequence');
$l3->disconnect;
$h3->disconnect;
$node->safe_psql('postgres', 'DROP DATABASE dst3');

# Then pg_restore as such: plain (one transaction per object), and with
# two jobs, whose leader disconnects before its workers connect.
foreach my $opts ([], [ '-j', '2' ])
{
	my $what = 'pg_restore ' . (join(' ', @$opts) || '(plain)');
	my $db = 'dst' . (4 + @$opts);
	my ($h, $l, $ok, $err) = restore_into($db, @$opts);
	ok($ok, "$what succeeds") or diag $err;
	my $ev = check_restored($db, $h, $l, $what);
	is(scalar(grep { $_->{ev}{seq} <= $dumped_seq } @$ev), 0,
		"$what: the endings have seqs after the dumped sequence");
	is(query_value($h, 'SELECT count(*) - count(DISTINCT seq) FROM presence.history'),
		0, "$what: no duplicate seq");
	$l->disconnect;
	$h->disconnect;
	$node->safe_psql('postgres', "DROP DATABASE $db");
}

is(worker_complaints($start_pos), '', 'no worker logged an error or warning');
is(server_died($start_pos), '', 'no server process died in the whole test');

$dbh->disconnect;
$odbh->disconnect;
$sdbh->disconnect;
$node->stop('fast');
done_testing();
