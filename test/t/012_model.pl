
# 012_model.pl: model-based randomized test of the pure SQL API.
#
# A seeded generator makes thousands of call sequences (heartbeat,
# heartbeat_many, disconnect, set_status, sweep, join, leave, set_meta,
# typing, broadcast, savepoints rolled back or released, and calls with
# hostile arguments: NULLs, empty and over-long ids, quotes, backslashes,
# control characters and multibyte text, ids of exactly 256 bytes, bad
# JSON, zero, negative and huge intervals, infinite times) and runs each
# against a cluster without the worker, comparing every step with the
# independent model in PresenceModel.pm (written from the README):
#  - each call's result, or the SQLSTATE of its error;
#  - sweep()'s count of events;
#  - after every step, each user's get() row (status, message, since,
#    last_active, last_seen, sessions, through statuses()); online_users()
#    every fifth step; room_count(), members(), typing_users() and rooms()
#    of each room the step touched; all of them after the last step;
#  - at commit, the status events (history rows and NOTIFYs) and the room
#    events (NOTIFY on each room's channel) of every step, in order (those
#    of one sweep as a set: the README does not order users).
#
# Time: each sequence is one transaction, so now() is fixed (the model's
# 0) and every deadline is now() plus an offset; time moves only through
# sweep(now() + t), which the generator aims at deadlines, just before and
# after them, or far beyond (and at -infinity and infinity).  Calls happen
# at now(), which lies before the time the sweeps have reached, as for a
# transaction that started before a sweep of the worker: a call is only
# generated if it leaves no deadline of its user at or before that time
# (no "until" already past, no ttl already run out).
#
# Each sequence ends by disconnecting its users and clearing their timed
# overrides, so that no later sequence meets its deadlines.  Sequences run
# in PRESENCE_MODEL_WORKERS (2) forked workers, each with its own
# connections, rooms and user prefix.  A few directed sequences (earlier
# findings) run first.
#
# A failing sequence is shrunk (delta debugging over its steps) and
# printed with the seed that made it and its settings.  Knobs:
# PRESENCE_MODEL_SEED (default: random, printed), PRESENCE_MODEL_SEQUENCES
# (default 3000), PRESENCE_MODEL_SECONDS (a time budget, default 60: on a
# slow machine fewer sequences run), PRESENCE_MODEL_ONLY=j (only sequence
# j of the seed, to repeat a failure).
use strict;
use warnings;
use utf8;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use POSIX ();
use IO::Select;
use JSON::PP;
use Encode ();
use PresenceTAP;
use PresenceModel qw($INF $NINF canon_json iso_us);

# Test::More's output goes through the framework's tee, which takes
# bytes: messages are encoded first (see utf8_diag).
sub utf8_diag { diag(Encode::encode_utf8(join('', @_))); }

use constant SEC => 1_000_000;
use constant DAY => 86_400 * SEC;

my $SEED = $ENV{PRESENCE_MODEL_SEED} // int(rand(2**31));
my $SEQUENCES = $ENV{PRESENCE_MODEL_SEQUENCES} // 3000;
my $BUDGET = $ENV{PRESENCE_MODEL_SECONDS} // 60;
note "seed $SEED (set PRESENCE_MODEL_SEED=$SEED to repeat this run)";


# --- The cluster, without the worker ------------------------------------------

my $node = presence_node('model', preload => 0);
$node->safe_psql('postgres', 'CREATE EXTENSION presence');

# The sequences run in parallel workers (forked processes), each with its
# own connection, LISTEN connection, rooms and user prefix.  A step names
# a room by index (R0 to R3); room_name() gives the worker's room.  The
# last one is exactly 200 bytes, the limit.
my $WORKERS = $ENV{PRESENCE_MODEL_WORKERS} // 2;
our ($WORKER, @ROOMS, %ROOM_CHANNEL, $dbh, $listener, @bad_json);

