
# 007_session_cache.pl: the shared-memory session cache behind the
# heartbeat's fast path.
#
#  - a heartbeat answered from the cache takes no transaction id, writes no
#    row and returns the user's announced status, including changes other
#    transactions committed, and never changes rolled back (whole
#    transactions or savepoints);
#  - sessions that end (disconnect, the worker's timeout) leave the cache at
#    once, so the next heartbeat starts the session again;
#  - rows deleted behind the API's back are found again within the
#    granularity; DROP EXTENSION and DROP DATABASE empty the cache;
#  - a full cache, and ids too long for it, only take the table path;
#  - an application role with only the documented grants uses both paths;
#  - under concurrent heartbeats, disconnects and status changes, every
#    heartbeat answered from the cache agrees with the tables.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use PresenceTAP;

my $node = presence_node('cache', conf => "presence.max_sessions = 50\n");
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
my $dbh = db_connect($node);

sub cached { return query_value($dbh, 'SELECT sessions_here FROM presence.cache_status()'); }
sub xmin_of
{
	my ($user) = @_;
	return query_value($dbh,
		"SELECT xmin::text || ctid::text FROM presence.sessions WHERE user_id = '$user'");
}

# --- What the cache holds ---------------------------------------------------

my $st = query_row($dbh, 'SELECT * FROM presence.cache_status()');
is($st->{max_sessions}, 50, 'cache_status() shows presence.max_sessions');
is($st->{sessions_here}, 0, 'the cache starts empty');
ok($st->{shared_bytes} > 0, "and the shared memory it was given ($st->{shared_bytes} bytes)");

is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'heartbeat() starts a session');
is(cached(), 1, 'the committed session is cached');

# --- The fast path --------------------------------------------------------

my $before = xmin_of('ann');
$dbh->do('BEGIN');
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'a cached heartbeat returns the status');
is(query_value($dbh, 'SELECT pg_current_xact_id_if_assigned() IS NULL'),
	1, 'and takes no transaction id');
$dbh->do('COMMIT');
is(xmin_of('ann'), $before, 'and writes no row version');

my $other = db_connect($node);
$other->do(q{SELECT presence.set_status('ann', 'busy')});
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'busy', "another transaction's committed status change is seen");
is(xmin_of('ann'), $before, 'still without writing the session');

$other->do('BEGIN');
$other->do(q{SELECT presence.set_status('ann', 'away')});
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'busy', 'an uncommitted change is not seen');
$other->do('ROLLBACK');
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'busy', 'nor one that rolled back');

$other->do('BEGIN');
$other->do('SAVEPOINT s');
$other->do(q{SELECT presence.set_status('ann', 'away')});
$other->do('ROLLBACK TO SAVEPOINT s');
$other->do(q{SELECT presence.heartbeat('ben', 'tab', ttl => '1 h', away_after => '1 h')});
$other->do('COMMIT');
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'busy', 'nor one rolled back to a savepoint in a transaction that committed');
is(cached(), 2, "and that transaction's own session was cached");

$dbh->do('BEGIN');
$dbh->do(q{SELECT presence.set_status('ann', 'away')});
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'away', "a transaction's own uncommitted change is seen by its heartbeats");
$dbh->do('ROLLBACK');
$other->do(q{SELECT presence.set_status('ann', 'auto')});

# --- Sessions that end leave the cache -------------------------------------

