// app.js: the example chat page.  presence-client.js does the presence work
// (activity, heartbeats, the event stream, the overlay); this file only draws
// its state: the member list with status dots, the typing line, the feed of
// messages and status changes, and the status menu.
import { createPresence } from './presence-client.js';

const $ = (id) => document.getElementById(id);
const user = new URLSearchParams(location.search).get('user');

// Status words for the feed, by the events' reason.
const REASONS = {
	connect: 'connected', activity: 'active again', idle: 'idle', timeout: 'timed out',
	disconnect: 'disconnected', manual: 'set by them', expired: 'expired',
};
const ORDER = { online: 0, busy: 1, away: 2, invisible: 3, offline: 4 };

if (!user) {
	// No user: ask for a name.  A real app knows who is logged in.
	$('login').hidden = false;
	$('login').addEventListener('submit', (e) => {
		e.preventDefault();
		location.search = `?user=${encodeURIComponent(new FormData(e.target).get('user').trim())}`;
	});
} else {
	main();
}

async function main() {
	const config = await (await fetch('api/config')).json();
	const presence = createPresence({
		user,
		room: config.room,
		heartbeatMs: config.heartbeatMs,
		typingRenewMs: config.typingTimeoutMs / 2,
		// The overlay's text; its colours are CSS variables (style.css).
		overlay: { away: 'You are away', offline: 'You are offline', hint: 'Click anywhere to come back' },
		onChange: render,
		onEvent: logEvent,
		onMessage: (m) => addLine('msg', null, [bold(m.user), ` ${m.text}`]),
	});
	window.presence = presence;		// to look at presence.state in the console

	$('app').hidden = false;
	$('room').textContent = `# ${config.room}`;
	$('my-name').textContent = user;
	document.title = `${user} · ${config.room}`;

	// The status menu.
	$('status-form').addEventListener('submit', async (e) => {
		e.preventDefault();
		const form = new FormData(e.target);
		try {
			await presence.setStatus(form.get('status'), form.get('message').trim(), Number(form.get('seconds')));
			$('menu').open = false;
		} catch (err) {
			addLine('sys error', null, [`could not set the status: ${err.message}`]);
		}
	});
	// The composer: keystrokes drive the typing flag, Enter sends.
	$('text').addEventListener('input', () => presence.typed($('text').value));
	$('composer').addEventListener('submit', async (e) => {
		e.preventDefault();
		const text = $('text').value.trim();
		if (!text) return;
		$('text').value = '';
		await presence.send(text).catch((err) => addLine('sys error', null, [`not sent: ${err.message}`]));
	});

	let connectedBefore = false;
	let catchingUp = false;		// the catch-up after a reconnect has begun

	// Draw everything from presence.state.
	function render(state) {
		const mine = state.manual === 'invisible' ? 'invisible' : state.status;
		$('my-dot').dataset.status = mine;
		$('my-status').textContent = state.message ? `${mine}: ${state.message}` : mine;
		$('conn').dataset.up = state.connected;
		$('conn').textContent = state.connected ? 'live' : 'reconnecting…';
		if (!$('menu').open) {
			const radio = $('status-form').querySelector(`input[value="${state.manual}"]`);
			if (radio) radio.checked = true;
		}

		const all = new Map(state.members);
		if (!all.has(user)) all.set(user, { status: 'offline', message: null, sessions: new Set() });
		const rows = [...all].map(([id, m]) => ({
			id, ...m, status: id === user ? mine : m.status, message: id === user ? state.message : m.message,
		}));
		rows.sort((a, b) => ORDER[a.status] - ORDER[b.status] || a.id.localeCompare(b.id));
		$('members').replaceChildren(...rows.map((m) => {
			const li = document.createElement('li');
			li.dataset.user = m.id;
			li.dataset.status = m.status;
			const dot = document.createElement('span');
			dot.className = 'dot';
			dot.title = m.status;
			const name = document.createElement('span');
			name.className = 'name';
			name.textContent = m.id === user ? `${m.id} (you)` : m.id;
			li.append(dot, name);
			const detail = [m.status === 'offline' || m.status === 'online' ? '' : m.status,
				m.status !== 'offline' && m.message ? m.message : '',
				m.sessions.size > 1 ? `${m.sessions.size} tabs` : ''].filter(Boolean).join(' · ');
			if (detail) {
				const span = document.createElement('span');
				span.className = 'detail';
				span.textContent = detail;
				li.append(span);
			}
			return li;
		}));

		const typing = [...state.typing].filter((id) => id !== user);
		$('typing').textContent = typing.length === 0 ? ''
			: typing.length === 1 ? `${typing[0]} is typing…`
			: typing.length <= 3 ? `${typing.join(', ')} are typing…` : 'Several people are typing…';
	}

	// One line in the feed per change others can see.
	function logEvent(e) {
		const who = bold(e.user_id ?? '');
		if (e.catchup && !catchingUp) {
			addLine('sys', null, ['reconnected; while you were disconnected:']);
			catchingUp = true;
		}
		if (e.event === 'snapshot') {
			if (connectedBefore && !catchingUp) addLine('sys', null, ['reconnected']);
			connectedBefore = true;
			catchingUp = false;
		} else if (e.event === 'join') {
			addLine('sys', e, [who, ' joined']);
		} else if (e.event === 'leave') {
			addLine('sys', e, [who, ` left (${REASONS[e.reason] ?? e.reason})`]);
		} else if (e.event === 'status') {
			const message = e.message ? `: ${e.message}` : '';
			addLine(e.catchup ? 'sys catchup' : 'sys', e, [who, ` is ${e.status}${message} (${REASONS[e.reason] ?? e.reason})`]);
		}
	}

	presence.start();
}

function bold(text) {
	const b = document.createElement('b');
	b.textContent = text;
	return b;
}

// Append a line to the feed; its time is the event's (or now).
function addLine(kind, event, parts) {
	const li = document.createElement('li');
	li.className = kind;
	if (event?.seq) li.dataset.seq = event.seq;
	if (event?.event) li.dataset.event = event.event;
	const time = document.createElement('time');
	time.textContent = new Date(event?.at ?? Date.now()).toLocaleTimeString();
	li.append(time, ...parts);
	const feed = $('feed');
	const atEnd = feed.scrollTop + feed.clientHeight >= feed.scrollHeight - 4;
	feed.append(li);
	if (atEnd) li.scrollIntoView({ block: 'end' });
}
