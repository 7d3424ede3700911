
# 005_standby.pl: presence on a streaming standby, and after its promotion.
#
#  - presence state replicates: get()/statuses() and history on the standby
#    match the primary;
#  - the standby runs no presence launcher or worker (worker_status() has
#    no rows there) and does nothing with sessions that fall due while it is
#    a standby;
#  - after promote, the new primary's launcher and worker start; a user
#    whose client keeps heartbeating on the new primary stays online, the
#    sessions that fell due are ended, each announced once, dated at its
#    deadline.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use PresenceTAP;

my $primary = presence_node('primary', init => { allows_streaming => 1 });
$primary->safe_psql('postgres', 'CREATE EXTENSION presence');
ok(defined wait_until(30, sub { defined worker_pid($primary, 'postgres') }),
	'the primary runs a worker');

$primary->backup('b1');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b1', has_streaming => 1);
# No grace after promotion, so that what is due is ended at once.
$standby->append_conf('postgresql.conf', "presence.startup_grace = 0");
$standby->start;

my $pdbh = db_connect($primary);
my $plistener = PresenceTAP::Listener->new($primary, 'postgres');

# --- State replicates -------------------------------------------------------

$pdbh->do(q{SELECT presence.heartbeat('p_long', 's1', ttl => '1 h', away_after => '1 h')});
$pdbh->do(q{SELECT presence.set_status('p_long', 'busy', 'replicated')});
$pdbh->do(q{SELECT presence.heartbeat('p_short', 's1', ttl => '1 s', away_after => '1 h')});
ok(scalar $plistener->wait_for_user_status('p_short', 'offline', 30),
	"the primary's worker ends p_short");
$plistener->disconnect;
$primary->wait_for_catchup($standby);

my $state_sql = q{
	SELECT string_agg(concat_ws('|', user_id, status, message, last_active,
								last_seen, since, sessions), E'\n')
	  FROM presence.statuses(ARRAY['p_long', 'p_short'])};
my $history_sql = q{
	SELECT string_agg(concat_ws('|', seq, user_id, previous, status, reason, at),
					  E'\n' ORDER BY seq)
	  FROM presence.history};
is($standby->safe_psql('postgres', $state_sql),
	$primary->safe_psql('postgres', $state_sql),
	'statuses() on the standby match the primary');
is($standby->safe_psql('postgres', q{SELECT status || '/' || message FROM presence.get('p_long')}),
	'busy/replicated', 'get() on the standby shows the busy user');
is($standby->safe_psql('postgres', $history_sql),
	$primary->safe_psql('postgres', $history_sql),
	'history on the standby matches the primary');

# --- The standby runs nothing -----------------------------------------------

is( $standby->safe_psql('postgres',
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'presence%'}),
	'0', 'no presence launcher or worker on the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM presence.worker_status()'),
	'0', 'worker_status() on the standby returns no rows');

# keep, gone1 and gone2 connect on the primary; gone1 and gone2 end in 2 s.
# A transaction holding their rows keeps the primary's worker (which skips
# locked users) from ending them before the primary stops; the standby
# then has two sessions past their deadline.
$pdbh->do(q{SELECT presence.heartbeat('keep', 's1', ttl => '30 s', away_after => '1 h')});
$pdbh->do(q{SELECT presence.heartbeat(u, 's1', ttl => '2 s', away_after => '1 h')
			  FROM unnest(ARRAY['gone1', 'gone2']) AS u});
my $locker = db_connect($primary);
$locker->begin_work;
$locker->do(q{SELECT FROM presence.users WHERE user_id IN ('gone1', 'gone2') FOR UPDATE});
my %end_at = map {
	$_ => query_value($pdbh,
		'SELECT end_at::text FROM presence.sessions WHERE user_id = ?', $_)
} qw(gone1 gone2);
my $seq_before = query_value($pdbh, 'SELECT max(seq) FROM presence.history');
$primary->wait_for_catchup($standby);
$pdbh->disconnect;
$primary->stop('fast');
eval { $locker->disconnect };

