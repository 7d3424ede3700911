// server.js: the example chat's backend.  It is only glue between browsers and
// the presence SQL API: each HTTP call of the page is one SQL call, and the
// room's NOTIFY channel is relayed to every browser as server-sent events,
// with a snapshot and a catch-up on each (re)connect so that a browser that
// loses its stream misses nothing.
//
//   PGHOST=/run/postgresql PGDATABASE=chat PGUSER=chat_app node server.js
//
// Environment: DATABASE_URL or the usual PG* variables (the database must have
// CREATE EXTENSION presence, and the role the two grants of the README);
// CHAT_ROOM (chat:general); CHAT_HOST (127.0.0.1); CHAT_PORT (8080, 0 picks a
// free port); CHAT_HEARTBEAT_MS (how often pages send a heartbeat; default a
// quarter of presence.session_ttl, at most 15 s).
//
// Who a user is comes from the page (?user=alice).  A real app takes the user
// id from its own authentication (a session cookie, a token) on every request,
// never from the request body.
'use strict';

const http = require('http');
const fs = require('fs');
const path = require('path');
const { Client, Pool } = require('pg');

const ROOM = process.env.CHAT_ROOM || 'chat:general';
const HOST = process.env.CHAT_HOST || '127.0.0.1';
const PORT = Number(process.env.CHAT_PORT ?? 8080);
const DB = { connectionString: process.env.DATABASE_URL };
const PAGE = 1000;					// rows per presence.changes() call
const MAX_BODY = 16 * 1024;

const log = (msg) => console.log(`chat: ${msg}`);

// One pool for the API calls; the LISTEN connection is separate (below).
// The pool reports connections it loses while idle as 'error' events, which
// would end the process if nobody listened.
const pool = new Pool({ ...DB, max: 10, application_name: 'presence-chat' });
pool.on('error', (err) => log(`pool: ${err.message}`));

// The relay: one LISTEN connection on the room's channel, and the browser
// streams it feeds.
const relay = {
	channel: null,		// presence.room_channel(ROOM)
	head: 0,			// highest seq the listener has seen (events and history)
	seen: new Set(),	// users seen in the room since start: who catch-up is for
	streams: new Set(),	// open browser streams
	ready: null,		// resolves once the listener has caught up
	queue: Promise.resolve(),	// events are relayed one at a time, in order
};

// Listen, and listen again whenever the connection is lost, following the
// README's catch-up order: LISTEN first, read presence.changes() to its end,
// then relay what arrived meanwhile.  The room's other events (join, leave,
// typing) are not in the history, so after a lost connection every browser
// stream is closed: the browsers reconnect and get a fresh snapshot.
async function listen() {
	let retryMs = 500;

	for (;;) {
		let readyNow;
		relay.ready = new Promise((resolve) => { readyNow = resolve; });
		const client = new Client({ ...DB, application_name: 'presence-chat-listener', keepAlive: true });
		const lost = new Promise((resolve) => {
			client.on('error', (err) => resolve(err.message));
			client.on('end', () => resolve('connection closed'));
		});
		try {
			await client.connect();
			let held = [];
			client.on('notification', (msg) => {
				let event;
				try { event = JSON.parse(msg.payload); } catch { return; }
				if (held) held.push(event); else relayEvent(event);
			});
			if (!relay.channel)
				relay.channel = (await client.query('SELECT presence.room_channel($1) AS ch', [ROOM])).rows[0].ch;
			await client.query(`LISTEN ${client.escapeIdentifier(relay.channel)}`);
			// Only the last seq matters here (a browser's first snapshot
			// starts from it; browsers catch up on their own).
			const { rows } = await client.query('SELECT presence.last_seq() AS last');
			relay.head = Math.max(relay.head, Number(rows[0].last));
			for (const s of relay.streams) s.res.end();		// they resync on reconnect
			held.forEach(relayEvent);
			held = null;
			retryMs = 500;
			log(`listening on channel ${relay.channel} (history up to seq ${relay.head})`);
			readyNow();
			log(`listener lost: ${await lost}`);
		} catch (err) {
			log(`listener: ${err.message}`);
		}
		client.end().catch(() => {});
		if (shuttingDown) return;
		await new Promise((resolve) => setTimeout(resolve, retryMs));
		retryMs = Math.min(retryMs * 2, 10000);
	}
}

