// presence-client.js: the browser side of presence, in one file with no
// dependencies, to lift into any page.  It
//   - detects activity (mouse, keyboard, touch, scroll, wheel, tab shown),
//   - sends a heartbeat every heartbeatMs, active only when the person did
//     something since the last one, and one at once when they come back,
//   - ends the session when the tab closes (navigator.sendBeacon on pagehide),
//   - keeps the room's state (members, status, message, typing) from the
//     server's event stream, reconnecting and resynchronising by itself,
//   - sends typing on keystrokes, stops it after a pause or on send,
//   - shows the "you are away / offline, click to come back" overlay.
//
// It talks to server.js (POST /api/join, heartbeat, disconnect, status,
// typing, message; GET /api/events).  Usage:
//
//   import { createPresence } from './presence-client.js';
//   const presence = createPresence({ user: 'alice', room: 'chat:general',
//       heartbeatMs: 15000, onChange: render, onEvent: log });
//   presence.start();
//
// The overlay's text is set with options.overlay (or overlay: false for none)
// and its colours with the CSS variables --presence-overlay-backdrop,
// --presence-overlay-bg, --presence-overlay-fg, --presence-overlay-accent and
// --presence-overlay-offline-accent.

const ACTIVITY_EVENTS = ['mousemove', 'mousedown', 'keydown', 'touchstart', 'scroll', 'wheel'];

const OVERLAY_DEFAULTS = {
	away: 'You are away',
	offline: 'You are offline',
	hint: 'Click anywhere to come back',
};

// The overlay's look; a page overrides the variables (or the classes).
const OVERLAY_CSS = `
.presence-overlay { position: fixed; inset: 0; z-index: 1000; display: flex;
  align-items: center; justify-content: center; cursor: pointer;
  background: var(--presence-overlay-backdrop, rgba(20, 20, 30, .45)); }
.presence-overlay-card { max-width: 22rem; padding: 1.4rem 1.8rem; border-radius: 12px;
  text-align: center; box-shadow: 0 10px 40px rgba(0, 0, 0, .3);
  background: var(--presence-overlay-bg, #fff); color: var(--presence-overlay-fg, #1d1c1d);
  border-top: 6px solid var(--presence-overlay-accent, #ecb22e); }
.presence-overlay[data-state=offline] .presence-overlay-card {
  border-top-color: var(--presence-overlay-offline-accent, #9aa0a6); }
.presence-overlay-title { display: block; font-size: 1.3rem; margin-bottom: .4rem; }
.presence-overlay-hint { margin: 0; opacity: .75; }
`;

