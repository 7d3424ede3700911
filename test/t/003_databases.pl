
# 003_databases.pl: one worker per database that has the extension, found
# without configuration.
#
#  - CREATE EXTENSION presence in a new database starts a worker for it
#    within seconds, and transitions there reach a LISTEN client of that
#    database; a database without the extension gets no worker;
#  - DROP EXTENSION stops that database's worker within seconds, CREATE
#    EXTENSION brings one back;
#  - a plain DROP DATABASE of a database whose worker runs succeeds (the
#    worker does not block it), and so does DROP DATABASE ... WITH (FORCE)
#    with a client connected; the launcher then never tries to start a
#    worker for the dropped databases (the log has no such attempt);
#  - a template database with presence gets no worker, and CREATE DATABASE
#    ... TEMPLATE it gets one within the launcher's rescan period;
#  - CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME of a
#    database whose worker runs succeed, and its worker comes back;
#  - a fast server stop with several workers running completes promptly.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use PresenceTAP;

my $node = presence_node('databases');
ok(defined wait_until(30, sub { defined launcher_pid($node) }),
	'the launcher runs');

# The databases served, as "datname:count" of presence workers.
sub served
{
	my %n;
	$n{ $_->{datname} }++
	  foreach grep { $_->{backend_type} eq 'presence worker' }
	  presence_backends($node);
	return join(' ', map { "$_:$n{$_}" } sort keys %n);
}

# A session with a 1 s ttl in $db must be ended by that database's worker
# and announced to a listener there.
sub check_transition
{
	my ($db, $user) = @_;
	my $wpid = worker_pid($node, $db);
	my $listener = PresenceTAP::Listener->new($node, $db);
	my $dbh = db_connect($node, $db);
	$dbh->do(q{SELECT presence.heartbeat(?, 's1', ttl => '1 s', away_after => '1 h')},
		undef, $user);
	my @got = $listener->wait_for_user_status($user, 'offline', 30);
	ok(@got, "$db: $user is ended by the worker and announced on LISTEN");
	is($got[0]{pid}, $wpid, "$db: sent by the worker of $db") if @got;
	is(query_value($dbh, 'SELECT pid FROM presence.worker_status()'),
		$wpid, "$db: worker_status() shows the worker of $db");
	$dbh->disconnect;
	$listener->disconnect;
	return;
}

# --- CREATE EXTENSION in a new database -------------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE db2');
$node->safe_psql('db2', 'CREATE EXTENSION presence');
my $t = wait_until(15, sub { defined worker_pid($node, 'db2') });
ok(defined $t, 'CREATE EXTENSION in db2 starts a worker for db2');
note sprintf('worker for db2 %.2f s after CREATE EXTENSION', $t // -1);
is(served(), 'db2:1', 'only db2 has a worker (postgres has no extension)');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_extension WHERE extname = 'presence'}),
	'0', 'postgres indeed has no presence');
check_transition('db2', 'u2');

# --- DROP EXTENSION and CREATE EXTENSION again ------------------------------

my $w_db2 = worker_pid($node, 'db2');
$node->safe_psql('db2', 'DROP EXTENSION presence');
$t = wait_until(15, sub { !defined worker_pid($node, 'db2') });
ok(defined $t, 'DROP EXTENSION stops the worker of db2');
note sprintf('worker for db2 gone %.2f s after DROP EXTENSION', $t // -1);
is($node->safe_psql('db2', 'SELECT count(*) FROM pg_extension WHERE extname = \'presence\''),
	'0', 'the extension is gone from db2');

$node->safe_psql('db2', 'CREATE EXTENSION presence');
$t = wait_until(15, sub { defined worker_pid($node, 'db2') });
ok(defined $t, 'CREATE EXTENSION again brings a worker back to db2');
note sprintf('worker for db2 back %.2f s after CREATE EXTENSION', $t // -1);
isnt(worker_pid($node, 'db2'), $w_db2, 'a new worker');
check_transition('db2', 'u2b');

# --- DROP DATABASE, plain and WITH (FORCE) ----------------------------------

$node->safe_psql('postgres', 'CREATE DATABASE db3');
$node->safe_psql('db3', 'CREATE EXTENSION presence');
ok(defined wait_until(15, sub { defined worker_pid($node, 'db3') }),
	'db3 has a worker');
is(served(), 'db2:1 db3:1', 'db2 and db3 are served');
my %dropped_oid = map {
	$_ => $node->safe_psql('postgres',
		"SELECT oid FROM pg_database WHERE datname = '$_'")
} qw(db2 db3);

my $log_pos = log_position($node);

my $t0 = time;
my ($ret, $stdout, $stderr) = $node->psql('postgres', 'DROP DATABASE db2');
is($ret, 0, 'a plain DROP DATABASE of a database with a running worker succeeds')
  or diag $stderr;
note sprintf('DROP DATABASE db2 took %.2f s', time - $t0);

# A client stays connected to db3: FORCE ends it, and the worker too.
my $client = db_connect($node, 'db3');
$t0 = time;
($ret, $stdout, $stderr) =
  $node->psql('postgres', 'DROP DATABASE db3 WITH (FORCE)');
is($ret, 0, 'DROP DATABASE ... WITH (FORCE) with a worker and a client succeeds')
  or diag $stderr;
note sprintf('DROP DATABASE db3 WITH (FORCE) took %.2f s', time - $t0);
eval { $client->disconnect };

is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_database WHERE datname IN ('db2', 'db3')}),
	'0', 'db2 and db3 are gone');
