
# PresenceModel.pm: an independent model of presence, for the model-based
# test (012_model.pl) and the soak test (011_soak.pl).
#
# Not a test itself.  It is written from README.md (Concepts, SQL API,
# Events, Rooms, Settings), not from the C code, and calls nothing in the
# database: it only predicts.  Where the README leaves a detail open, the
# choice made here follows the regression tests' expected output and says
# so in a comment marked "Open:".
#
# Times are integers: microseconds since an origin the caller chooses (the
# model test uses the start of its transaction, now(), as 0; the soak test
# the epoch).  $INF and $NINF stand for 'infinity' and '-infinity'.  A
# call happens at its transaction's now(), which may lie before the time a
# sweep has already brought its user to: what that sweep applied stays
# applied (an idle session stays idle until an active heartbeat).
#
# The model holds:
#   users{uid}      the announced view (status, message, since, last_active,
#                   last_seen), the private override (manual, mmsg, until)
#                   and the sessions {sid => {last_seen, last_active,
#                   away_at, end_at, idle_done, meta}}
#   members{room}{uid}{sid}   a session in a room: meta, joined_at, sent_at,
#                   due_at (a held-back metadata update)
#   typing{room}{uid}         a typing flag: started, until
#
# Every write returns ($result, @events).  An event is a hash with ch
# ('presence' or "room:<name>"), event, user_id, at and the fields of its
# kind.
#
# Validation (check_*) returns the SQLSTATE the README documents for a bad
# argument, or undef.
#
# Also shared by the tests: iso_us() (a timestamp as the server prints it,
# in microseconds) and PresenceModel::Rng (a small seeded generator).
package PresenceModel;

use strict;
use warnings;

use Encode ();
use Storable ();
use JSON::PP ();
use Time::Local ();

use Exporter 'import';
our @EXPORT_OK = qw($INF $NINF canon_json iso_us);

our $INF = 4_000_000_000_000_000_000;
our $NINF = -$INF;

use constant SEC => 1_000_000;
use constant DAY => 86_400 * SEC;

my $JSON = JSON::PP->new->canonical->allow_nonref;

# JSON text with sorted keys, for comparing metadata; undef stays undef.
sub canon_json
{
	my ($v) = @_;
	return undef unless defined $v;
	$v = $JSON->decode($v) unless ref $v;
	return $JSON->encode($v);
}

sub new
{
	my ($class, %s) = @_;
	my $self = {
		session_ttl => $s{session_ttl} // 60 * SEC,
		away_after => $s{away_after} // 300 * SEC,
		granularity => $s{granularity} // 60 * SEC,
		typing_timeout => $s{typing_timeout} // 5 * SEC,
		meta_interval => $s{meta_interval} // 100_000,
		users => {},
		members => {},
		typing => {},
	};
	return bless $self, $class;
}

