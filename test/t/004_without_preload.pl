
# 004_without_preload.pl: the extension without shared_preload_libraries.
#
# No launcher and no worker exist, yet every function works:
#  - CREATE EXTENSION, heartbeat(), set_status(), disconnect(), get();
#  - worker_status() returns no rows and pg_stat_activity shows no presence
#    process;
#  - nothing happens on its own: a session past its deadlines keeps its
#    announced status;
#  - sweep(now() + interval '1 hour') applies every due transition, dated at
#    its deadline, and announces each once on LISTEN, from the calling
#    backend.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PresenceTAP;

my $node = presence_node('nopreload', preload => 0);
is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'),
	'', 'shared_preload_libraries is empty');
$node->safe_psql('postgres', 'CREATE EXTENSION presence');
pass('CREATE EXTENSION works without preloading');

my $dbh = db_connect($node);
my $listener = PresenceTAP::Listener->new($node, 'postgres');
my $mypid = query_value($dbh, 'SELECT pg_backend_pid()');

# --- The functions work -----------------------------------------------------

is( query_value($dbh,
		q{SELECT presence.heartbeat('ann', 'tab', ttl => '2 s', away_after => '1 s')}),
	'online', 'heartbeat() returns online');
is( query_value($dbh,
		q{SELECT presence.heartbeat('ben', 'tab', ttl => '1 day', away_after => '1 day')}),
	'online', 'heartbeat() for another user');
is( query_value($dbh,
		q{SELECT presence.set_status('ben', 'busy', 'lunch', now() + interval '1 s')}),
	'busy', 'set_status() returns busy');
is( query_value($dbh,
		q{SELECT presence.heartbeat('cal', 'tab', ttl => '1 h', away_after => '1 h')}),
	'online', 'heartbeat() for a third user');
is(query_value($dbh, q{SELECT presence.disconnect('cal')}),
	'offline', 'disconnect() returns offline');
is( query_value($dbh,
		q{SELECT string_agg(user_id || '=' || status || '/' || sessions, ' ' ORDER BY user_id)
			FROM presence.statuses(ARRAY['ann', 'ben', 'cal'])}),
	'ann=online/1 ben=busy/1 cal=offline/0', 'get()/statuses() show them');
is(query_value($dbh, q{SELECT message FROM presence.get('ben')}),
	'lunch', "get() shows ben's message");

# --- No worker --------------------------------------------------------------

is(query_value($dbh, 'SELECT count(*) FROM presence.worker_status()'),
	0, 'worker_status() returns no rows');
is( query_value($dbh,
		q{SELECT count(*) FROM pg_stat_activity
		   WHERE backend_type LIKE 'presence%'}),
	0, 'no presence process in pg_stat_activity');

# Nothing moves on its own: wait until every deadline has passed, then the
# announced statuses are still what they were.
my $last = query_value($dbh,
	q{SELECT greatest((SELECT max(end_at) FROM presence.sessions WHERE user_id = 'ann'),
					  (SELECT manual_until FROM presence.users WHERE user_id = 'ben'))::text});
ok( defined wait_until(30,
		sub { query_value($dbh, 'SELECT clock_timestamp() > ?::timestamptz', $last) }),
	'all deadlines have passed');
is( query_value($dbh,
		q{SELECT string_agg(user_id || '=' || status, ' ' ORDER BY user_id)
			FROM presence.statuses(ARRAY['ann', 'ben'])}),
	'ann=online ben=busy', 'without sweep(), nothing changed by itself');

my $ann = query_row($dbh,
	q{SELECT away_at::text, end_at::text FROM presence.sessions WHERE user_id = 'ann'});
my $ben_until = query_value($dbh,
	q{SELECT manual_until::text FROM presence.users WHERE user_id = 'ben'});

$listener->pump(0);
my $before = scalar $listener->all;
is($before, 5, 'LISTEN got the 5 events of the calls (connects, busy, disconnect)');

# --- sweep() ----------------------------------------------------------------

is(query_value($dbh, q{SELECT presence.sweep(now() + interval '1 hour')}),
	2, 'sweep(now() + 1 hour) applies the due transitions: 2 events');
is( query_value($dbh,
		q{SELECT string_agg(user_id || '=' || status || '/' || coalesce(message, '-'),
							' ' ORDER BY user_id)
			FROM presence.statuses(ARRAY['ann', 'ben', 'cal'])}),
	'ann=offline/- ben=online/- cal=offline/-', 'the statuses after sweep()');

$listener->drain(1);
my @new = ($listener->all)[ $before .. scalar($listener->all) - 1 ];
is(join(' ; ', map { "$_->{ev}{user_id}: $_->{ev}{previous}->$_->{ev}{status} ($_->{ev}{reason})" } @new),
	'ann: online->offline (timeout) ; ben: busy->online (expired)',
	'LISTEN gets one event per user: ann timed out, ben\'s busy expired');
is(scalar(grep { $_->{pid} == $mypid } @new),
	scalar(@new), 'sent by the backend that called sweep()');
sub same_time
{
	my ($x, $y) = @_;
	return query_value($dbh, 'SELECT ?::timestamptz = ?::timestamptz', $x, $y);
}
my ($ev_ann) = grep { $_->{ev}{user_id} eq 'ann' } @new;
my ($ev_ben) = grep { $_->{ev}{user_id} eq 'ben' } @new;
ok($ev_ann && same_time($ev_ann->{ev}{at}, $ann->{end_at}),
	"ann's timeout is dated at her end_at, not at the sweep");
ok($ev_ben && same_time($ev_ben->{ev}{at}, $ben_until),
	"ben's expiry is dated at his until");
is(join(',', sort keys %{ $new[0]{ev} }), EVENT_KEYS, 'payload keys');
is( query_value($dbh,
		q{SELECT count(*) FROM presence.history
		   WHERE seq IN (?, ?)}, map { $_->{ev}{seq} } @new),
	2, 'both events are in history with their seq');

is(query_value($dbh, q{SELECT presence.sweep(now() + interval '1 hour')}),
	0, 'a second sweep() finds nothing left');
$listener->drain(0.5);
is(scalar $listener->all, $before + 2, 'and announces nothing');

$listener->disconnect;
$dbh->disconnect;
$node->stop('fast');

done_testing();