ok(defined wait_until(15, sub { served() eq '' }),
	'no worker is left for the dropped databases');

# --- A template database with presence, and CREATE DATABASE TEMPLATE it -----

$node->safe_psql('postgres', 'CREATE DATABASE tmpl IS_TEMPLATE true');
$node->safe_psql('tmpl', 'CREATE EXTENSION presence');
$node->safe_psql('tmpl',
	q{SELECT presence.heartbeat('from_template', 's1', ttl => '1 h', away_after => '1 h')});

$t0 = time;
($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE DATABASE db4 TEMPLATE tmpl');
is($ret, 0, 'CREATE DATABASE db4 TEMPLATE tmpl succeeds') or diag $stderr;
# The launcher finds databases made from a template by rescanning
# pg_database about every 10 s.
$t = wait_until(30, sub { defined worker_pid($node, 'db4') }, 0.2);
ok(defined $t, 'db4, made from a template with presence, gets a worker');
note sprintf('worker for db4 %.2f s after CREATE DATABASE', time - $t0);
is(served(), 'db4:1', 'the template itself has no worker');
check_transition('db4', 'u4');
is($node->safe_psql('db4', q{SELECT status FROM presence.get('from_template')}),
	'online', 'db4 has the state copied from the template');

# --- CREATE DATABASE ... TEMPLATE and ALTER DATABASE ... RENAME of a database
# whose worker runs: the worker steps aside and comes back.

my $w_db4 = worker_pid($node, 'db4');
$t0 = time;
($ret, $stdout, $stderr) =
  $node->psql('postgres', 'CREATE DATABASE db5 TEMPLATE db4');
is($ret, 0, 'CREATE DATABASE db5 TEMPLATE db4 (db4 has a worker) succeeds')
  or diag $stderr;
note sprintf('CREATE DATABASE db5 TEMPLATE db4 took %.2f s', time - $t0);
$t = wait_until(15, sub { defined worker_pid($node, 'db4') });
ok(defined $t, 'db4 gets its worker back');
note sprintf('worker for db4 back %.2f s after CREATE DATABASE', $t // -1);
isnt(worker_pid($node, 'db4'), $w_db4, '(a new one)');

$t0 = time;
($ret, $stdout, $stderr) =
  $node->psql('postgres', 'ALTER DATABASE db4 RENAME TO db4r');
is($ret, 0, 'ALTER DATABASE db4 RENAME (db4 has a worker) succeeds')
  or diag $stderr;
$t = wait_until(15, sub { defined worker_pid($node, 'db4r') });
ok(defined $t, 'db4r gets its worker back after the rename');
note sprintf('worker for db4r %.2f s after the rename', time - $t0);

$t = wait_until(30, sub { defined worker_pid($node, 'db5') }, 0.2);
ok(defined $t, 'db5 gets a worker');
is(served(), 'db4r:1 db5:1', 'db4r and db5 are served, once each');
check_transition('db5', 'u5');

# --- The launcher forgot the dropped databases -------------------------------
#
# db4 and db5 were found by at least one rescan of pg_database since the
# drops, so by now the launcher had every chance to try db2 or db3 again.
my $log = log_since($node, $log_pos);
my @tries = ($log =~ /^.*database (?:\Q$dropped_oid{db2}\E|\Q$dropped_oid{db3}\E) does not exist.*$/mg);
is(scalar @tries, 0, 'no attempt to start a worker in a dropped database')
  or diag join("\n", @tries);
# (The workers that DROP DATABASE and the like stop, and the client that
# FORCE disconnects, end with "... due to administrator command".)
my @presence_errors =
  grep { /(ERROR|FATAL|PANIC):/ && !/due to administrator command/ }
  split /\n/, $log;
is(scalar @presence_errors, 0, 'no errors in the log since the drops')
  or diag join("\n", @presence_errors);
unlike($log, qr/presence worker started for database "db[23]"/,
	'no worker started for db2 or db3 after the drops');

# --- A fast stop completes promptly -----------------------------------------

$t0 = time;
$node->stop('fast');
my $stop = time - $t0;
note sprintf('fast stop with %s took %.2f s', 'two workers', $stop);
cmp_ok($stop, '<', 10, 'fast stop completes within 10 s');

done_testing();