my $sdbh = db_connect($standby);
ok( defined wait_until(30,
		sub {
			query_value($sdbh, 'SELECT clock_timestamp() > ?::timestamptz',
				$end_at{gone2});
		}),
	'gone1 and gone2 are past their deadlines');
my $log_pos = log_position($standby);
is( query_value($sdbh,
		q{SELECT string_agg(user_id || '=' || status || '/' || sessions, ' ' ORDER BY user_id)
			FROM presence.statuses(ARRAY['gone1', 'gone2', 'keep'])}),
	'gone1=online/1 gone2=online/1 keep=online/1',
	'the standby has the replicated sessions, due ones included');
is( query_value($sdbh,
		q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'presence%'}),
	0, 'still no presence process on the standby');
$sdbh->disconnect;

# --- Promotion --------------------------------------------------------------

$standby->promote;
ok( defined wait_until(60,
		sub { $standby->safe_psql('postgres', 'SELECT NOT pg_is_in_recovery()') eq 't' },
		0.1),
	'the standby is promoted');
my $t_promoted = time;
my $t = wait_until(30,
	sub { defined launcher_pid($standby) && defined worker_pid($standby, 'postgres') });
ok(defined $t, "the new primary's launcher and worker start");
note sprintf('worker running %.2f s after promotion', time - $t_promoted);
my $wpid = worker_pid($standby, 'postgres');

# keep's client heartbeats every 0.3 s with a 2 s ttl until the others are
# gone, and for 3 s more.
my $dbh = db_connect($standby);
my $gone_sql = q{SELECT count(*) = 2 FROM presence.history
				  WHERE seq > ? AND user_id IN ('gone1', 'gone2')
					AND reason = 'timeout'};
my ($hb, $gone_at) = (0, undef);
my $limit = time + 30;
while (time < $limit)
{
	$dbh->do(q{SELECT presence.heartbeat('keep', 's1', ttl => '2 s', away_after => '1 h')});
	$hb++;
	$gone_at //= time if query_value($dbh, $gone_sql, $seq_before);
	last if defined $gone_at && time > $gone_at + 3;
	usleep(300_000);    # the client's heartbeat interval
}
ok(defined $gone_at, 'gone1 and gone2 are ended on the new primary');
note sprintf('%d heartbeats of keep; the others ended %.2f s after promotion',
	$hb, ($gone_at // time) - $t_promoted);

foreach my $u (qw(gone1 gone2))
{
	my $rows = query_rows($dbh,
		q{SELECT reason, at::text FROM presence.history
		   WHERE seq > ? AND user_id = ? ORDER BY seq}, $seq_before, $u);
	is(join(',', map { $_->{reason} } @$rows), 'timeout',
		"$u: announced once, as a timeout");
	ok( @$rows
		  && query_value($dbh, 'SELECT ?::timestamptz = ?::timestamptz',
			$rows->[0]{at}, $end_at{$u}),
		"$u: dated at its deadline");
}
is(query_value($dbh, q{SELECT status FROM presence.get('keep')}),
	'online', 'keep, heartbeating on the new primary, is online');
is( query_value($dbh,
		q{SELECT string_agg(reason, ',' ORDER BY seq) FROM presence.history
		   WHERE user_id = 'keep'}),
	'connect', 'keep was never announced offline');
is(query_value($dbh, q{SELECT status FROM presence.get('p_long')}),
	'busy', 'p_long is still busy');

my $ws = query_row($dbh, 'SELECT * FROM presence.worker_status()');
is($ws->{pid}, $wpid, "worker_status() on the new primary shows its worker");
cmp_ok($ws->{transitions}, '>=', 2, 'it made the transitions');
is($ws->{errors}, 0, 'without errors');

# (The walreceiver's complaints about the stopped primary are expected.)
my @errors =
  grep { /(ERROR|FATAL|PANIC):/ && !/walreceiver|primary server|replication terminated/ }
  split /\n/, log_since($standby, $log_pos);
is(scalar @errors, 0, 'no errors in the standby\'s log since it had due sessions')
  or diag join("\n", @errors);

$dbh->disconnect;
$standby->stop('fast');

done_testing();