// Relay one room event to every stream, in seq order.  A join event carries
// the user's status but not their status message: add it from presence.get(),
// so that "busy: In a meeting" shows as soon as they enter.
function relayEvent(event) {
	relay.queue = relay.queue.then(async () => {
		if (!(event.seq > relay.head)) return;		// already seen through changes()
		relay.head = event.seq;
		if (event.user_id) relay.seen.add(event.user_id);
		if (event.event === 'join') {
			try {
				const { rows } = await pool.query('SELECT message FROM presence.get($1)', [event.user_id]);
				event.message = rows[0].message;
			} catch (err) {
				log(`join of ${event.user_id}: ${err.message}`);
			}
		}
		for (const s of relay.streams) s.push(event);
	}).catch((err) => log(`relay: ${err.message}`));
}

// Write one server-sent event.  Its id is the seq, which the browser sends
// back as Last-Event-ID when it reconnects.
function send(res, event, id) {
	if (res.writableEnded || res.destroyed) return;
	res.write(`id: ${id}\ndata: ${JSON.stringify(event)}\n\n`);
}

// GET /api/events: the room's events as server-sent events.  On every
// (re)connect, while live events are held back:
//   1. when the browser says which seq it saw last (Last-Event-ID, or
//      ?since= from a browser that opens a new EventSource), the status
//      changes it missed, from presence.changes(since) to its end;
//   2. a snapshot of the room: presence.members() and typing_users();
//   3. the held live events newer than what 1 read (or, on a first connect,
//      than what the listener had seen before 2).
// 2 is read after 1, so it is at least as new as every row of 1, and every
// event older than what 3 sends is in 2.  An event of 3 may be in 2 too:
// each event sets a state outright, so applying it again changes nothing.
async function openStream(req, res, url) {
	const header = req.headers['last-event-id'] ?? url.searchParams.get('since');
	const since = /^\d+$/.test(header ?? '') ? Number(header) : null;

	res.writeHead(200, {
		'Content-Type': 'text/event-stream',
		'Cache-Control': 'no-store',
		'Connection': 'keep-alive',
		'X-Accel-Buffering': 'no',		// nginx: do not buffer the stream
	});
	res.write('retry: 1000\n\n');	// reconnect after 1 s when the stream drops
	const stream = {
		res,
		held: [],
		push(event) { if (this.held) this.held.push(event); else send(res, event, event.seq); },
	};
	relay.streams.add(stream);
	// A comment line now and then keeps proxies from closing an idle stream.
	const ping = setInterval(() => { if (!res.writableEnded) res.write(': ping\n\n'); }, 15000);
	req.on('close', () => { relay.streams.delete(stream); clearInterval(ping); });

	try {
		await relay.ready;
		const missed = [];
		let last = since;
		if (since !== null) {
			// (A real app bounds this: a browser may send any number.)
			for (;;) {
				const { rows } = await pool.query(
					'SELECT seq, user_id, status, previous, reason, message, last_active, at FROM presence.changes($1, $2)',
					[last, PAGE]);
				for (const r of rows) missed.push({ ...r, seq: Number(r.seq), event: 'status', room: ROOM, catchup: true });
				if (rows.length > 0) last = Number(rows[rows.length - 1].seq);
				if (rows.length < PAGE) break;
			}
		} else {
			await relay.queue;
			last = relay.head;		// everything the listener has seen is in the snapshot
		}
		const snap = (await pool.query(
			`SELECT (SELECT coalesce(json_agg(json_build_object(
						'user_id', m.user_id, 'status', m.status, 'message', m.message,
						'sessions', (SELECT json_agg(s->'session_id') FROM jsonb_array_elements(m.metas) s))),
						'[]') FROM presence.members($1) m) AS members,
					(SELECT coalesce(json_agg(t), '[]') FROM presence.typing_users($1) t) AS typing`,
			[ROOM])).rows[0];
		// The catch-up is for the users the browser can know: those in the
		// room now and those seen in it since this server started.
		snap.members.forEach((m) => relay.seen.add(m.user_id));
		for (const event of missed)
			if (relay.seen.has(event.user_id)) send(res, event, event.seq);
		send(res, { event: 'snapshot', room: ROOM, members: snap.members, typing: snap.typing }, last);
		for (const event of stream.held)
			if (event.seq > last) send(res, event, event.seq);
		stream.held = null;
	} catch (err) {
		log(`stream: ${err.message}`);
		res.end();
	}
}