sub worker_rooms
{
	my ($k) = @_;
	my $p = "w$k";
	my $pad = 200 - length($p);
	return ("$p-r1", "$p-r2", qq{$p it's "quoted" \\ room},
		$p . ('é' x int($pad / 2)) . ('x' x ($pad % 2)));
}

sub room_spec
{
	my ($name) = @_;
	my ($i) = grep { $ROOMS[$_] eq $name } 0 .. $#ROOMS;
	return defined $i ? "R$i" : $name;
}

sub room_name
{
	my ($spec) = @_;
	return $spec unless defined $spec && $spec =~ /^R(\d)$/;
	return $ROOMS[$1];
}

sub worker_setup
{
	my ($k) = @_;
	$WORKER = $k;
	@ROOMS = worker_rooms($k);
	$dbh = db_connect($node);
	$dbh->{pg_server_prepare} = 0;
	$dbh->{pg_enable_utf8} = 1;
	%ROOM_CHANNEL = map { room_channel($dbh, $_) => $_ } @ROOMS;
	$listener = db_connect($node);
	$listener->{pg_enable_utf8} = 1;
	$listener->do('LISTEN ' . $listener->quote_identifier($_))
	  foreach ('presence', "model_sentinel_$k", sort keys %ROOM_CHANNEL);
	return;
}

my $json = JSON::PP->new->canonical->allow_nonref;

# Ids: plain ones, and hostile but valid ones (quotes, backslashes,
# control characters, multibyte, exactly 256 bytes), each made unique to
# a run by a prefix; see user_name().
my @SESSION_IDS = ('a', 'b', 'c', 'default', q{o'hara "x" \\n}, "tab\tnew",
	('ü' x 128), ('y' x 256), 'emoji 😀', ' ');
my $NHOSTILE = 6;
my @MESSAGES = (undef, '', 'lunch', 'meeting', q{it's "quoted" \\ back},
	"line\nbreak\ttab", ('é' x 256), '😀 ok');

# --- Generating a sequence ------------------------------------------------------
#
# A step is a hash: op and its arguments.  Times are microseconds after
# now(); 'INF'/'NINF' stand for the infinities.  Users are named by index
# (u0, u1, ...) or hostile (h0, h1, ...: see user_name()); the runner adds a prefix
# unique to each run so that sequences never share users.

sub gen_settings
{
	my ($r) = @_;
	return {
		session_ttl => $r->pick(60, 10, 300, 3600) * SEC,
		away_after => $r->pick(300, 30, 0, 3600) * SEC,
		granularity => $r->pick(60 * SEC, 0, SEC, 10 * SEC, 3600 * SEC),
		typing_timeout => $r->pick(5, 30, 600) * SEC,
		meta_interval => $r->pick(100_000, 0, 0, 5 * SEC),
	};
}

sub offset
{
	my ($r) = @_;
	my $kind = $r->weighted(secs => 6, minutes => 3, tiny => 1, frac => 2);
	return (1 + $r->int(60)) * SEC if $kind eq 'secs';
	return (1 + $r->int(10)) * 60 * SEC if $kind eq 'minutes';
	return 1 + $r->int(3) if $kind eq 'tiny';
	return 1 + $r->int(120 * SEC);
}

sub gen_user
{
	my ($r, $nusers) = @_;
	return 'h' . $r->int($NHOSTILE) if $r->chance(0.04);
	return 'u' . $r->int($nusers);
}

sub gen_session
{
	my ($r) = @_;
	return $r->pick(@SESSION_IDS[ 4 .. $#SESSION_IDS ]) if $r->chance(0.04);
	return $r->pick(@SESSION_IDS[ 0 .. 3 ]);
}

sub gen_meta
{
	my ($r) = @_;
	return undef if $r->chance(0.5);
	return $r->pick({ p => $r->int(3) }, { cursor => $r->int(100), sel => [ 1, 2 ] },
		{}, { 'k"\\' => "v\n" });
}

# A deadline argument: an offset from now() that lands after the clock.
sub future
{
	my ($r, $clock) = @_;
	return undef if $clock >= $INF;
	return $clock + offset($r);
}

# One step with an argument out of range, or of the wrong kind.
sub gen_invalid
{
	my ($r, $u, $s, $room) = @_;
	my $bad_id = $r->pick(undef, '', ('x' x 257), ('é' x 129));
	my $bad_room = $r->pick(undef, '', ('x' x 201));
	my $bad_meta = $r->pick(\'[1, 2]', \'"text"', \'null',
		{ k => 'x' x 2100 });
	my $which = $r->int(20);
	return { op => 'heartbeat_many', users => undef, sessions => [$s], active => 1 }
	  if $which == 16;
	return { op => 'heartbeat_many', users => [ $u, $bad_id ], sessions => [ $s, $s ],
		active => 1 }
	  if $which == 17;
	return { op => 'heartbeat_many', users => [ $u, $u ], sessions => [$s],
		active => $r->pick(1, undef) }
	  if $which == 18;
	return { op => 'broadcast', room => $room,
		payload => $r->pick(undef, { k => 'x' x 5000 }) }
	  if $which == 19;
	return { op => 'heartbeat', user => $bad_id, session => $s, active => 1 }
	  if $which == 0;
	return { op => 'heartbeat', user => $u, session => $bad_id, active => 1 }
	  if $which == 1;
	return { op => 'heartbeat', user => $u, session => $s, active => undef }
	  if $which == 2;
	return { op => 'heartbeat', user => $u, session => $s, active => 1,
		meta => $bad_meta }
	  if $which == 3;
	return { op => 'heartbeat', user => $u, session => $s, active => 1,
		ttl => $r->pick(0, -SEC, 366 * DAY, 100 * 365 * DAY) }
	  if $which == 4;
	return { op => 'heartbeat', user => $u, session => $s, active => 1,
		away_after => $r->pick(-1, -SEC, 366 * DAY) }
	  if $which == 5;
	return { op => 'disconnect', user => $bad_id, session => $s } if $which == 6;
	return { op => 'disconnect', user => $u, session => $r->pick('', 'x' x 257) }
	  if $which == 7;
	return { op => 'set_status', user => $u,
		status => $r->pick(undef, 'offline', 'BUSY', 'sleeping', ''),
		message => 'm' }
	  if $which == 8;
	return { op => 'set_status', user => $u, status => 'busy',
		message => 'é' x 257 }
	  if $which == 9;
	return { op => 'set_status', user => $u, status => 'busy', message => 'm',
		until => $r->pick(0, -SEC, 'NINF') }
	  if $which == 10;
	return { op => 'sweep', as_of => undef } if $which == 11;
	return { op => 'join', room => $bad_room, user => $u, session => $s }
	  if $which == 12;
	return { op => 'join', room => $room, user => $u, session => $s,
		meta => $bad_meta }
	  if $which == 13;
	return { op => 'typing', room => $room, user => $u, is_typing => undef }
	  if $which == 14;
	return { op => 'set_meta', room => $bad_room, user => $u, session => $s,
		meta => { p => 1 } };
}

sub gen_step
{
	my ($r, $sim, $nusers) = @_;
	my ($model, $clock, $depth) =
	  ($sim->{model}, $sim->{clock}, scalar @{ $sim->{saved} });
	my $u = gen_user($r, $nusers);
	my $s = gen_session($r);
	my $room = $r->chance(0.9) ? $r->pick('R0', 'R1') : $r->pick(map { "R$_" } 0 .. 3);
	# Room calls mostly aim at a session that is in a room.
	my @in;
	foreach my $rm (sort keys %{ $model->{members} })
	{
		foreach my $uid (sort keys %{ $model->{members}{$rm} })
		{
			push @in, map { [ room_spec($rm), $sim->{spec}{$uid}, $_ ] }
			  sort keys %{ $model->{members}{$rm}{$uid} };
		}
	}
	my ($mroom, $muser, $msession) = @{ @in ? $r->pick(@in) : [] };
	my $op = $r->weighted(
		heartbeat => 30, disconnect => 7, set_status => 12, sweep => 24,
		join => 8, leave => 4, set_meta => 4, typing => 5, invalid => 4,
		heartbeat_many => 3, broadcast => 1,
		savepoint => 2, rollback => $depth ? 2 : 0, release => $depth ? 1 : 0);
	# Nobody is in a room yet: mostly join one first.
	$op = 'join' if $op =~ /^(set_meta|typing)$/ && !@in && $r->chance(0.8);

	if ($op eq 'heartbeat')
	{
		my %st = (op => 'heartbeat', user => $u, session => $s,
			active => $r->chance(0.75) ? 1 : 0);
		$st{meta} = gen_meta($r);
		$st{ttl} = future($r, $clock) if $r->chance(0.7);
		$st{ttl} = $r->pick(365 * DAY, 1) if $r->chance(0.02);
		if ($r->chance(0.5))
		{
			$st{away_after} = $r->chance(0.3) ? 0 : future($r, $clock);
		}
		return \%st;
	}
	if ($op eq 'disconnect')
	{
		return { op => 'disconnect', user => $u,
			session => $r->chance(0.4) ? undef : $s };
	}
	if ($op eq 'set_status')
	{
		my %st = (op => 'set_status', user => $u,
			status => $r->pick(qw(away busy dnd invisible auto online)),
			message => $r->pick(@MESSAGES));
		my $k = $r->int(20);
		$st{until} = future($r, $clock) if $k < 8;
		$st{until} = 'INF' if $k == 8;
		return \%st;
	}
	if ($op eq 'sweep')
	{
		my @next = grep { $_ > $clock } $model->pending_deadlines;
		my $k = $r->int(20);
		my $as_of;
		if ($clock >= $INF)
		{
			$as_of = $r->pick('INF', 'NINF', -SEC);
		}
		elsif (@next && $k < 10)
		{
			# exactly at a deadline, or just before or after it
			my $d = $next[ $r->int(@next < 3 ? scalar @next : 3) ];
			$as_of = $d + $r->pick(0, 0, 0, -1, 1);
		}
		elsif ($k < 14) { $as_of = $clock + offset($r); }
		elsif ($k < 16) { $as_of = $clock + $r->pick(1, 24) * 3600 * SEC; }
		elsif ($k < 18) { $as_of = $r->pick($clock, $clock - SEC, -SEC, 'NINF'); }
		elsif ($k < 19) { $as_of = $r->chance(0.5) ? 'INF' : $clock + 400 * DAY; }
		else { $as_of = $clock + $r->int(10) * SEC; }
		return { op => 'sweep', as_of => $as_of };
	}
	if ($op eq 'join')
	{
		return { op => 'join', room => $room, user => $u, session => $s,
			meta => gen_meta($r) };
	}
	($room, $u, $s) = ($mroom, $muser, $msession)
	  if $op =~ /^(leave|set_meta|typing)$/ && @in && $r->chance(0.8);
	if ($op eq 'leave')
	{
		return { op => 'leave', room => $room, user => $u,
			session => $r->chance(0.4) ? undef : $s };
	}
	if ($op eq 'set_meta')
	{
		return { op => 'set_meta', room => $room, user => $u, session => $s,
			meta => $r->chance(0.2) ? undef : { cursor => $r->int(1000) } };
	}
	if ($op eq 'typing')
	{
		return { op => 'typing', room => $room, user => $u,
			is_typing => $r->chance(0.7) ? 1 : 0 };
	}
	if ($op eq 'heartbeat_many')
	{
		my $n = $r->int(4);
		my @u = map { gen_user($r, $nusers) } 1 .. $n;
		my @s = map { gen_session($r) } 1 .. $n;
		return { op => 'heartbeat_many', users => \@u, sessions => \@s,
			active => $r->chance(0.7) ? 1 : 0 };
	}
	if ($op eq 'broadcast')
	{
		return { op => 'broadcast', room => $room,
			payload => $r->pick({ cursor => $r->int(9) }, [ 1, 'two' ], 'text',
				{ 'q"\\' => "\n" }) };
	}
	return gen_invalid($r, $u, $s, $room) if $op eq 'invalid';
	return { op => $op };
}

# A sequence: settings and steps.  The generator runs the model alongside,
# so that it can aim sweeps at deadlines and leave out calls that the time
# reached would make inconsistent (see guard()).
sub gen_sequence
{
	my ($seed) = @_;
	my $r = PresenceModel::Rng->new($seed);
	my $settings = gen_settings($r);
	my $nusers = 1 + $r->int(3);
	my $len = 3 + $r->int(24);
	my $sim = Sim->new($settings);
	my @steps;
	my $tries = 0;
	while (@steps < $len && $tries++ < $len * 20)
	{
		my $st = gen_step($r, $sim, $nusers);
		next unless $sim->apply($st, 'p_');
		push @steps, $st;
	}
	return { seed => $seed, settings => $settings, steps => \@steps };
}

# --- Applying steps to the model ------------------------------------------------

package Sim
{
	use PresenceModel qw($INF $NINF);

	sub new
	{
		my ($class, $settings) = @_;
		return bless {
			model => PresenceModel->new(%$settings),
			clock => 0,
			saved => [],
			spec => {},
		}, $class;
	}

	sub t
	{
		my ($v) = @_;
		return $INF if defined $v && $v eq 'INF';
		return $NINF if defined $v && $v eq 'NINF';
		return $v;
	}

	# The SQLSTATE the step must fail with, or undef.
	sub error_of
	{
		my ($self, $st) = @_;
		my $m = $self->{model};
		my $op = $st->{op};
		my $e;
		if ($op eq 'heartbeat')
		{
			return $e
			  if $e = PresenceModel::check_id($st->{user})
			  // PresenceModel::check_id($st->{session});
			return '22004' unless defined $st->{active};
			my $meta = ref $st->{meta} eq 'SCALAR' ? 'bad' : $st->{meta};
			return '22023' if defined $meta && !ref $meta;
			return $e
			  if $e = PresenceModel::check_meta($meta)
			  // PresenceModel::check_ttl($st->{ttl})
			  // PresenceModel::check_away_after($st->{away_after});
			return undef;
		}
		if ($op eq 'heartbeat_many')
		{
			return '22004' unless defined $st->{users} && defined $st->{sessions};
			return $e
			  if $e = (grep { defined } map { PresenceModel::check_id($_) } @{ $st->{users} })[0]
			  // (grep { defined } map { PresenceModel::check_id($_) } @{ $st->{sessions} })[0];
			return '22004' unless defined $st->{active};
			return '2202E' if @{ $st->{users} } != @{ $st->{sessions} };
			return undef;
		}
		if ($op eq 'broadcast')
		{
			return PresenceModel::check_room(main::room_name($st->{room}))
			  // PresenceModel::check_payload($st->{payload});
		}
		if ($op eq 'disconnect')
		{
			return PresenceModel::check_id($st->{user})
			  // (defined $st->{session} ? PresenceModel::check_id($st->{session}) : undef);
		}
		if ($op eq 'set_status')
		{
			return $e
			  if $e = PresenceModel::check_id($st->{user})
			  // PresenceModel::check_status($st->{status})
			  // PresenceModel::check_message($st->{message});
			return '22023' if defined $st->{until} && t($st->{until}) <= 0;
			return undef;
		}
		if ($op eq 'sweep')
		{
			return defined $st->{as_of} ? undef : '22004';
		}
		if ($op eq 'join' || $op eq 'set_meta')
		{
			my $meta = ref $st->{meta} eq 'SCALAR' ? 'bad' : $st->{meta};
			return $e
			  if $e = PresenceModel::check_room(main::room_name($st->{room}))
			  // PresenceModel::check_id($st->{user})
			  // PresenceModel::check_id($st->{session});
			return '22023' if defined $meta && !ref $meta;
			return PresenceModel::check_meta($meta);
		}
		if ($op eq 'leave')
		{
			return PresenceModel::check_room(main::room_name($st->{room}))
			  // PresenceModel::check_id($st->{user})
			  // (defined $st->{session} ? PresenceModel::check_id($st->{session}) : undef);
		}
		if ($op eq 'typing')
		{
			return $e
			  if $e = PresenceModel::check_room(main::room_name($st->{room}))
			  // PresenceModel::check_id($st->{user});
			return defined $st->{is_typing} ? undef : '22004';
		}
		return undef;
	}

	# Run a valid call on the model: (result, events) or ('ERROR', sqlstate).
	sub call
	{
		my ($self, $st, $uid) = @_;
		my $m = $self->{model};
		my $op = $st->{op};
		if ($op eq 'heartbeat')
		{
			return $m->heartbeat($uid, $st->{session}, $st->{active},
				$st->{meta}, $st->{ttl}, $st->{away_after}, 0);
		}
		if ($op eq 'disconnect')
		{
			return $m->disconnect($uid, $st->{session}, 0);
		}
		if ($op eq 'heartbeat_many')
		{
			return $m->heartbeat_many($uid, $st->{sessions}, $st->{active}, 0);
		}
		if ($op eq 'broadcast')
		{
			return $m->broadcast(main::room_name($st->{room}), $st->{payload}, 0);
		}
		if ($op eq 'set_status')
		{
			return $m->set_status($uid, $st->{status}, $st->{message},
				t($st->{until}), 0);
		}
		if ($op eq 'join')
		{
			return $m->join_room(main::room_name($st->{room}), $uid, $st->{session},
				$st->{meta}, 0);
		}
		if ($op eq 'leave')
		{
			return $m->leave_room(main::room_name($st->{room}), $uid, $st->{session}, 0);
		}
		if ($op eq 'set_meta')
		{
			my ($err, @ev) = $m->set_meta(main::room_name($st->{room}), $uid, $st->{session},
				$st->{meta}, 0);
			return ('ERROR', $err) if $err;
			return (undef, @ev);
		}
		if ($op eq 'typing')
		{
			my ($err, @ev) = $m->typing(main::room_name($st->{room}), $uid, $st->{is_typing}, 0);
			return ('ERROR', $err) if $err;
			return (undef, @ev);
		}
		die "unknown op $op";
	}

	# Whether a call on the user is consistent with the time reached: it
	# leaves no deadline of theirs at or before the clock unapplied, and
	# their status derived at now() (what the call announces) is the one
	# derived at the clock.
	sub consistent
	{
		my ($self, $m, $uid) = @_;
		my $clock = $self->{clock};
		my $u = $m->{users}{$uid} or return 1;
		foreach my $s (values %{ $u->{sessions} })
		{
			return 0 if $s->{end_at} <= $clock;
			return 0 if !$s->{idle_done} && $s->{away_at} < $s->{end_at}
			  && $s->{away_at} <= $clock;
		}
		return 0 if defined $u->{until} && $u->{until} <= $clock;
		foreach my $room (keys %{ $m->{typing} })
		{
			my $f = $m->{typing}{$room}{$uid};
			return 0 if $f && $f->{until} <= $clock;
		}
		foreach my $room (keys %{ $m->{members} })
		{
			foreach my $mm (values %{ $m->{members}{$room}{$uid} // {} })
			{
				return 0 if defined $mm->{due_at} && $mm->{due_at} <= $clock;
			}
		}
		return PresenceModel::derive($u, 0) eq PresenceModel::derive($u, $clock);
	}

	# Apply a step to the model.  Returns undef if the step cannot be run
	# here (a call inconsistent with the clock, a rollback without a
	# savepoint), else { error => sqlstate } or { result, count, events }.
	sub apply
	{
		my ($self, $st, $prefix) = @_;
		my $op = $st->{op};
		if ($op eq 'savepoint')
		{
			push @{ $self->{saved} },
			  [ $self->{model}->snapshot, $self->{clock} ];
			return {};
		}
		if ($op eq 'rollback' || $op eq 'release')
		{
			return undef unless @{ $self->{saved} };
			my $s = pop @{ $self->{saved} };
			($self->{model}, $self->{clock}) = @$s if $op eq 'rollback';
			return {};
		}
		my $err = $self->error_of($st);
		return { error => $err } if $err;
		if ($op eq 'sweep')
		{
			my $as_of = t($st->{as_of});
			my ($n, @ev) = $self->{model}->sweep($as_of);
			$self->{clock} = $as_of if $as_of > $self->{clock};
			return { result => $n, events => \@ev };
		}
		my @specs = $op eq 'heartbeat_many' ? @{ $st->{users} } : ($st->{user});
		my @uids = map { main::user_name($_, $prefix) } @specs;
		for my $k (0 .. $#uids)
		{
			$self->{spec}{ $uids[$k] } = $specs[$k] if defined $uids[$k];
		}
		my $uid = $op eq 'heartbeat_many' ? \@uids : $uids[0];
		my $trial = bless { %$self, model => $self->{model}->snapshot }, ref $self;
		my ($res, @ev) = $trial->call($st, $uid);
		return { error => $ev[0] } if defined $res && $res eq 'ERROR';
		foreach my $x (@uids)
		{
			return undef unless !defined $x || $self->consistent($trial->{model}, $x);
		}
		$self->{model} = $trial->{model};
		return { result => $res, events => \@ev };
	}
}

package main;

# The user id of a step's user: uN and hN (hostile) are made unique to a
# run by the prefix; anything else (an invalid id) is used as it is.
sub user_name
{
	my ($u, $prefix) = @_;
	return $u unless defined $u && $u =~ /^([uh])(\d+)$/;
	return $prefix . $u if $1 eq 'u';
	my $n = $2;
	my $room = 256 - length(Encode::encode_utf8($prefix));
	return $prefix . q{o'hara "x" \\n} if $n == 0;
	return $prefix . "tab\tnew\nline" if $n == 1;
	return $prefix . ('ü' x int($room / 2)) . ('x' x ($room % 2)) if $n == 2;
	return $prefix . ('x' x $room) if $n == 3;
	return $prefix . 'emoji 😀' if $n == 4;
	return $prefix . ' ';
}

# --- Running a sequence against the database ---------------------------------

sub interval_us { return defined $_[0] ? "$_[0] microseconds" : undef; }

sub time_sql
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	return q{'infinity'::timestamptz} if $v eq 'INF';
	return q{'-infinity'::timestamptz} if $v eq 'NINF';
	return "now() + interval '$v microseconds'";
}

sub meta_text
{
	my ($v) = @_;
	return undef unless defined $v;
	return $$v if ref $v eq 'SCALAR';
	return $json->encode($v);
}

sub bool_text { return defined $_[0] ? ($_[0] ? 't' : 'f') : undef; }

# The SQL and bind values of a call.
sub step_sql
{
	my ($st, $uid) = @_;
	my $op = $st->{op};
	if ($op eq 'heartbeat')
	{
		return (q{SELECT presence.heartbeat(user_id => ?, session_id => ?,
					active => ?::boolean, meta => ?::jsonb, ttl => ?::interval,
					away_after => ?::interval)::text},
			$uid, $st->{session}, bool_text($st->{active}),
			meta_text($st->{meta}), interval_us($st->{ttl}),
			interval_us($st->{away_after}));
	}
	if ($op eq 'disconnect')
	{
		return ('SELECT presence.disconnect(?, ?)::text', $uid, $st->{session});
	}
	if ($op eq 'heartbeat_many')
	{
		return ('SELECT presence.heartbeat_many(?::text[], ?::text[], ?::boolean)',
			$uid, $st->{sessions}, bool_text($st->{active}));
	}
	if ($op eq 'broadcast')
	{
		return ('SELECT presence.broadcast(?, ?::jsonb)::text', room_name($st->{room}),
			meta_text($st->{payload}));
	}
	if ($op eq 'set_status')
	{
		return ('SELECT presence.set_status(?, ?, ?, ' . time_sql($st->{until})
			  . ')::text',
			$uid, $st->{status}, $st->{message});
	}
	if ($op eq 'sweep')
	{
		return ('SELECT presence.sweep(' . time_sql($st->{as_of}) . ')');
	}
	if ($op eq 'join')
	{
		return ('SELECT presence.join(?, ?, ?, ?::jsonb)::text', room_name($st->{room}),
			$uid, $st->{session}, meta_text($st->{meta}));
	}
	if ($op eq 'leave')
	{
		return ('SELECT presence.leave(?, ?, ?)::text', room_name($st->{room}), $uid,
			$st->{session});
	}
	if ($op eq 'set_meta')
	{
		return ('SELECT presence.set_meta(?, ?, ?, ?::jsonb)::text', room_name($st->{room}),
			$uid, $st->{session}, meta_text($st->{meta}));
	}
	if ($op eq 'typing')
	{
		return ('SELECT presence.typing(?, ?, ?::boolean)::text', room_name($st->{room}),
			$uid, bool_text($st->{is_typing}));
	}
	die "no SQL for $op";
}

# The reads after a step: get() of the users (through statuses()), and
# optionally online_users(), and for some rooms their room_count(),
# members() and typing_users(), with rooms() of the users.  (Each SQL
# function is planned at each call, so the room reads are made only where
# the step could have changed something; all of them at the end of each
# sequence.)  One query, as plain rows: [kind, key, values...].
sub read_sql
{
	my ($online, $rooms) = @_;
	my @parts = (q{SELECT 'get', g.user_id, g.status::text, g.message,
			g.since::text, g.last_active::text, g.last_seen::text,
			g.sessions::text
		  FROM presence.statuses($1::text[]) g});
	push @parts, q{SELECT 'online', o.user_id, NULL, NULL, NULL, NULL, NULL, NULL
		  FROM presence.online_users(1000) o} if $online;
	push @parts, q{SELECT 'count', r, presence.room_count(r)::text,
			NULL, NULL, NULL, NULL, NULL
		  FROM unnest($2::text[]) r},
	  q{SELECT 'member', r, m.user_id, m.status::text, m.message,
			e->>'session_id', (e->'meta')::text, NULL
		  FROM unnest($2::text[]) r, presence.members(r) m,
			   jsonb_array_elements(m.metas) e},
	  q{SELECT 'typing', r, t, NULL, NULL, NULL, NULL, NULL
		  FROM unnest($2::text[]) r, presence.typing_users(r) t},
	  q{SELECT 'rooms', x, y, NULL, NULL, NULL, NULL, NULL
		  FROM unnest($1::text[]) x, presence.rooms(x) y} if $rooms;
	return join("\nUNION ALL\n", @parts);
}

# Run the reads and arrange their rows as compare_reads() wants them.
sub fetch_reads
{
	my ($online, $uids, $rooms) = @_;
	my $sql = read_sql($online, scalar @$rooms);
	my $sth = $dbh->prepare_cached($sql);
	$sth->bind_param(1, $uids);
	$sth->bind_param(2, $rooms) if @$rooms;
	$sth->execute;
	my %got = (get => []);
	$got{online} = [] if $online;
	my %room = map { $_ => { room => $_, members => {}, typing => [] } } @$rooms;
	$got{rooms} = [ map { $room{$_} } @$rooms ];
	my %urooms;
	if (@$rooms) { $urooms{$_} = [] foreach @$uids; }
	while (my $r = $sth->fetchrow_arrayref)
	{
		my ($kind, $key, @v) = @$r;
		if ($kind eq 'get')
		{
			push @{ $got{get} }, { u => $key, status => $v[0], message => $v[1],
				since => $v[2], last_active => $v[3], last_seen => $v[4],
				sessions => $v[5] };
		}
		elsif ($kind eq 'online') { push @{ $got{online} }, $key; }
		elsif ($kind eq 'count') { $room{$key}{count} = $v[0]; }
		elsif ($kind eq 'member')
		{
			my $m = $room{$key}{members}{ $v[0] } //=
			  { status => $v[1], message => $v[2], metas => {} };
			$m->{metas}{ $v[3] } = canon_json($v[4] eq 'null' ? undef : $v[4]);
		}
		elsif ($kind eq 'typing') { push @{ $room{$key}{typing} }, $v[0]; }
		elsif ($kind eq 'rooms') { push @{ $urooms{$key} }, $v[0]; }
	}
	$got{user_rooms} = [ map { { u => $_, rooms => $urooms{$_} } } sort keys %urooms ];
	return \%got;
}

sub fmt_time
{
	my ($v) = @_;
	return undef unless defined $v;
	return 'infinity' if $v == $INF;
	return '-infinity' if $v == $NINF;
	return "$v";
}

sub show { my ($v) = @_; return defined $v ? $json->encode($v) : 'NULL'; }

# Compare what the database shows with the model; returns a list of
# differences.
sub compare_reads
{
	my ($model, $got, $uids, $t0) = @_;
	my @diff;
	my %get = map { $_->{u} => $_ } @{ $got->{get} // [] };
	foreach my $g (values %get)
	{
		foreach my $f (qw(since last_active last_seen))
		{
			next unless defined $g->{$f};
			my $us = iso_us($g->{$f});
			$g->{$f} = abs($us) == $INF ? fmt_time($us) : $us - $t0;
		}
	}
	foreach my $uid (@$uids)
	{
		my $e = $model->get($uid);
		my $g = $get{$uid};
		foreach my $f (qw(status message since last_active last_seen sessions))
		{
			my $ev = $f =~ /^(since|last_active|last_seen)$/ ? fmt_time($e->{$f}) : $e->{$f};
			my $gv = $g->{$f};
			$gv = "$gv" if defined $gv && $f eq 'sessions';
			$ev = "$ev" if defined $ev && $f eq 'sessions';
			push @diff, "get($uid).$f: expected " . show($ev) . ', got ' . show($gv)
			  unless PresenceModel::same_text($ev, $gv);
		}
	}
	if (exists $got->{online})
	{
		my $e_online = join(',', map { show($_) } $model->online);
		my $g_online = join(',', map { show($_) } sort @{ $got->{online} // [] });
		push @diff, "online_users(): expected [$e_online], got [$g_online]"
		  unless $e_online eq $g_online;
	}

	foreach my $gr (@{ $got->{rooms} // [] })
	{
		my $room = $gr->{room};
		my $em = $model->members_of($room);
		push @diff, "room_count($room): expected " . scalar(keys %$em)
		  . ", got $gr->{count}"
		  unless $gr->{count} == scalar(keys %$em);
		my $es = $json->encode($em);
		my $gs = $json->encode($gr->{members});
		push @diff, "members($room): expected $es, got $gs" unless $es eq $gs;
		my $et = join(',', map { show($_) } $model->typing_of($room, 0));
		my $gt = join(',', map { show($_) } sort @{ $gr->{typing} // [] });
		push @diff, "typing_users($room): expected [$et], got [$gt]"
		  unless $et eq $gt;
	}
	foreach my $ur (@{ $got->{user_rooms} // [] })
	{
		my $e = join(',', map { show($_) } $model->rooms_of($ur->{u}));
		my $g = join(',', map { show($_) } sort @{ $ur->{rooms} // [] });
		push @diff, "rooms($ur->{u}): expected [$e], got [$g]" unless $e eq $g;
	}
	return @diff;
}

# An event as one comparable line; the reason may be a set in the model.
sub event_line
{
	my ($e, $reason) = @_;
	my $k = $e->{event};
	my @f = ($k, show($e->{user_id}));
	push @f, $e->{status}, $e->{previous}, $reason, show($e->{message})
	  if $k eq 'status';
	push @f, show($e->{session_id}), $e->{status}, show(canon_json($e->{meta}))
	  if $k eq 'join';
	push @f, $reason if $k eq 'leave';
	push @f, show($e->{session_id}), $e->{change}, show(canon_json($e->{meta}))
	  if $k eq 'update';
	push @f, ($e->{typing} ? 'true' : 'false'), $reason // '-' if $k eq 'typing';
	push @f, $json->encode($e->{payload}) if $k eq 'broadcast';
	push @f, 'at=' . (fmt_time($e->{at}) // 'NULL');
	return join(' ', @f);
}

sub model_line
{
	my ($e) = @_;
	my $r = ref $e->{reason} ? join('|', @{ $e->{reason} }) : $e->{reason};
	return event_line($e, $r);
}

sub reason_ok
{
	my ($model_reason, $got) = @_;
	return PresenceModel::same_text($model_reason, $got)
	  unless ref $model_reason;
	return defined $got && grep { $_ eq $got } @$model_reason;
}

sub sort_key
{
	my ($e) = @_;
	my $copy = { %$e, reason => undef };
	return show($e->{user_id}) . ' ' . sprintf('%025s', fmt_time($e->{at}) // '')
	  . ' ' . event_line($copy, '');
}

# Compare the events of one channel: the model's, grouped by step, with
# what arrived, in order.  The events of one sweep are compared as a set
# (the README does not say in which order a sweep goes through users).
sub compare_events
{
	my ($label, $expected, $got, $steps) = @_;
	my @got = @$got;
	my $pos = 0;
	foreach my $group (@$expected)
	{
		my ($i, @e) = @$group;
		my @g = @got[ $pos .. $pos + $#e ];
		@g = grep { defined } @g;
		$pos += @e;
		if ($steps->[$i]{op} eq 'sweep')
		{
			@e = sort { sort_key($a) cmp sort_key($b) } @e;
			@g = sort { sort_key($a) cmp sort_key($b) } @g;
		}
		for my $k (0 .. $#e)
		{
			my $g = $g[$k];
			my $ok = defined $g
			  && event_line($e[$k], 'R') eq event_line($g, 'R')
			  && reason_ok($e[$k]{reason}, $g->{reason});
			next if $ok;
			return { step => $i,
				msg => "$label: expected " . join(' ; ', map { model_line($_) } @e)
				  . "\n   got " . join(' ; ', map { event_line($_, $_->{reason}) } @g) };
		}
	}
	if ($pos < @got)
	{
		return { step => scalar(@$steps) - 1,
			msg => "$label: unexpected events: "
			  . join(' ; ', map { event_line($_, $_->{reason}) } @got[ $pos .. $#got ]) };
	}
	return undef;
}


my $run_counter = 0;
my %STATS = (sequences => 0, steps => 0, calls => 0, errors => 0,
	sweeps => 0, status_events => 0, room_events => 0, rolled_back => 0,
	savepoints => 0, skipped => 0, shrink_runs => 0);
my %OPS;
my %ERRORS;
my %EVENTS;    # the events the sequences made, by kind
# Where the time goes: seconds per phase.
my %PROF;
my $prof_t = time;
sub lap { my ($what) = @_; my $t = time; $PROF{$what} += $t - $prof_t; $prof_t = $t; }

# Run one sequence in one transaction, comparing every step with the
# model.  Returns undef if they agree throughout, else { step => index,
# msg => text, steps => [the steps run], cleanup_from => index }.
sub run_sequence
{
	my ($seq) = @_;
	my $prefix = "w${WORKER}s" . ++$run_counter . '_';
	my $sim = Sim->new($seq->{settings});
	my @run;            # the steps actually run
	my @expected;       # [step index, events...] per call and sweep
	my @saved_at;       # scalar @expected at each open savepoint
	my (%users, %spec, %rooms_used);
	my $set = $seq->{settings};

	$dbh->begin_work;
	$dbh->do(sprintf(q{SET LOCAL presence.session_ttl = '%d ms';
		SET LOCAL presence.away_after = '%d ms';
		SET LOCAL presence.granularity = '%d ms';
		SET LOCAL presence.typing_timeout = '%d ms';
		SET LOCAL presence.meta_interval = '%d ms'},
		$set->{session_ttl} / 1000, $set->{away_after} / 1000,
		$set->{granularity} / 1000, $set->{typing_timeout} / 1000,
		$set->{meta_interval} / 1000));
	my $row = $dbh->selectrow_arrayref(
		q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END,
				 (extract(epoch FROM now()) * 1000000)::bigint
			FROM presence.seq});
	my ($mark, $t0) = @$row;

	my $fail;
	my @steps = @{ $seq->{steps} };
	my $cleanup_from;
	for (my $n = 0;; $n++)
	{
		if ($n == @steps && !defined $cleanup_from)
		{
			# Release the open savepoints, then end every session and
			# every timed override, so that no later sequence meets this
			# one's deadlines.
			$cleanup_from = scalar @run;
			push @steps, map { { op => 'release' } } @{ $sim->{saved} };
			foreach my $uid (sort keys %{ $sim->{model}{users} })
			{
				my $u = $sim->{model}{users}{$uid};
				push @steps, { op => 'disconnect', user => $spec{$uid} }
				  if %{ $u->{sessions} };
				push @steps, { op => 'set_status', user => $spec{$uid},
					status => 'auto' }
				  if defined $u->{until};
			}
		}
		last if $n >= @steps;
		my $st = $steps[$n];
		my $i = scalar @run;
		my $op = $st->{op};
		my $uid = exists $st->{user} ? user_name($st->{user}, $prefix)
	  : defined $st->{users} ? [ map { user_name($_, $prefix) } @{ $st->{users} } ]
	  : undef;
		lap('database');
		my $res = $sim->apply($st, $prefix);
		lap('model');
		if (!$res)
		{
			die "a clean-up step could not run: " . format_step($st)
			  if defined $cleanup_from;
			$STATS{skipped}++;
			next;
		}
		push @run, $st;
		$STATS{steps}++;
		$OPS{$op}++;
		my @specs = $op eq 'heartbeat_many' ? @{ $st->{users} // [] } : ($st->{user});
		foreach my $spec (@specs)
		{
			my $x = user_name($spec, $prefix);
			next unless defined $x && !PresenceModel::check_id($x);
			$users{$x} = 1;
			$spec{$x} = $spec;
		}

		if ($op eq 'savepoint')
		{
			$STATS{savepoints}++;
			$dbh->do('SAVEPOINT s' . scalar(@saved_at));
			push @saved_at, scalar @expected;
			next;
		}
		if ($op eq 'rollback' || $op eq 'release')
		{
			my $at = pop @saved_at;
			my $name = 's' . scalar(@saved_at);
			if ($op eq 'rollback')
			{
				$dbh->do("ROLLBACK TO SAVEPOINT $name");
				$STATS{rolled_back} += @expected - $at;
				splice @expected, $at;
			}
			$dbh->do("RELEASE SAVEPOINT $name");
		}
		else
		{
			my ($sql, @binds) = step_sql($st, $uid);
			if ($res->{error})
			{
				$STATS{errors}++;
				$ERRORS{"$op $res->{error}"}++;
				$dbh->do('SAVEPOINT e');
				my $ok = eval { $dbh->selectrow_arrayref($sql, undef, @binds); 1 };
				my $state = $ok ? 'no error' : $dbh->state;
				my $errstr = $ok ? '' : ': ' . ($dbh->errstr // '');
				$dbh->do('ROLLBACK TO SAVEPOINT e');
				$dbh->do('RELEASE SAVEPOINT e');
				if ($state ne $res->{error})
				{
					$fail = { step => $i,
						msg => "expected error $res->{error}, got $state$errstr" };
					last;
				}
			}
			else
			{
				$STATS{ $op eq 'sweep' ? 'sweeps' : 'calls' }++;
				my $row = eval { $dbh->selectrow_arrayref($sql, undef, @binds) };
				if (!$row)
				{
					$fail = { step => $i,
						msg => 'unexpected error ' . ($dbh->state // '') . ': '
						  . ($dbh->errstr // $@) };
					last;
				}
				my $got = $op =~ /^(join|leave|set_meta|typing|broadcast)$/
				  ? undef : $row->[0];
				my $want = $res->{result};
				if (!PresenceModel::same_text(defined $want ? "$want" : undef, $got))
				{
					$fail = { step => $i,
						msg => 'result: expected ' . show($want) . ', got ' . show($got) };
					last;
				}
				push @expected, [ $i, @{ $res->{events} } ];
			}
		}

		# What the reads show after every step: every user's row, and the
		# rooms the sequence has used so far (all of them once it is over).
		lap('database');
		my $last = $n == $#steps;
		my %touched = map { substr($_->{ch}, 5) => 1 }
		  grep { $_->{ch} ne 'presence' } @{ $res->{events} // [] };
		$touched{ room_name($st->{room}) } = 1 if defined $st->{room};
		$rooms_used{$_} = 1 foreach keys %touched;
		my @rooms = grep { $last ? $rooms_used{$_} : $touched{$_} } @ROOMS;
		my @uids = sort keys %users;
		my $online = $last || $i % 5 == 0;
		my $reads = fetch_reads($online, \@uids, \@rooms);
		lap(@rooms ? 'reads-rooms' : $online ? 'reads-online' : 'reads-get');
		my @diff = compare_reads($sim->{model}, $reads, \@uids, $t0);
		if (@diff)
		{
			$fail = { step => $i, msg => join("\n   ", @diff) };
			last;
		}
	}

	if ($fail)
	{
		$dbh->rollback;
		$fail->{steps} = \@run;
		$fail->{cleanup_from} = $cleanup_from // scalar @run;
		return $fail;
	}
	lap('compare');
	$dbh->commit;
	lap('database');

	# The events, once committed: history rows, and the notifications on
	# the status channel and on each room's channel.  A sentinel sent
	# after the commit marks the end of this transaction's notifications.
	my $hist = query_rows($dbh,
		q{SELECT seq, user_id, status::text AS status,
				 previous::text AS previous, reason, message,
				 CASE WHEN isfinite(at)
					  THEN (extract(epoch FROM at) * 1000000)::bigint::text
					  ELSE at::text END AS at_us
			FROM presence.history WHERE seq > ? AND starts_with(user_id, ?)
		   ORDER BY seq}, $mark, $prefix);
	$dbh->do("NOTIFY model_sentinel_$WORKER, '$run_counter'");
	# The notifications up to the sentinel, leaving out other workers'
	# status events (the only ones on a shared channel); only this run's
	# are decoded.
	my @notes;
	my $deadline = time + 30;
	my $select = IO::Select->new($listener->{pg_socket});
	my $mine = '"user_id":"' . $prefix;
  COLLECT:
	while (1)
	{
		while (my $n = $listener->pg_notifies)
		{
			my ($channel, undef, $payload) = @$n;
			last COLLECT if $channel eq "model_sentinel_$WORKER"
			  && $payload eq $run_counter;
			next if $channel eq 'presence' && index($payload, $mine) < 0;
			my $ev = eval { $json->decode($payload) };
			push @bad_json, $payload unless $ev;
			push @notes, { channel => $channel, payload => $payload, ev => $ev };
		}
		die 'the sentinel notification never arrived' if time > $deadline;
		$select->can_read(0.05);
	}

	lap('events');
	my %got = (history => [ map {
		{ event => 'status', %$_,
			at => $_->{at_us} =~ /^-?\d+$/ ? $_->{at_us} : iso_us($_->{at_us}) }
	} @$hist ]);
	foreach my $n (@notes)
	{
		my $ch = $n->{channel} eq 'presence'
		  ? 'presence' : 'room:' . ($ROOM_CHANNEL{ $n->{channel} } // $n->{channel});
		push @{ $got{$ch} },
		  $n->{ev} // { event => 'invalid JSON', user_id => $n->{payload} };
	}
	foreach my $ch (keys %got)
	{
		foreach my $e (@{ $got{$ch} })
		{
			$e->{at} = iso_us($e->{at}) if defined $e->{at} && $ch ne 'history';
			$e->{at} -= $t0 if defined $e->{at} && abs($e->{at}) != $INF;
		}
	}
	$STATS{sequences}++;
	foreach my $g (@expected)
	{
		my ($i, @e) = @$g;
		foreach my $e (@e)
		{
			my $r = ref $e->{reason} ? join('|', @{ $e->{reason} }) : $e->{reason} // '';
			my $what = $e->{event} eq 'status'
			  ? "$e->{previous}>$e->{status} $r"
			  : join(' ', $e->{event}, grep { defined && $_ ne '' } $e->{change}, $r,
				  $e->{event} eq 'typing' ? ($e->{typing} ? 'start' : 'stop') : ());
			$EVENTS{ ($e->{ch} eq 'presence' ? '' : $e->{event} eq 'status' ? 'room ' : '') . $what }++;
		}
		$STATS{status_events} += grep { $_->{ch} eq 'presence' } @e;
		$STATS{room_events} += grep { $_->{ch} ne 'presence' && $_->{event} ne 'status' } @e;
	}

	foreach my $ch ('history', 'presence', map { "room:$_" } @ROOMS)
	{
		my $want = $ch eq 'history' ? 'presence' : $ch;
		my @exp = grep { @$_ > 1 }
		  map { my ($i, @e) = @$_; [ $i, grep { $_->{ch} eq $want } @e ] } @expected;
		my $f = compare_events(
			$ch eq 'history' ? 'history' : "notifications on $ch",
			\@exp, $got{$ch} // [], \@run);
		if ($f)
		{
			$f->{steps} = \@run;
			$f->{cleanup_from} = $cleanup_from;
			return $f;
		}
	}
	lap('compare');
	return undef;
}

# --- Printing and shrinking a failure -------------------------------------------

# Microseconds as seconds, exactly.
sub secs
{
	my ($us) = @_;
	my $s = sprintf('%s%d.%06d', $us < 0 ? '-' : '', int(abs($us) / SEC), abs($us) % SEC);
	$s =~ s/\.?0+$//;
	return $s;
}

sub fmt_offset
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	return "'$v'" if $v eq 'INF' || $v eq 'NINF';
	return "now() + '" . secs($v) . " s'";
}

sub fmt_value
{
	my ($v) = @_;
	return 'NULL' unless defined $v;
	return meta_text($v) if ref $v;
	return $v if $v =~ /^-?\d+$/;
	(my $q = $v) =~ s/'/''/g;
	$q =~ s/\n/\\n/g;
	$q =~ s/\t/\\t/g;
	return length($q) > 40 ? "'" . substr($q, 0, 12) . "...' (" . length($v) . ' chars)' : "'$q'";
}

sub format_step
{
	my ($st) = @_;
	my $op = $st->{op};
	return uc($op) =~ s/ROLLBACK/ROLLBACK TO SAVEPOINT/r if $op =~ /^(savepoint|rollback|release)$/;
	return 'sweep(' . fmt_offset($st->{as_of}) . ')' if $op eq 'sweep';
	my @a;
	push @a, 'room => ' . fmt_value($st->{room}) if exists $st->{room};
	push @a, 'user => ' . fmt_value($st->{user}) if exists $st->{user};
	push @a, 'user_ids => ' . (defined $st->{users} ? '{' . join(', ', map { fmt_value($_) } @{ $st->{users} }) . '}' : 'NULL')
	  if exists $st->{users};
	push @a, 'session_ids => ' . (defined $st->{sessions} ? '{' . join(', ', map { fmt_value($_) } @{ $st->{sessions} }) . '}' : 'NULL')
	  if exists $st->{sessions};
	push @a, 'payload => ' . fmt_value($st->{payload}) if exists $st->{payload};
	push @a, 'session => ' . fmt_value($st->{session}) if exists $st->{session};
	push @a, 'status => ' . fmt_value($st->{status}) if exists $st->{status};
	push @a, 'message => ' . fmt_value($st->{message}) if exists $st->{message};
	push @a, 'until => ' . fmt_offset($st->{until}) if exists $st->{until};
	push @a, 'active => ' . fmt_value($st->{active}) if exists $st->{active};
	push @a, 'is_typing => ' . fmt_value($st->{is_typing}) if exists $st->{is_typing};
	push @a, 'meta => ' . fmt_value($st->{meta}) if exists $st->{meta};
	foreach my $k (qw(ttl away_after))
	{
		push @a, "$k => " . (defined $st->{$k} ? "'" . secs($st->{$k}) . " s'" : 'NULL')
		  if exists $st->{$k};
	}
	return "$op(" . join(', ', @a) . ')';
}

sub format_failure
{
	my ($seq, $f) = @_;
	my $set = $seq->{settings};
	my @lines = (sprintf('settings: %s',
			join(', ', map { "$_ = " . ($set->{$_} / 1000) . ' ms' } sort keys %$set)));
	my $steps = $f->{steps};
	for my $i (0 .. $#$steps)
	{
		push @lines, sprintf('%s%3d: %s', ($i == $f->{step} ? '>' : ' '), $i,
			format_step($steps->[$i]))
		  . (defined $f->{cleanup_from} && $i >= $f->{cleanup_from} ? '   (clean-up)' : '');
	}
	push @lines, "step $f->{step}: $f->{msg}";
	return join("\n", @lines);
}

# Delta debugging (ddmin) over the steps of a failing sequence: the
# shortest list of steps found that still fails.
sub shrink
{
	my ($seq, $fail) = @_;
	my @steps = @{ $fail->{steps} }[ 0 .. $fail->{cleanup_from} - 1 ];
	my $best = $fail;
	my $try = sub {
		my @cand = @_;
		$STATS{shrink_runs}++;
		my $f = run_sequence({ %$seq, steps => \@cand });
		$best = $f if $f;
		return $f;
	};
	my $n = 2;
	while (@steps >= 1)
	{
		my $len = @steps;
		my $chunk = int(($len + $n - 1) / $n);
		my $reduced = 0;
		for (my $start = 0; $start < $len; $start += $chunk)
		{
			my @cand = (@steps[ 0 .. $start - 1 ],
				@steps[ $start + $chunk .. $len - 1 ]);
			if ($try->(@cand))
			{
				@steps = @cand;
				$n = $n > 2 ? $n - 1 : 2;
				$reduced = 1;
				last;
			}
		}
		next if $reduced;
		last if $chunk == 1;
		$n = $n * 2 > $len ? $len : $n * 2;
	}
	# run the minimal one again, so that what is printed is its own failure
	my $f = run_sequence({ %$seq, steps => \@steps });
	return $f // $best;
}

# --- Directed sequences ----------------------------------------------------------
#
# Run before the random ones: the shortest sequences of earlier findings,
# so that they stay fixed whatever the seed.
my %DEFAULTS = (session_ttl => 60 * SEC, away_after => 300 * SEC,
	granularity => 60 * SEC, typing_timeout => 5 * SEC, meta_interval => 100_000);
my @DIRECTED = (
	{
		name => 'a call that started before a sweep applied an idle deadline '
		  . 'leaves the user away',
		settings => {%DEFAULTS},
		steps => [
			{ op => 'heartbeat', user => 'u0', session => 'a', active => 1,
				ttl => 300 * SEC, away_after => 15 * SEC },
			{ op => 'sweep', as_of => 180 * SEC },
			{ op => 'disconnect', user => 'u0', session => 'b' },
			{ op => 'set_status', user => 'u0', status => 'auto' },
			{ op => 'heartbeat', user => 'u0', session => 'b', active => 0,
				ttl => 600 * SEC },
			{ op => 'heartbeat', user => 'u0', session => 'a', active => 0,
				ttl => 900 * SEC },
			{ op => 'sweep', as_of => 190 * SEC },
			{ op => 'heartbeat', user => 'u0', session => 'a', active => 1,
				ttl => 900 * SEC, away_after => 600 * SEC },
		],
	},
	{
		name => 'an active heartbeat that moves the idle deadline by less than '
		  . 'the granularity, after a sweep applied it, makes the user online',
		settings => {%DEFAULTS},
		steps => [
			{ op => 'heartbeat', user => 'u0', session => 'a', active => 1,
				ttl => 300 * SEC, away_after => 15 * SEC },
			{ op => 'sweep', as_of => 16 * SEC },
			{ op => 'heartbeat', user => 'u0', session => 'a', active => 1,
				ttl => 300 * SEC, away_after => 16.5 * SEC },
		],
	},
	{
		name => 'a message that expires in a sweep where the status changes '
		  . 'and changes back is dated at its until',
		settings => { %DEFAULTS, away_after => 30 * SEC },
		steps => [
			{ op => 'set_status', user => 'u0', status => 'away',
				message => 'meeting', until => 16 * SEC },
			{ op => 'join', room => 'R1', user => 'u0', session => 'default' },
			{ op => 'sweep', as_of => 47 * SEC },
		],
	},
);

# --- The run ------------------------------------------------------------------------

# Sequence j's seed, the same whichever worker runs it.
sub sequence_seed
{
	my ($j) = @_;
	return PresenceModel::Rng->new(($SEED * 1000003 + $j * 7919) % 4294967296)->next;
}

# A worker: runs sequences j = k, k + W, k + 2W, ... until the count or
# the time budget is reached, shrinks any failure, and writes what it
# found to $out as JSON.
sub run_worker
{
	my ($k, $out, $started) = @_;
	worker_setup($k);
	my @failures;
	my $ran = 0;
	my @only = defined $ENV{PRESENCE_MODEL_ONLY} ? ($ENV{PRESENCE_MODEL_ONLY}) : ();
	my @directed;
	if ($k == 1 && !@only)
	{
		foreach my $d (@DIRECTED)
		{
			my $f = run_sequence($d);
			push @directed, { name => $d->{name},
				text => $f ? format_failure($d, $f) : undef };
		}
	}
	for (my $j = @only ? $only[0] : $k; $j <= $SEQUENCES; $j += $WORKERS)
	{
		last if time - $started > $BUDGET;
		my $seq_seed = sequence_seed($j);
		lap('other');
		my $seq = gen_sequence($seq_seed);
		lap('generate');
		$ran++;
		my $f = run_sequence($seq);
		last if @only && !$f;
		next unless $f;
		my $small = shrink($seq, $f);
		push @failures, {
			j => $j,
			seq_seed => $seq_seed,
			text => "seed $SEED, sequence $j (PRESENCE_MODEL_ONLY=$j): "
			  . scalar(@{ $f->{steps} }) . ' steps shrunk to '
			  . ($small->{cleanup_from} // scalar @{ $small->{steps} })
			  . "; the shortest sequence that fails:\n"
			  . format_failure($seq, $small),
		};
		last if @failures >= 2 || @only;
	}
	lap('other');
	my @bad = @bad_json;
	open(my $fh, '>', $out) or die "cannot write $out: $!";
	print $fh JSON::PP->new->utf8->canonical->encode({
		ran => $ran, failures => \@failures, stats => \%STATS,
		directed => \@directed,
		ops => \%OPS, errors => \%ERRORS, prof => \%PROF, events => \%EVENTS,
		bad_json => \@bad });
	close $fh;
	$listener->disconnect;
	$dbh->disconnect;
	return;
}


my $started = time;
my @children;
my $dir = PostgreSQL::Test::Utils::tempdir();
my $nworkers = defined $ENV{PRESENCE_MODEL_ONLY} ? 1 : $WORKERS;
for my $k (1 .. $nworkers)
{
	my $pid = fork // die "fork: $!";
	if ($pid == 0)
	{
		# A worker must not run the test framework's END blocks (they
		# would stop the cluster): leave with _exit.
		my $ok = eval { run_worker($k, "$dir/worker$k.json", $started); 1 };
		print STDERR "worker $k died: $@" unless $ok;
		POSIX::_exit($ok ? 0 : 1);
	}
	push @children, $pid;
}
foreach my $pid (@children)
{
	waitpid($pid, 0);
	is($? >> 8, 0, "worker process $pid finished");
}
my $elapsed = time - $started;

my ($ran, @failures, @bad, %stats, %ops, %errors, %prof, %events) = (0);
for my $k (1 .. $nworkers)
{
	my $r = eval {
		JSON::PP->new->utf8->decode(
			PostgreSQL::Test::Utils::slurp_file("$dir/worker$k.json"));
	};
	if (!$r)
	{
		fail("worker $k reported its results");
		next;
	}
	$ran += $r->{ran};
	foreach my $d (@{ $r->{directed} // [] })
	{
		ok(!defined $d->{text}, "directed: $d->{name}")
		  or utf8_diag($d->{text});
	}
	push @failures, @{ $r->{failures} };
	push @bad, @{ $r->{bad_json} };
	$stats{$_} += $r->{stats}{$_} foreach keys %{ $r->{stats} };
	$ops{$_} += $r->{ops}{$_} foreach keys %{ $r->{ops} };
	$errors{$_} += $r->{errors}{$_} foreach keys %{ $r->{errors} };
	$prof{$_} += $r->{prof}{$_} foreach keys %{ $r->{prof} };
	$events{$_} += $r->{events}{$_} foreach keys %{ $r->{events} };
}

foreach my $f (sort { $a->{j} <=> $b->{j} } @failures)
{
	fail("sequence $f->{j} agrees with the model");
	utf8_diag($f->{text});
}
is(scalar @failures, 0,
	"$ran sequences agree with the model at every step (seed $SEED)");
my $floor = defined $ENV{PRESENCE_MODEL_ONLY} ? 1 : $SEQUENCES < 1000 ? $SEQUENCES : 1000;
cmp_ok($ran, '>=', $floor, "at least $floor sequences ran within the time budget")
  or diag("only $ran sequences ran in $BUDGET s");
is(scalar @bad, 0, 'every notification was valid JSON')
  or utf8_diag(join("\n", @bad));
note sprintf('%d sequences in %.1f s with %d workers (%.1f ms each): seed %d',
	$ran, $elapsed, $nworkers, 1000 * $elapsed / ($ran || 1), $SEED);
note join(', ', map { "$_ $stats{$_}" } sort keys %stats);
note 'steps by kind: ' . join(', ', map { "$_ $ops{$_}" } sort keys %ops);
note 'errors expected and seen: '
  . join(', ', map { "$_ $errors{$_}" } sort keys %errors);
note 'events made: ' . join(', ', map { "$_ $events{$_}" } sort keys %events);
note 'seconds spent (all workers): '
  . join(', ', map { sprintf('%s %.1f', $_, $prof{$_}) } sort keys %prof);

$node->stop('fast');

done_testing();