# A timestamp as the server prints it (ISO 8601 in payloads, DateStyle
# ISO in query results) as microseconds since the epoch.
sub iso_us
{
	my ($s) = @_;
	return undef unless defined $s;
	return $INF if $s eq 'infinity';
	return $NINF if $s eq '-infinity';
	my ($y, $mo, $d, $h, $mi, $sec, $frac, $oh, $om) = $s =~
	  /^(\d{4,})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?([+-]\d\d)(?::?(\d\d))?/
	  or die "not a timestamp: $s";
	$frac = substr(($frac // '') . '000000', 0, 6);
	my $off = ($oh * 60 + ($oh < 0 || $oh eq '-00' ? -1 : 1) * ($om // 0)) * 60;
	return (Time::Local::timegm($sec, $mi, $h, $d, $mo - 1, $y) - $off) * SEC
	  + $frac;
}

# A deep copy of the whole state (savepoints, guards).
sub snapshot
{
	my ($self) = @_;
	return Storable::dclone($self);
}

sub same_text
{
	my ($x, $y) = @_;
	return (!defined $x && !defined $y)
	  || (defined $x && defined $y && $x eq $y);
}

sub max_time
{
	my ($x, $y) = @_;
	return $y unless defined $x;
	return $x unless defined $y;
	return $x > $y ? $x : $y;
}

# --- Validation (README: SQL API, Limits) -----------------------------------

sub bytes_of { return length(Encode::encode_utf8($_[0])); }

# A text argument: NULL, empty or over $limit bytes.
sub check_bytes
{
	my ($v, $limit) = @_;
	return '22004' unless defined $v;
	return '22023' if $v eq '';
	return '22001' if bytes_of($v) > $limit;
	return undef;
}

sub check_id { return check_bytes($_[0], 256); }
sub check_room { return check_bytes($_[0], 200); }

# meta: a Perl value (hash for an object), or undef.  Its JSON text is
# what jsonb prints; callers keep metadata far from the 2048-byte limit
# or far over it, so the exact spacing does not matter.
sub check_meta
{
	my ($v) = @_;
	return undef unless defined $v;
	return '22023' unless ref $v eq 'HASH';
	return '22001' if bytes_of($JSON->encode($v)) > 2048;
	return undef;
}

sub check_ttl
{
	my ($v) = @_;
	return undef unless defined $v;
	return '22023' if $v <= 0 || $v > 365 * DAY;
	return undef;
}

sub check_away_after
{
	my ($v) = @_;
	return undef unless defined $v;
	return '22023' if $v < 0 || $v > 365 * DAY;
	return undef;
}

my %MANUAL = (away => 'away', busy => 'busy', dnd => 'busy',
	invisible => 'invisible', auto => '', online => '');

sub check_status
{
	my ($v) = @_;
	return '22004' unless defined $v;
	return exists $MANUAL{$v} ? undef : '22023';
}

sub check_message
{
	my ($v) = @_;
	return undef unless defined $v;
	return length($v) > 256 ? '22001' : undef;
}

# --- Derived state (README: Concepts) --------------------------------------

sub user
{
	my ($self, $uid) = @_;
	return $self->{users}{$uid};
}

# Create a user's row, offline since now.
sub ensure_user
{
	my ($self, $uid, $now) = @_;
	return $self->{users}{$uid} //= {
		id => $uid,
		status => 'offline',
		message => undef,
		since => $now,
		last_active => undef,
		last_seen => undef,
		manual => '',
		mmsg => undef,
		until => undef,
		sessions => {},
	};
}

# A session is live before end_at and idle from away_at on; once it has
# gone idle it stays idle until an active heartbeat, even for a call whose
# transaction started before that (idle_done: a sweep or call applied
# the idle deadline, or the session started idle).
#   no live session -> offline; invisible -> offline; busy -> busy;
#   away -> away; any session not idle -> online; otherwise away.
sub derive
{
	my ($u, $t, $manual) = @_;
	$manual //= $u->{manual};
	my ($live, $active) = (0, 0);
	foreach my $s (values %{ $u->{sessions} })
	{
		next unless $s->{end_at} > $t;
		$live = 1;
		$active = 1 if $s->{away_at} > $t && !$s->{idle_done};
	}
	return 'offline' unless $live;
	return 'offline' if $manual eq 'invisible';
	return 'busy' if $manual eq 'busy';
	return 'away' if $manual eq 'away';
	return $active ? 'online' : 'away';
}

sub visible { return $_[0]->{manual} ne 'invisible'; }

# The latest last_active / last_seen of the stored view and the sessions.
sub latest_times
{
	my ($u) = @_;
	my ($la, $ls) = ($u->{last_active}, $u->{last_seen});
	foreach my $s (values %{ $u->{sessions} })
	{
		$la = max_time($la, $s->{last_active});
		$ls = max_time($ls, $s->{last_seen});
	}
	return ($la, $ls);
}

# --- Rooms (README: Rooms) ---------------------------------------------------

sub user_rooms
{
	my ($self, $uid) = @_;
	return sort grep { $self->{members}{$_}{$uid} && %{ $self->{members}{$_}{$uid} } }
	  keys %{ $self->{members} };
}

# A room's sessions of a user, oldest first (joined_at, then session id).
sub room_sessions
{
	my ($self, $room, $uid) = @_;
	my $m = $self->{members}{$room}{$uid} // {};
	return sort { $m->{$a}{joined_at} <=> $m->{$b}{joined_at} || $a cmp $b }
	  keys %$m;
}

sub room_event
{
	my ($room, %f) = @_;
	return { ch => "room:$room", %f };
}

# The user's typing flag in a room ends at "at": announced (if they can be
# seen) as a stop, with reason timeout at its own deadline if it had run
# out by then.
sub stop_typing
{
	my ($self, $u, $room, $at) = @_;
	my $flag = delete $self->{typing}{$room}{ $u->{id} };
	return () unless $flag;
	return () unless visible($u);
	my $ran_out = $flag->{until} <= $at;
	return room_event($room,
		event => 'typing', user_id => $u->{id}, typing => 0,
		reason => $ran_out ? 'timeout' : undef,
		at => $ran_out ? $flag->{until} : $at);
}

# One session leaves a room: the last of the user's is a leave (their
# typing stops first), any other an update.
sub remove_from_room
{
	my ($self, $u, $room, $sid, $reason, $at) = @_;
	delete $self->{members}{$room}{ $u->{id} }{$sid};
	my @ev;
	my @left = $self->room_sessions($room, $u->{id});
	if (!@left)
	{
		delete $self->{members}{$room}{ $u->{id} };
		push @ev, $self->stop_typing($u, $room, $at);
		push @ev, room_event($room, event => 'leave', user_id => $u->{id},
			reason => $reason, at => $at)
		  if visible($u);
	}
	elsif (visible($u))
	{
		push @ev, room_event($room, event => 'update', user_id => $u->{id},
			session_id => $sid, change => 'left', meta => undef, at => $at);
	}
	return @ev;
}

# A session ends (disconnect or timeout): its rooms end with it, and its
# times stay in the user's row unless the user is invisible (their times
# are frozen).
sub end_session
{
	my ($self, $u, $sid, $reason, $at) = @_;
	my @ev;
	foreach my $room ($self->user_rooms($u->{id}))
	{
		push @ev, $self->remove_from_room($u, $room, $sid, $reason, $at)
		  if $self->{members}{$room}{ $u->{id} }{$sid};
	}
	my $s = delete $u->{sessions}{$sid};
	if (visible($u))
	{
		$u->{last_active} = max_time($u->{last_active}, $s->{last_active});
		$u->{last_seen} = max_time($u->{last_seen}, $s->{last_seen});
	}
	return @ev;
}

# Store a session's metadata in a room, announced at most once per
# meta_interval; a held-back value goes out when the interval is over.
sub store_meta
{
	my ($self, $u, $room, $sid, $meta, $now) = @_;
	my $m = $self->{members}{$room}{ $u->{id} }{$sid};
	$m->{meta} = canon_json($meta);
	if ($now >= $m->{sent_at} + $self->{meta_interval})
	{
		$m->{sent_at} = $now;
		$m->{due_at} = undef;
		return () unless visible($u);
		return room_event($room, event => 'update', user_id => $u->{id},
			session_id => $sid, change => 'meta', meta => $m->{meta},
			at => $now);
	}
	$m->{due_at} //= $m->{sent_at} + $self->{meta_interval};
	return ();
}

# What fell due in the user's rooms by as_of: typing flags that ran out,
# and held-back metadata.
sub settle_rooms
{
	my ($self, $u, $as_of) = @_;
	my @ev;
	foreach my $room (sort keys %{ $self->{typing} })
	{
		my $flag = $self->{typing}{$room}{ $u->{id} };
		push @ev, $self->stop_typing($u, $room, $flag->{until})
		  if $flag && $flag->{until} <= $as_of;
	}
	foreach my $room ($self->user_rooms($u->{id}))
	{
		foreach my $sid ($self->room_sessions($room, $u->{id}))
		{
			my $m = $self->{members}{$room}{ $u->{id} }{$sid};
			next unless defined $m->{due_at} && $m->{due_at} <= $as_of;
			push @ev,
			  room_event($room, event => 'update', user_id => $u->{id},
				session_id => $sid, change => 'meta', meta => $m->{meta},
				at => $m->{due_at})
			  if visible($u);
			# Open: the README does not say from when the next interval
			# counts; this is when the update was sent.
			$m->{sent_at} = $as_of;
			$m->{due_at} = undef;
		}
	}
	return @ev;
}

# --- Announcing (README: Events) ----------------------------------------------

# Derive the visible status and message at $o{now}; if they differ from
# what was last announced, store them and return the event(s).
#   cause: connect (a new session), heartbeat, disconnect, manual, timed
#   kinds: for timed, the kinds of deadline at the change (idle, end,
#          expire)
#   freeze: keep the announced message while the user is offline (an
#          invisible override that ran out while they were disconnected)
sub publish
{
	my ($self, $u, %o) = @_;
	my $status = derive($u, $o{now});
	my $prev = $u->{status};
	# Invisible users look like users who disconnected when they went
	# invisible: their message stays what it was then.
	# An invisible override that runs out while the user has no session
	# announces nothing and keeps that message (README: Concepts).
	my $msg =
	  (!visible($u) || ($o{freeze} && $status eq 'offline'))
	  ? $u->{message}
	  : $u->{mmsg};
	return () if $status eq $prev && same_text($msg, $u->{message});

	if (visible($u))
	{
		($u->{last_active}, $u->{last_seen}) = latest_times($u);
	}
	$u->{since} = $o{at} if $status ne $prev;
	$u->{status} = $status;
	$u->{message} = $msg;

	my $reason;
	if ($prev eq 'offline' && $status ne 'offline')
	{
		$reason = 'connect';
	}
	elsif ($o{cause} eq 'connect')
	{
		$reason = $status eq 'away' ? 'idle' : 'connect';
	}
	elsif ($o{cause} eq 'heartbeat')
	{
		$reason = $status eq 'away' ? 'idle' : 'activity';
	}
	elsif ($o{cause} eq 'disconnect')
	{
		# Also a disconnect that leaves only idle sessions (online ->
		# away; README: the reason table).
		$reason = 'disconnect';
	}
	elsif ($o{cause} eq 'manual')
	{
		$reason = ($status eq 'offline' && $prev ne 'offline')
		  ? 'disconnect' : 'manual';
	}
	else
	{
		# Deadlines of several kinds at the same instant: the first of
		# expired, timeout, idle (README: Events).
		my %kinds = map { $_ => 1 } @{ $o{kinds} };
		my %name = (expire => 'expired', end => 'timeout', idle => 'idle');
		my ($first) = grep { $kinds{$_} } qw(expire end idle);
		$reason = $name{$first};
	}

	my @ev = ({
		ch => 'presence', event => 'status', user_id => $u->{id},
		status => $status, previous => $prev, reason => $reason,
		message => $msg, at => $o{at},
	});
	my @rooms = $self->user_rooms($u->{id});
	if ($prev ne 'offline' && $status ne 'offline')
	{
		# A member's status event is also sent in each of their rooms.
		push @ev, map { { %{ $ev[0] }, ch => "room:$_" } } @rooms;
	}
	elsif ($prev ne 'offline' && !visible($u))
	{
		# Going invisible leaves every room, typing first.
		foreach my $room (@rooms)
		{
			my $flag = delete $self->{typing}{$room}{ $u->{id} };
			push @ev, room_event($room, event => 'typing', user_id => $u->{id},
				typing => 0, reason => undef, at => $o{at})
			  if $flag;
			push @ev, room_event($room, event => 'leave', user_id => $u->{id},
				reason => 'disconnect', at => $o{at});
		}
	}
	elsif ($prev eq 'offline' && $status ne 'offline')
	{
		# Coming back joins them again: a join for the oldest session, an
		# update for each other.
		foreach my $room (@rooms)
		{
			my $first = 1;
			foreach my $sid ($self->room_sessions($room, $u->{id}))
			{
				my $m = $self->{members}{$room}{ $u->{id} }{$sid};
				push @ev,
				  $first
				  ? room_event($room, event => 'join', user_id => $u->{id},
					session_id => $sid, status => $status, meta => $m->{meta},
					at => $o{at})
				  : room_event($room, event => 'update', user_id => $u->{id},
					session_id => $sid, change => 'joined', meta => $m->{meta},
					at => $o{at});
				$first = 0;
			}
		}
	}
	return @ev;
}

# The deadlines of a user not yet applied, up to as_of: [time, kind, sid].
sub due_moments
{
	my ($u, $as_of) = @_;
	my @m;
	foreach my $sid (sort keys %{ $u->{sessions} })
	{
		my $s = $u->{sessions}{$sid};
		push @m, [ $s->{away_at}, 'idle', $sid ]
		  if !$s->{idle_done} && $s->{away_at} < $s->{end_at}
		  && $s->{away_at} <= $as_of;
		push @m, [ $s->{end_at}, 'end', $sid ] if $s->{end_at} <= $as_of;
	}
	push @m, [ $u->{until}, 'expire' ]
	  if defined $u->{until} && $u->{until} <= $as_of;
	return sort { $a->[0] <=> $b->[0] } @m;
}

# Bring one user to their state as of as_of (README: sweep): every
# transition due by then, the net change announced once, dated when it
# took effect.
sub settle
{
	my ($self, $u, $as_of) = @_;
	my @moments = due_moments($u, $as_of);
	return $self->settle_rooms($u, $as_of) unless @moments;

	my $expire = defined $u->{until} && $u->{until} <= $as_of;
	my $cur = $u->{status};
	my ($change_at, $change_kinds);
	my $i = 0;
	while ($i < @moments)
	{
		my $t = $moments[$i][0];
		my %kinds;
		while ($i < @moments && $moments[$i][0] == $t)
		{
			$kinds{ $moments[$i][1] } = 1;
			$i++;
		}
		my $manual = ($expire && $u->{until} <= $t) ? '' : $u->{manual};
		my $s = derive($u, $t, $manual);
		if ($s ne $cur)
		{
			$cur = $s;
			$change_at = $t;
			$change_kinds = [ sort keys %kinds ];
		}
	}
	# A change of the message alone dates from the expiry that made it.
	if ($cur eq $u->{status} || !defined $change_at)
	{
		$change_at = $expire ? $u->{until} : $moments[-1][0];
		$change_kinds = ['expire'];
	}

	my @ev;
	foreach my $sid (sort keys %{ $u->{sessions} })
	{
		my $s = $u->{sessions}{$sid};
		if ($s->{end_at} <= $as_of)
		{
			push @ev, $self->end_session($u, $sid, 'timeout', $s->{end_at});
		}
		elsif ($s->{away_at} <= $as_of)
		{
			$s->{idle_done} = 1;
		}
	}
	my $expired_invisible = $expire && $u->{manual} eq 'invisible';
	if ($expire)
	{
		$u->{manual} = '';
		$u->{mmsg} = undef;
		$u->{until} = undef;
	}
	push @ev, $self->settle_rooms($u, $as_of);
	push @ev, $self->publish($u, now => $as_of, at => $change_at,
		cause => 'timed', kinds => $change_kinds,
		freeze => $expired_invisible);
	return @ev;
}

# --- The API --------------------------------------------------------------

# sweep(as_of): returns (number of events, events).  A status event counts
# once, however many rooms it is also sent to.
sub sweep
{
	my ($self, $as_of) = @_;
	my @ev;
	foreach my $uid (sort keys %{ $self->{users} })
	{
		push @ev, $self->settle($self->{users}{$uid}, $as_of);
	}
	return (count_events(@ev), @ev);
}

sub count_events
{
	return scalar grep { $_->{ch} ne 'presence' ? $_->{event} ne 'status' : 1 } @_;
}

# Create or refresh a session; the write of heartbeat() and join().
sub touch_session
{
	my ($self, $u, $sid, $active, $meta, $ttl, $away_after, $now) = @_;
	my $s = $u->{sessions}{$sid};
	my $new = !$s;
	if ($new)
	{
		# A session that starts inactive is idle from the start.
		$s = $u->{sessions}{$sid} = {
			started => $now,
			last_active => undef,
			away_at => $now,
			meta => undef,
		};
	}
	$s->{last_seen} = $now;
	if ($active)
	{
		$s->{last_active} = $now;
		$s->{away_at} = $now + $away_after;
	}
	$s->{end_at} = $now + $ttl;
	# an inactive heartbeat leaves an idle session idle
	$s->{idle_done} = ($active || $new) ? ($s->{away_at} <= $now ? 1 : 0)
	  : ($s->{idle_done} || $s->{away_at} <= $now ? 1 : 0);
	$s->{meta} = canon_json($meta) if defined $meta;
	return $self->publish($u, now => $now, at => $now,
		cause => $new ? 'connect' : 'heartbeat');
}

# heartbeat(): returns (status, events).  A heartbeat that would move
# neither deadline by the granularity (at most a quarter of the ttl and of
# away_after) and changes nothing else writes nothing.
# Open: the README's heartbeat section says a heartbeat moving neither
# deadline "by more than" the granularity writes nothing, its Settings
# table that the granularity is the "smallest deadline change a heartbeat
# writes"; the model follows the table (a change of exactly the
# granularity is written).
sub heartbeat
{
	my ($self, $uid, $sid, $active, $meta, $ttl, $away_after, $now) = @_;
	$ttl //= $self->{session_ttl};
	$away_after //= $self->{away_after};
	my $u = $self->{users}{$uid};
	my $s = $u && $u->{sessions}{$sid};
	if ($s)
	{
		my $g = $self->{granularity};
		$g = int($ttl / 4) if int($ttl / 4) < $g;
		$g = int($away_after / 4) if int($away_after / 4) < $g;
		my $d_end = abs($now + $ttl - $s->{end_at});
		my $d_away = $active ? abs($now + $away_after - $s->{away_at}) : 0;
		my $meta_same = !defined $meta
		  || same_text(canon_json($meta), $s->{meta});
		my @due = due_moments($u, $now);
		# (an active heartbeat of an idle session always writes: it makes
		# the session active again)
		return ($u->{status})
		  if $d_end < $g && $d_away < $g && $meta_same && !@due
		  && !($active && ($s->{away_at} <= $now || $s->{idle_done}));
	}
	$u = $self->ensure_user($uid, $now);
	my @ev = $self->settle($u, $now);
	push @ev, $self->touch_session($u, $sid, $active, $meta, $ttl,
		$away_after, $now);
	return ($u->{status}, @ev);
}

# heartbeat_many(): heartbeats of several sessions with the default
# timers, in array order; returns (how many changed a status, events).
sub heartbeat_many
{
	my ($self, $uids, $sids, $active, $now) = @_;
	my ($n, @ev) = (0);
	for my $i (0 .. $#$uids)
	{
		my ($status, @e) = $self->heartbeat($uids->[$i], $sids->[$i], $active,
			undef, undef, undef, $now);
		$n++ if grep { $_->{ch} eq 'presence' } @e;
		push @ev, @e;
	}
	return ($n, @ev);
}

# broadcast(): a pass-through room event, stored nowhere.
sub broadcast
{
	my ($self, $room, $payload, $now) = @_;
	return (undef, room_event($room, event => 'broadcast', user_id => undef,
		payload => $payload, at => $now));
}

sub check_payload
{
	my ($v) = @_;
	return '22004' unless defined $v;
	return '22001' if bytes_of($JSON->encode($v)) > 4096;
	return undef;
}

# disconnect(): returns (status, events).
sub disconnect
{
	my ($self, $uid, $sid, $now) = @_;
	my $u = $self->{users}{$uid};
	return ('offline') unless $u;
	my @ev = $self->settle($u, $now);
	# Open: the sessions end in the order of their ids (which of them
	# leaves a room last, as a leave, the others as updates).
	foreach my $x (sort keys %{ $u->{sessions} })
	{
		next if defined $sid && $x ne $sid;
		# Closing a session is its last sign of life.
		$u->{sessions}{$x}{last_seen} = $now;
		push @ev, $self->end_session($u, $x, 'disconnect', $now);
	}
	push @ev, $self->publish($u, now => $now, at => $now,
		cause => 'disconnect');
	return ($u->{status}, @ev);
}

# set_status(): returns (status, events).  until: a time, undef, or $INF
# (no expiry).
sub set_status
{
	my ($self, $uid, $status, $message, $until, $now) = @_;
	my $u = $self->ensure_user($uid, $now);
	my @ev = $self->settle($u, $now);
	my $manual = $MANUAL{$status};
	if ($manual eq 'invisible' && visible($u))
	{
		# Freeze the public times at this moment.
		($u->{last_active}, $u->{last_seen}) = latest_times($u);
	}
	$u->{manual} = $manual;
	$u->{mmsg} = (defined $message && $message ne '') ? $message : undef;
	$u->{until} = (defined $until && $until != $INF) ? $until : undef;
	push @ev, $self->publish($u, now => $now, at => $now, cause => 'manual');
	return ($u->{status}, @ev);
}

# join(): returns (undef, events).
# Open: join()'s heartbeat always writes, with the default timers (the
# README asks a session with its own ttl to send its next heartbeat() with
# it, so the default replaces it).
sub join_room
{
	my ($self, $room, $uid, $sid, $meta, $now) = @_;
	my $u = $self->ensure_user($uid, $now);
	my @ev = $self->settle($u, $now);
	push @ev, $self->touch_session($u, $sid, 1, undef,
		$self->{session_ttl}, $self->{away_after}, $now);
	my @before = $self->room_sessions($room, $uid);
	if ($self->{members}{$room}{$uid}{$sid})
	{
		push @ev, $self->store_meta($u, $room, $sid, $meta, $now);
	}
	else
	{
		my $m = $self->{members}{$room}{$uid}{$sid} = {
			meta => canon_json($meta),
			joined_at => $now,
			sent_at => $now,
			due_at => undef,
		};
		push @ev,
		  room_event($room,
			event => @before ? 'update' : 'join',
			user_id => $uid, session_id => $sid,
			(@before ? (change => 'joined') : (status => $u->{status})),
			meta => $m->{meta}, at => $now)
		  if visible($u);
	}
	return (undef, @ev);
}

# leave(): returns (undef, events).
sub leave_room
{
	my ($self, $room, $uid, $sid, $now) = @_;
	my $u = $self->{users}{$uid};
	return (undef) unless $u;
	my @ev = $self->settle($u, $now);
	foreach my $x ($self->room_sessions($room, $uid))
	{
		next if defined $sid && $x ne $sid;
		push @ev, $self->remove_from_room($u, $room, $x, 'leave', $now);
	}
	return (undef, @ev);
}

# set_meta(): returns ('55000') when the session is not in the room.
sub set_meta
{
	my ($self, $room, $uid, $sid, $meta, $now) = @_;
	my $u = $self->{users}{$uid};
	return ('55000') unless $u;
	my @ev = $self->settle($u, $now);
	return ('55000') unless $self->{members}{$room}{$uid}{$sid};
	push @ev, $self->store_meta($u, $room, $sid, $meta, $now);
	return (undef, @ev);
}

# typing(): returns ('55000') when the user is not in the room.  An
# invisible user's typing is neither recorded nor announced.
sub typing
{
	my ($self, $room, $uid, $is_typing, $now) = @_;
	my $u = $self->{users}{$uid};
	return ('55000') unless $u;
	my @ev = $self->settle($u, $now);
	my @sessions = $self->room_sessions($room, $uid);
	return ('55000') unless @sessions;
	if (!$is_typing)
	{
		push @ev, $self->stop_typing($u, $room, $now);
	}
	elsif (visible($u))
	{
		my $flag = $self->{typing}{$room}{$uid};
		my $running = $flag && $flag->{until} > $now;
		$self->{typing}{$room}{$uid} = {
			started => $running ? $flag->{started} : $now,
			until => $now + $self->{typing_timeout},
		};
		push @ev, room_event($room, event => 'typing', user_id => $uid,
			typing => 1, reason => undef, at => $now)
		  unless $running;
	}
	return (undef, @ev);
}

# --- Reads (README: Reads, Room functions) -----------------------------------

# get(uid): status, message, since, last_active, last_seen, sessions.
sub get
{
	my ($self, $uid) = @_;
	my $u = $self->{users}{$uid};
	return {
		status => 'offline', message => undef, since => undef,
		last_active => undef, last_seen => undef, sessions => 0,
	} unless $u;
	my ($la, $ls) =
	  visible($u) ? latest_times($u) : ($u->{last_active}, $u->{last_seen});
	return {
		status => $u->{status},
		message => $u->{message},
		since => $u->{since},
		last_active => $la,
		last_seen => $ls,
		sessions => $u->{status} eq 'offline'
		? 0 : scalar(keys %{ $u->{sessions} }),
	};
}

sub shown
{
	my ($self, $uid) = @_;
	my $u = $self->{users}{$uid};
	return $u && $u->{status} ne 'offline';
}

# rooms(uid), sorted.
sub rooms_of
{
	my ($self, $uid) = @_;
	return () unless $self->shown($uid);
	return $self->user_rooms($uid);
}

# members(room): {uid => {status, message, metas => {sid => meta}}}.
sub members_of
{
	my ($self, $room) = @_;
	my %out;
	foreach my $uid (keys %{ $self->{members}{$room} // {} })
	{
		next unless $self->shown($uid);
		my @sids = $self->room_sessions($room, $uid) or next;
		my $u = $self->{users}{$uid};
		$out{$uid} = {
			status => $u->{status},
			message => $u->{message},
			metas => {
				map { $_ => $self->{members}{$room}{$uid}{$_}{meta} } @sids
			},
		};
	}
	return \%out;
}

# typing_users(room) at time now, as a sorted list.
sub typing_of
{
	my ($self, $room, $now) = @_;
	my $flags = $self->{typing}{$room} // {};
	return sort grep { $flags->{$_}{until} > $now && $self->shown($_) }
	  keys %$flags;
}

# online_users(): the users not offline, sorted.
sub online
{
	my ($self) = @_;
	return sort grep { $self->shown($_) } keys %{ $self->{users} };
}

# Every deadline not yet applied, sorted (for choosing sweep times).
sub pending_deadlines
{
	my ($self) = @_;
	my @t;
	foreach my $u (values %{ $self->{users} })
	{
		push @t, map { $_->[0] } due_moments($u, $INF - 1);
	}
	foreach my $room (keys %{ $self->{typing} })
	{
		push @t, map { $_->{until} } values %{ $self->{typing}{$room} };
	}
	foreach my $room (keys %{ $self->{members} })
	{
		foreach my $m (values %{ $self->{members}{$room} })
		{
			push @t, grep { defined } map { $_->{due_at} } values %$m;
		}
	}
	my %seen;
	return sort { $a <=> $b } grep { !$seen{$_}++ } @t;
}

# A small seeded generator (xorshift32), the same on every platform, for
# the tests' random choices.
package PresenceModel::Rng;

sub new
{
	my ($class, $seed) = @_;
	my $x = ($seed * 2654435761 + 12345) % 4294967296;
	$x = 0x9E3779B9 if $x == 0;
	my $self = bless \$x, $class;
	$self->next for 1 .. 4;
	return $self;
}

sub next
{
	my ($self) = @_;
	my $x = $$self;
	$x ^= ($x << 13) & 0xFFFFFFFF;
	$x ^= $x >> 17;
	$x ^= ($x << 5) & 0xFFFFFFFF;
	return $$self = $x;
}

sub int { my ($self, $n) = @_; return $self->next % $n; }
sub pick { my ($self, @a) = @_; return $a[ $self->int(scalar @a) ]; }
sub chance { my ($self, $p) = @_; return $self->next < $p * 4294967296; }
sub between { my ($self, $lo, $hi) = @_; return $lo + $self->int($hi - $lo + 1); }

# weighted(name => weight, ...)
sub weighted
{
	my ($self, @pairs) = @_;
	my $total = 0;
	$total += $pairs[ 2 * $_ + 1 ] for 0 .. $#pairs / 2;
	my $r = $self->int($total);
	for (my $i = 0; $i < @pairs; $i += 2)
	{
		return $pairs[$i] if ($r -= $pairs[ $i + 1 ]) < 0;
	}
	return $pairs[-2];
}

1;