// The page's calls, each one statement of the SQL API.  Each takes a JSON
// body with the user id (see the header: a real app authenticates) and this
// tab's session id, and answers with JSON.
const api = {
	// The tab opens: join the room (also an active heartbeat).
	async join({ user, session }) {
		await pool.query('SELECT presence.join($1, $2, $3)', [ROOM, user, session]);
		return (await pool.query('SELECT status FROM presence.get($1)', [user])).rows[0];
	},
	// Every CHAT_HEARTBEAT_MS: active tells whether the person did something.
	async heartbeat({ user, session, active }) {
		return (await pool.query('SELECT presence.heartbeat($1, $2, $3) AS status',
			[user, session, active === true])).rows[0];
	},
	// The tab closes (navigator.sendBeacon): end this session at once.
	async disconnect({ user, session }) {
		return (await pool.query('SELECT presence.disconnect($1, $2) AS status', [user, session])).rows[0];
	},
	// The status menu: online (automatic), away, busy, invisible, with an
	// optional message; both clear after `seconds` when given.
	async status({ user, status, message, seconds }) {
		const secs = Number.isFinite(seconds) && seconds > 0 ? seconds : null;
		return (await pool.query(
			`SELECT presence.set_status($1, $2, $3,
					now() + make_interval(secs => $4::double precision)) AS status`,
			[user, status === 'online' ? 'auto' : status, message || null, secs])).rows[0];
	},
	// Keystrokes in the text box (true, renewed every few seconds) and a
	// pause, an empty box or a sent message (false).
	async typing({ user, typing }) {
		await pool.query('SELECT presence.typing($1, $2, $3)', [ROOM, user, typing === true]);
		return {};
	},
	// A chat message: stop typing and pass it to the room with broadcast(),
	// which stores nothing (a real app stores messages in its own table).
	async message({ user, text }) {
		if (typeof text !== 'string' || text.length === 0 || text.length > 2000)
			throw Object.assign(new Error('a message has 1 to 2000 characters'), { code: '22023' });
		await pool.query('SELECT presence.typing($1, $2, false)', [ROOM, user]);
		await pool.query('SELECT presence.broadcast($1, $2)',
			[ROOM, JSON.stringify({ type: 'message', user, text })]);
		return {};
	},
};

// The HTTP status of an error from the API: bad input (SQLSTATE class 22)
// 400, not in the room (55000) 409, refused (42501) 403, anything else 500.
function httpStatus(err) {
	if (typeof err.code !== 'string') return 500;
	if (err.code.startsWith('22')) return 400;
	return { '55000': 409, '42501': 403 }[err.code] ?? 500;
}

function readBody(req) {
	return new Promise((resolve, reject) => {
		let body = '';
		req.setEncoding('utf8');
		req.on('data', (chunk) => {
			body += chunk;
			if (body.length > MAX_BODY) { reject(new Error('body too large')); req.destroy(); }
		});
		req.on('end', () => resolve(body));
		req.on('error', reject);
	});
}