is(query_value($dbh, q{SELECT presence.disconnect('ann', 'tab')}), 'offline', 'disconnect()');
is(cached(), 1, 'the ended session left the cache');
is(query_value($dbh, q{SELECT presence.heartbeat('ann', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'the next heartbeat starts it again');
is(query_value($dbh, q{SELECT count(*) FROM presence.sessions WHERE user_id = 'ann'}),
	1, 'with its row');

is(query_value($dbh, q{SELECT presence.heartbeat('cal', 'tab', ttl => '1 s', away_after => '1 h')}),
	'online', 'a session with a 1 s ttl');
ok(defined wait_until(30, sub {
		query_value($dbh, q{SELECT status FROM presence.get('cal')}) eq 'offline' }),
	'the worker ends it');
is(query_value($dbh, q{SELECT presence.heartbeat('cal', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'a heartbeat after the timeout starts it again, not from the cache');
is(query_value($dbh, q{SELECT count(*) FROM presence.sessions WHERE user_id = 'cal'}),
	1, 'with its row');

# --- Rows changed behind the API's back ------------------------------------

$node->safe_psql('postgres', q{
	ALTER SYSTEM SET presence.granularity = '1s';
	SELECT pg_reload_conf();});
ok(defined wait_until(10, sub { query_value($dbh, 'SHOW presence.granularity') eq '1s' }),
	'granularity set to 1 s');
$dbh->do(q{SELECT presence.heartbeat('dan', 'tab', ttl => '1 h', away_after => '1 h')});
$node->safe_psql('postgres', q{DELETE FROM presence.sessions WHERE user_id = 'dan'});
my $took = wait_until(10, sub {
		$dbh->do(q{SELECT presence.heartbeat('dan', 'tab', ttl => '1 h', away_after => '1 h')});
		query_value($dbh, q{SELECT count(*) FROM presence.sessions WHERE user_id = 'dan'}) == 1 });
ok(defined $took && $took < 5,
	sprintf('a session row deleted by hand is written again within the granularity (%.2f s)', $took // -1));
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET presence.granularity;
	SELECT pg_reload_conf();});

# --- Full cache and long ids ----------------------------------------------

my $long = 'x' x 100;
is(query_value($dbh, qq{SELECT presence.heartbeat('$long', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'ids too long for the cache work');
is(query_value($dbh, qq{SELECT presence.heartbeat('$long', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'through the table path');
my $n_before = cached();
is(query_value($dbh, q{SELECT presence.heartbeat_many(array_agg('many' || i), array_agg('s'::text), true)
		FROM generate_series(1, 80) i}),
	80, 'heartbeat_many() starts 80 sessions with a cache of 50');
is(query_value($dbh, 'SELECT sessions_here FROM presence.cache_status()'), 50, 'the cache is full');
ok(query_value($dbh, 'SELECT rejected FROM presence.cache_status()') > 0,
	'the sessions it could not take are counted');
is(query_value($dbh, q{SELECT presence.heartbeat_many(array_agg('many' || i), array_agg('s'::text), true)
		FROM generate_series(1, 80) i}),
	0, 'heartbeat_many() of them all again changes nothing');
is(query_value($dbh, q{SELECT count(*) FROM presence.sessions WHERE user_id LIKE 'many%'}),
	80, 'and every session is there');
$dbh->do(q{SELECT presence.disconnect('many' || i) FROM generate_series(1, 80) i});
is(cached(), $n_before, 'disconnect() freed their entries');

# --- An application role ----------------------------------------------------

$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	GRANT USAGE ON SCHEMA presence TO app;
	GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO app;});
my $app = db_connect($node);
$app->do('SET ROLE app');
is(query_value($app, q{SELECT presence.heartbeat('eve', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'an app role starts a session (table path)');
is(query_value($app, q{SELECT presence.heartbeat('eve', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'and refreshes it (cache path)');
is(query_value($app, q{SELECT presence.heartbeat_many(ARRAY['eve', 'fay'], ARRAY['tab', 'tab'])}),
	1, 'and uses heartbeat_many()');
is(query_value($app, q{SELECT current_user}), 'app', 'and is still itself afterwards');
eval { $app->do('SELECT count(*) FROM presence.sessions'); };
like($@, qr/permission denied/, 'but cannot read the tables');
$app->disconnect;

# --- Concurrency: the cache agrees with the tables ------------------------

my $users = 6;
my @clients;
for my $c (1 .. 4)
{
	my $script = '';
	srand(1000 + $c);
	for my $i (1 .. 400)
	{
		my $u = 'r' . int(rand($users));
		my $s = 's' . int(rand(2));
		my $r = rand();
		if ($r < 0.70)
		{
			$script .= "SELECT presence.heartbeat('$u', '$s', ttl => '1 h', away_after => '1 h');\n";
		}
		elsif ($r < 0.80)
		{
			$script .= "SELECT presence.disconnect('$u', '$s');\n";
		}
		elsif ($r < 0.90)
		{
			my $m = ('busy', 'away', 'auto')[ int(rand(3)) ];
			$script .= "SELECT presence.set_status('$u', '$m');\n";
		}
		else
		{
			$script .= "BEGIN; SELECT presence.set_status('$u', 'busy'); "
			  . "SELECT presence.heartbeat('$u', '$s', ttl => '1 h', away_after => '1 h'); ROLLBACK;\n";
		}
	}
	my ($stdout, $stderr);
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$script, '>', \$stdout, '2>', \$stderr);
	push @clients, [ $h, \$stdout, \$stderr ];
}
my $errors = 0;
for my $c (@clients)
{
	$c->[0]->finish;
	$errors++ if $c->[0]->result != 0;
	diag(${ $c->[2] }) if $c->[0]->result != 0;
}
is($errors, 0, '4 clients ran 1600 mixed calls without errors');

my $mismatch = 0;
for my $i (0 .. $users - 1)
{
	for my $s (0, 1)
	{
		my $has = query_value($dbh,
			"SELECT count(*) FROM presence.sessions WHERE user_id = 'r$i' AND session_id = 's$s'");
		next unless $has;
		my $fast = query_value($dbh,
			"SELECT presence.heartbeat('r$i', 's$s', ttl => '1 h', away_after => '1 h')");
		my $table = query_value($dbh, "SELECT status FROM presence.users WHERE user_id = 'r$i'");
		$mismatch++ if $fast ne $table;
	}
}
is($mismatch, 0, 'every heartbeat afterwards returns the status in the tables');
ok(cached() <= query_value($dbh, 'SELECT count(*) FROM presence.sessions'),
	'the cache holds no more sessions than the table');

# --- DROP EXTENSION and DROP DATABASE ---------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION presence');
$node->safe_psql('other', q{SELECT presence.heartbeat('zed', 'tab')});
is($node->safe_psql('other', 'SELECT sessions_here FROM presence.cache_status()'),
	1, 'a second database has its own entries');
$node->safe_psql('postgres', 'DROP DATABASE other');
is(query_value($dbh, 'SELECT sessions FROM presence.cache_status()'),
	cached(), 'DROP DATABASE removed them');

ok(cached() > 0, 'this database has cached sessions');
$dbh->disconnect;
$other->disconnect;
$node->safe_psql('postgres', 'DROP EXTENSION presence');
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
is($node->safe_psql('postgres', 'SELECT sessions_here FROM presence.cache_status()'),
	0, 'DROP EXTENSION emptied the cache of this database');
is($node->safe_psql('postgres', q{SELECT presence.heartbeat('ann', 'tab')}),
	'online', 'and heartbeats start sessions afresh');
is($node->safe_psql('postgres', q{SELECT count(*) FROM presence.sessions}),
	1, 'with their rows');

$node->stop;
done_testing();