export function createPresence(options) {
	const opts = {
		base: '',				// where server.js is mounted
		heartbeatMs: 15000,		// well within presence.session_ttl
		typingRenewMs: 2000,	// renew the typing flag (it stops after typing_timeout)
		typingPauseMs: 3000,	// stop typing after a pause this long
		onChange() {},			// (presence) after any change of state
		onEvent() {},			// (event) each event, for a log; catchup: true when replayed
		onMessage() {},			// ({ user, text }) a chat message
		...options,
	};
	const overlayText = opts.overlay === false ? null : { ...OVERLAY_DEFAULTS, ...opts.overlay };
	const me = opts.user;
	// One session per tab.  randomUUID needs a secure context (https or localhost).
	const session = crypto.randomUUID ? crypto.randomUUID() : `tab-${Math.random().toString(36).slice(2)}`;

	// What the page shows.  members: user id -> { status, message, sessions },
	// everyone seen in the room; those who left stay, as offline.
	const state = {
		me,
		session,
		status: 'offline',		// my visible status, as others see it
		manual: 'online',		// what I chose in the menu: online, busy, away, invisible
		message: null,			// my status message
		inRoom: false,			// my session is in the room (false once it has ended)
		connected: false,		// the event stream is up
		lastSeq: null,			// the last event seq received
		members: new Map(),
		typing: new Set(),
	};

	let active = false;			// activity since the last heartbeat
	let beating = false;		// a heartbeat is on its way
	let timer = null;
	let manualTimer = null;
	let source = null;
	let closing = false;
	const changed = () => opts.onChange(state);

	// POST a call to server.js; returns its JSON answer or throws.
	async function call(name, body) {
		const res = await fetch(`${opts.base}/api/${name}`, {
			method: 'POST',
			headers: { 'Content-Type': 'application/json' },
			body: JSON.stringify({ user: me, session, ...body }),
		});
		const answer = await res.json().catch(() => ({}));
		if (!res.ok) throw new Error(answer.error || `${name}: HTTP ${res.status}`);
		return answer;
	}

	// --- Activity and heartbeats ----------------------------------------

	// Any input marks the person active.  Coming back from away is sent at
	// once rather than at the next heartbeat, so others see it immediately.
	function onActivity() {
		active = true;
		if (state.inRoom && state.status === 'away' && state.manual === 'online' && !beating) heartbeat();
	}

	// A hidden tab's timers are slowed down (Chrome runs them once a minute
	// after five minutes hidden): with a session_ttl shorter than that, the
	// session of a long-hidden tab ends, and the overlay says so when the
	// person comes back.  A heartbeat that fails (the server is down) is not
	// sent again: its activity is old news by the next one.
	async function heartbeat() {
		if (!state.inRoom || closing) return;
		const wasActive = active;
		active = false;
		beating = true;
		try {
			const { status } = await call('heartbeat', { active: wasActive });
			setMyStatus(status);
		} catch {
			// the next heartbeat tells
		} finally {
			beating = false;
		}
	}

	// Enter the room (again): after start, or after the session ended.  The
	// join is an active heartbeat, so the status it leaves tells the choice
	// stored from an earlier visit: offline means invisible, busy and away
	// mean chosen.
	async function join() {
		const { status } = await call('join');
		state.inRoom = true;
		state.manual = { offline: 'invisible', busy: 'busy', away: 'away' }[status] ?? 'online';
		active = false;
		setMyStatus(status);
		clearInterval(timer);
		timer = setInterval(heartbeat, opts.heartbeatMs);
	}

	// My visible status from a call's answer or my own events.  Invisible
	// reads as offline to everyone, me included: keep showing my choice.
	function setMyStatus(status) {
		state.status = status;
		const mine = state.members.get(me);
		if (mine && status) mine.status = status;
		updateOverlay();
		changed();
	}

	// --- The event stream -----------------------------------------------

	// EventSource reconnects by itself and sends the last id it got as
	// Last-Event-ID, which server.js uses to catch up.  If it gives up (an
	// HTTP error), open a new one that says where it was with ?since=.
	function connect() {
		const since = state.lastSeq === null ? '' : `&since=${state.lastSeq}`;
		source = new EventSource(`${opts.base}/api/events?user=${encodeURIComponent(me)}${since}`);
		source.onopen = () => { state.connected = true; changed(); };
		source.onerror = () => {
			state.connected = false;
			changed();
			if (source.readyState === EventSource.CLOSED && !closing) setTimeout(connect, 2000);
		};
		source.onmessage = (msg) => {
			const event = JSON.parse(msg.data);
			if (msg.lastEventId) state.lastSeq = Number(msg.lastEventId);
			apply(event);
			changed();
		};
	}

	function member(user) {
		if (!state.members.has(user))
			state.members.set(user, { status: 'offline', message: null, sessions: new Set() });
		return state.members.get(user);
	}

	// Apply one event of the stream (see the README's "Room events").
	function apply(e) {
		switch (e.event) {
		case 'snapshot': {
			const present = new Set(e.members.map((m) => m.user_id));
			for (const [user, m] of state.members)
				if (!present.has(user)) { m.status = 'offline'; m.sessions.clear(); }
			for (const m of e.members)
				Object.assign(member(m.user_id), { status: m.status, message: m.message, sessions: new Set(m.sessions) });
			state.typing = new Set(e.typing);
			if (present.has(me)) {
				state.message = state.members.get(me).message;
				setMyStatus(state.members.get(me).status);
			}
			else if (state.inRoom && state.manual !== 'invisible') sessionEnded();
			break;
		}
		case 'join':
			Object.assign(member(e.user_id), { status: e.status, message: e.message ?? null });
			member(e.user_id).sessions.add(e.session_id);
			break;
		case 'update':
			if (e.change === 'joined') member(e.user_id).sessions.add(e.session_id);
			if (e.change === 'left') member(e.user_id).sessions.delete(e.session_id);
			if (e.change === 'left' && e.user_id === me && e.session_id === session) sessionEnded();
			break;
		case 'leave':
			Object.assign(member(e.user_id), { status: 'offline' });
			member(e.user_id).sessions.clear();
			state.typing.delete(e.user_id);
			if (e.user_id === me && state.manual !== 'invisible') sessionEnded();
			break;
		case 'status':
			Object.assign(member(e.user_id), { status: e.status, message: e.message });
			if (e.user_id === me && !e.catchup) {
				state.message = e.message;
				if (e.reason === 'expired') state.manual = 'online';
				setMyStatus(e.status);
			}
			break;
		case 'typing':
			if (e.typing) state.typing.add(e.user_id); else state.typing.delete(e.user_id);
			break;
		case 'broadcast':
			if (e.payload?.type === 'message') opts.onMessage(e.payload);
			break;
		}
		opts.onEvent(e);
	}

	// My session ended without me closing the tab (no heartbeat for the
	// session ttl: the computer slept, the network or the server was down).
	// Stop heartbeats, which would make a session outside the room, and ask
	// the person to come back.
	function sessionEnded() {
		if (closing) return;
		state.inRoom = false;
		clearInterval(timer);
		setMyStatus('offline');
	}

	// --- The overlay ----------------------------------------------------

	let overlay = null;

	// "You are away / offline: click to come back": shown when I went away
	// by being idle (not when I chose away) and when my session ended.
	function updateOverlay() {
		if (!overlayText) return;
		const idle = state.inRoom && state.status === 'away' && state.manual === 'online';
		const gone = !state.inRoom && state.manual !== 'invisible' && started;
		if (!idle && !gone) { overlay?.remove(); overlay = null; return; }
		if (!overlay) {
			if (!document.getElementById('presence-overlay-css')) {
				const style = document.createElement('style');
				style.id = 'presence-overlay-css';
				style.textContent = OVERLAY_CSS;
				document.head.prepend(style);	// first, so that the page's CSS wins
			}
			overlay = document.createElement('div');
			overlay.className = 'presence-overlay';
			overlay.setAttribute('role', 'alertdialog');
			overlay.innerHTML = '<div class="presence-overlay-card">' +
				'<strong class="presence-overlay-title"></strong><p class="presence-overlay-hint"></p></div>';
			overlay.addEventListener('click', comeBack);
			document.body.append(overlay);
		}
		overlay.dataset.state = idle ? 'away' : 'offline';
		overlay.querySelector('.presence-overlay-title').textContent = idle ? overlayText.away : overlayText.offline;
		overlay.querySelector('.presence-overlay-hint').textContent = overlayText.hint;
	}

	// Back online: an active heartbeat, or joining again if the session ended.
	async function comeBack() {
		active = true;
		if (state.inRoom) await heartbeat();
		else await join().catch(() => {});
	}

	// --- Typing ---------------------------------------------------------

	let typingSentAt = 0;
	let typingPause = null;

	// Call on each input event of the text box, with its current text.
	function typed(text) {
		if (!state.inRoom) return;
		clearTimeout(typingPause);
		if (!text) return stopTyping();
		if (Date.now() - typingSentAt > opts.typingRenewMs) {
			typingSentAt = Date.now();
			call('typing', { typing: true }).catch(() => {});
		}
		typingPause = setTimeout(stopTyping, opts.typingPauseMs);
	}

	function stopTyping() {
		clearTimeout(typingPause);
		if (!typingSentAt) return;
		typingSentAt = 0;
		call('typing', { typing: false }).catch(() => {});
	}

	// --- Start and stop -------------------------------------------------

	let started = false;

	async function start() {
		for (const type of ACTIVITY_EVENTS)
			addEventListener(type, onActivity, { capture: true, passive: true });
		document.addEventListener('visibilitychange', () => {
			if (document.visibilityState === 'visible') onActivity();
		});
		// pagehide, not unload or beforeunload: it also fires on mobile and
		// when the page goes into the back/forward cache.  sendBeacon still
		// goes out while the tab closes (a fetch would be cancelled).  A
		// reload is a leave and a join to others; an app that would rather
		// hide that sends nothing and lets the session ttl end the session.
		addEventListener('pagehide', () => {
			closing = true;
			navigator.sendBeacon(`${opts.base}/api/disconnect`, JSON.stringify({ user: me, session }));
		});
		// Back from the back/forward cache: the session was ended, join again.
		addEventListener('pageshow', (e) => {
			if (e.persisted) { closing = false; state.inRoom = false; join().catch(() => {}); }
		});
		await join();
		started = true;
		connect();
	}

	return {
		state,
		start,
		typed,
		stopTyping,
		comeBack,
		// The status menu: online (automatic), busy, away or invisible, with
		// an optional message; seconds > 0 clears both after that long.
		async setStatus(status, message = null, seconds = null) {
			// Set before the call: going invisible makes my own leave event
			// arrive, which must not read as my session ending.
			const before = state.manual;
			state.manual = status;
			let visible;
			try {
				({ status: visible } = await call('status', { status, message, seconds }));
			} catch (err) {
				state.manual = before;
				throw err;
			}
			state.message = message || null;
			// The server clears both at the expiry (and says so with an event,
			// except for invisible, whose end reads as a new connection).
			clearTimeout(manualTimer);
			if (seconds > 0)
				manualTimer = setTimeout(() => { state.manual = 'online'; state.message = null; updateOverlay(); changed(); },
					seconds * 1000);
			setMyStatus(visible);
		},
		// A chat message to the room (it also stops typing).
		async send(text) {
			clearTimeout(typingPause);
			typingSentAt = 0;
			await call('message', { text });
		},
	};
}