function reply(res, code, body) {
	res.writeHead(code, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
	res.end(JSON.stringify(body));
}

// POST /api/NAME: parse the body (JSON; sendBeacon sends it as text/plain),
// check that user and session are strings (the SQL API checks the rest) and
// call the API.
async function callApi(name, req, res) {
	let args;
	try {
		args = JSON.parse(await readBody(req));
	} catch {
		return reply(res, 400, { error: 'the body must be JSON' });
	}
	if (typeof args?.user !== 'string' || (name !== 'status' && name !== 'typing' &&
		name !== 'message' && typeof args.session !== 'string'))
		return reply(res, 400, { error: 'user and session are required' });
	try {
		reply(res, 200, await api[name](args));
	} catch (err) {
		const code = httpStatus(err);
		if (code === 500) log(`${name}: ${err.message}`);
		reply(res, code, { error: err.message, sqlstate: err.code });
	}
}

// The page's static files, read once.
const PUBLIC = path.join(__dirname, 'public');
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
const files = new Map(fs.readdirSync(PUBLIC).filter((f) => TYPES[path.extname(f)]).map((f) => [
	`/${f}`, { type: `${TYPES[path.extname(f)]}; charset=utf-8`, body: fs.readFileSync(path.join(PUBLIC, f)) }]));
files.set('/', files.get('/index.html'));

let config = null;	// what the page needs to know: the room and the timers

// Read the timers of this database (ALTER DATABASE ... SET presence.*) for
// the page: heartbeats must come well within presence.session_ttl.
async function loadConfig() {
	const { rows } = await pool.query(
		`SELECT extract(epoch FROM current_setting('presence.session_ttl')::interval) * 1000 AS ttl,
				extract(epoch FROM current_setting('presence.away_after')::interval) * 1000 AS away,
				extract(epoch FROM current_setting('presence.typing_timeout')::interval) * 1000 AS typing`);
	const ttl = Number(rows[0].ttl);
	return {
		room: ROOM,
		heartbeatMs: Number(process.env.CHAT_HEARTBEAT_MS) || Math.max(1000, Math.min(15000, ttl / 4)),
		sessionTtlMs: ttl,
		awayAfterMs: Number(rows[0].away),
		typingTimeoutMs: Number(rows[0].typing),
	};
}

const server = http.createServer((req, res) => {
	const url = new URL(req.url, 'http://localhost');
	const name = url.pathname.startsWith('/api/') ? url.pathname.slice(5) : null;

	if (req.method === 'GET' && name === 'events') return openStream(req, res, url);
	if (req.method === 'GET' && name === 'config') return reply(res, 200, config);
	if (req.method === 'POST' && Object.hasOwn(api, name ?? '')) return callApi(name, req, res);
	const file = req.method === 'GET' && files.get(url.pathname);
	if (!file) return reply(res, 404, { error: 'not found' });
	res.writeHead(200, { 'Content-Type': file.type, 'Cache-Control': 'no-cache' });
	res.end(file.body);
});

let shuttingDown = false;

// Ctrl-C or SIGTERM: close the streams (browsers will reconnect to the next
// server), the listener and the pool.
function shutdown() {
	if (shuttingDown) return;
	shuttingDown = true;
	for (const s of relay.streams) s.res.end();
	server.close();
	server.closeAllConnections();
	pool.end().finally(() => process.exit(0));
	setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);

(async () => {
	try {
		config = await loadConfig();
	} catch (err) {
		console.error(`chat: cannot use the database: ${err.message}`);
		process.exit(1);
	}
	listen();
	await relay.ready;
	server.listen(PORT, HOST, () => {
		const { port } = server.address();
		log(`room ${ROOM}, heartbeat every ${config.heartbeatMs} ms`);
		log(`open http://${HOST}:${port}/?user=alice (and ?user=bob in another window)`);
	});
})();
