// e2e.test.js: the example chat end to end, in headless Chromium driven by
// playwright-core: two browser pages as two users (alice and bob) in one
// room, against the real server.js and a database with presence preloaded
// and short timers (away after 3 s).  run.sh --test sets that up:
//
//   bash examples/chat/run.sh --test
//
// It checks what a person sees (the member list's dots and messages, the
// typing line, the overlay) and what goes over the wire: the raw server-sent
// events each page receives, recorded through the DevTools protocol, and
// presence.changes() in the database.  Screenshots of the key moments go to
// CHAT_ARTIFACTS.  Every wait is a poll with a deadline.
//
// Environment: PGHOST, PGPORT, PGDATABASE, PGUSER (the database), CHAT_ARTIFACTS,
// CHROMIUM (/usr/bin/chromium).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { Pool } = require('pg');

const ROOM = 'chat:general';
const ART = process.env.CHAT_ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'chat-e2e-'));
const WAIT = 15000;		// deadline of a wait for something the page shows

fs.mkdirSync(ART, { recursive: true });
const serverLog = fs.createWriteStream(path.join(ART, 'server.log'), { flags: 'a' });
const db = new Pool({ max: 2 });
let server = null;
let port = 0;
let browser = null;
let alice = null;
let bob = null;
let jiggle = null;
let failed = false;		// a failed step skips the later ones, which build on it

// Start server.js (again, on the same port after the first time) and wait
// until it says where it listens.
async function startServer() {
	const child = spawn(process.execPath, [path.join(__dirname, '..', 'server.js')], {
		env: { ...process.env, CHAT_PORT: String(port), CHAT_HEARTBEAT_MS: '1000' },
		stdio: ['ignore', 'pipe', 'pipe'],
	});
	child.stderr.pipe(serverLog, { end: false });
	port = await new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error('server.js did not start within 15 s')), 15000);
		let out = '';
		child.stdout.on('data', (chunk) => {
			serverLog.write(chunk);
			out += chunk;
			const m = out.match(/open http:\/\/[^:]+:(\d+)\//);
			if (m) { clearTimeout(timer); resolve(Number(m[1])); }
		});
		child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server.js exited with ${code}`)); });
	});
	child.stdout.on('data', (chunk) => serverLog.write(chunk));
	server = child;
}

async function stopServer() {
	if (!server || server.exitCode !== null) return;
	const exited = new Promise((resolve) => server.once('exit', resolve));
	server.kill('SIGTERM');
	await exited;
}

// Poll fn until it returns a truthy value; fail after ms, saying what did
// not happen (what: a string, or a function for details known only then).
async function until(what, fn, ms = WAIT) {
	const deadline = Date.now() + ms;
	for (;;) {
		const value = await fn();
		if (value) return value;
		if (Date.now() > deadline)
			throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`);
		await new Promise((resolve) => setTimeout(resolve, 100));
	}
}

// A browser context (its own cookies and storage: a separate person) with
// the chat open as user, and every server-sent event the page receives.
async function openUser(user) {
	const context = await browser.newContext({ viewport: { width: 960, height: 540 } });
	const page = await context.newPage();
	const raw = [];
	const cdp = await context.newCDPSession(page);
	cdp.on('Network.eventSourceMessageReceived', (m) => {
		try { raw.push(JSON.parse(m.data)); } catch { raw.push({ unparsed: m.data }); }
	});
	await cdp.send('Network.enable');
	page.on('pageerror', (err) => serverLog.write(`[${user} page error] ${err.message}\n`));
	await page.goto(`http://127.0.0.1:${port}/?user=${user}`);
	return { user, context, page, raw };
}

const memberRow = (who, user, status) =>
	who.page.locator(`#members li[data-user="${user}"]${status ? `[data-status="${status}"]` : ''}`);

function shoot(who, name) {
	return who.page.screenshot({ path: path.join(ART, `${name}-${who.user}.png`) });
}

// Set a status with the menu.  The user may have gone idle meanwhile (away
// after 3 s): like a person, click the away overlay first if it is in the way.
async function setStatus(who, status, message = '', seconds = '0') {
	const overlay = who.page.locator('.presence-overlay');
	await who.page.addLocatorHandler(overlay, () => overlay.click());
	await who.page.locator('#menu summary').click();
	await who.page.locator(`#status-form input[value="${status}"]`).check();
	await who.page.locator('#status-form input[name="message"]').fill(message);
	await who.page.locator('#status-form select[name="seconds"]').selectOption(seconds);
	const done = who.page.waitForResponse((r) => r.url().endsWith('/api/status'));
	await who.page.locator('#status-form button').click();
	assert.equal((await done).status(), 200);
	await who.page.removeLocatorHandler(overlay);
}

async function history(since, users) {
	const { rows } = await db.query(
		'SELECT seq, user_id, status::text, reason, message FROM presence.changes($1, 10000) WHERE user_id = ANY($2)',
		[since, users]);
	return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
}

const lastSeq = (who) => Math.max(0, ...who.raw.map((e) => e.seq ?? 0));

// A step of the scenario, skipped once an earlier one failed.
function step(name, fn) {
	test(name, async (t) => {
		if (failed) return t.skip('an earlier step failed');
		try {
			await fn(t);
		} catch (err) {
			failed = true;
			await Promise.all([alice, bob].filter(Boolean).map((w) => shoot(w, 'failed').catch(() => {})));
			throw err;
		}
	});
}

before(async () => {
	await startServer();
	browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
		// Chromium's sandbox refuses to start as root; scripts/test.sh runs
		// this test as an ordinary user, where the sandbox stays on.
		args: process.getuid() === 0 ? ['--no-sandbox'] : [],
	});
});

after(async () => {
	clearInterval(jiggle);
	await browser?.close();
	await stopServer();
	await db.end();
	serverLog.end();
	console.log(`screenshots and the server log: ${ART}`);
});

step('both users see each other online', async () => {
	alice = await openUser('alice');
	bob = await openUser('bob');
	await memberRow(alice, 'bob', 'online').waitFor({ timeout: WAIT });
	await memberRow(bob, 'alice', 'online').waitFor({ timeout: WAIT });
	await alice.page.locator('#conn[data-up="true"]').waitFor({ timeout: WAIT });
	await shoot(alice, '01-online');
	await shoot(bob, '01-online');
	// From here on alice keeps working (she moves her mouse now and then)
	// and bob only does what the steps say.
	let x = 0;
	jiggle = setInterval(() => { x = (x + 37) % 300; alice.page.mouse.move(400 + x, 300).catch(() => {}); }, 400);
});

step('typing shows on the other page and clears after a pause and on send', async () => {
	const typing = alice.page.locator('#typing');
	await bob.page.locator('#text').pressSequentially('hello al', { delay: 40 });
	await until('"bob is typing…" on alice\'s page', async () => (await typing.textContent()) === 'bob is typing…');
	await shoot(alice, '02-typing');
	await until('the typing line to clear after bob pauses', async () => (await typing.textContent()) === '');
	await bob.page.locator('#text').pressSequentially('ice', { delay: 40 });
	await until('"bob is typing…" again', async () => (await typing.textContent()) === 'bob is typing…');
	await bob.page.locator('#text').press('Enter');
	await alice.page.locator('#feed li.msg', { hasText: 'hello alice' }).waitFor({ timeout: WAIT });
	await until('the typing line to clear on send', async () => (await typing.textContent()) === '');
	assert.ok(alice.raw.some((e) => e.event === 'typing' && e.user_id === 'bob' && e.typing === false));
});

step('idle bob turns away on alice\'s page, and his overlay brings him back', async () => {
	await memberRow(alice, 'bob', 'away').waitFor({ timeout: WAIT });
	const [last] = (await history(0, ['bob'])).slice(-1);
	assert.deepEqual([last.status, last.reason], ['away', 'idle']);
	const overlay = bob.page.locator('.presence-overlay[data-state="away"]');
	await overlay.waitFor({ timeout: WAIT });
	assert.equal(await overlay.locator('.presence-overlay-title').textContent(), 'You are away');
	await shoot(alice, '03-away');
	await shoot(bob, '03-away-overlay');
	await overlay.click();
	await memberRow(alice, 'bob', 'online').waitFor({ timeout: WAIT });
	await overlay.waitFor({ state: 'detached', timeout: WAIT });
	const [back] = (await history(0, ['bob'])).slice(-1);
	assert.deepEqual([back.status, back.reason], ['online', 'activity']);
});

step('busy with a message shows on alice\'s page; a server restart loses no event', async () => {
	await setStatus(bob, 'busy', 'In a meeting', '10');
	const bobRow = memberRow(alice, 'bob', 'busy');
	await bobRow.locator('.detail', { hasText: 'In a meeting' }).waitFor({ timeout: WAIT });
	await shoot(alice, '04-busy');

	// Stop the server: the streams drop.  While it is down, carol joins
	// through another app server (SQL here) and goes busy, and bob's status
	// expires; then the server comes back on the same port.
	const seen = lastSeq(alice);
	await stopServer();
	await alice.page.locator('#conn[data-up="false"]').waitFor({ timeout: WAIT });
	await db.query("SELECT presence.join($1, 'carol', 'phone')", [ROOM]);
	await db.query("SELECT presence.set_status('carol', 'busy', 'Deploying')");
	await until('bob\'s status to expire', async () =>
		(await history(seen, ['bob'])).some((r) => r.reason === 'expired'), 20000);
	await startServer();

	await alice.page.locator('#conn[data-up="true"]').waitFor({ timeout: WAIT });
	await memberRow(alice, 'carol', 'busy').locator('.detail', { hasText: 'Deploying' }).waitFor({ timeout: WAIT });
	await until('bob no longer busy on alice\'s page', async () =>
		(await memberRow(alice, 'bob', 'busy').count()) === 0 &&
		(await memberRow(alice, 'bob').locator('.detail', { hasText: 'In a meeting' }).count()) === 0);
	// Every status change of the three since the drop reached alice's page,
	// through the catch-up or live, and her list matches the database.
	let missing = [];
	await until(() => `every status change since the drop on alice's stream; missing: ${JSON.stringify(missing)}`,
		async () => {
			const got = new Set(alice.raw.filter((e) => e.event === 'status').map((e) => e.seq));
			missing = (await history(seen, ['alice', 'bob', 'carol'])).filter((r) => !got.has(r.seq));
			return missing.length === 0;
		});
	const expired = (await history(seen, ['bob'])).find((r) => r.reason === 'expired');
	await alice.page.locator(`#feed li[data-seq="${expired.seq}"]`).waitFor({ timeout: WAIT });
	await until('alice\'s member list to match presence.members()', async () => {
		const { rows } = await db.query('SELECT user_id, status::text FROM presence.members($1)', [ROOM]);
		for (const r of rows)
			if ((await memberRow(alice, r.user_id, r.status).count()) !== 1) return false;
		return true;
	});
	await shoot(alice, '05-after-restart');
	// bob has been idle all along: he is away, and his overlay brings him back.
	await memberRow(alice, 'bob', 'away').waitFor({ timeout: WAIT });
	await bob.page.locator('.presence-overlay[data-state="away"]').click({ timeout: WAIT });
	await memberRow(alice, 'bob', 'online').waitFor({ timeout: WAIT });
});

step('invisible bob looks offline and nothing about him reaches alice', async () => {
	const from = alice.raw.length;
	await setStatus(bob, 'invisible');
	await memberRow(alice, 'bob', 'offline').waitFor({ timeout: WAIT });
	const gone = await until('bob\'s leave on alice\'s stream', async () => {
		const i = alice.raw.findIndex((e, j) => j >= from && e.event === 'leave' && e.user_id === 'bob' &&
			e.reason === 'disconnect');
		return i + 1;
	});
	// Bob keeps using the app: he types, moves, and sets a message.
	const typed = bob.page.waitForResponse((r) => r.url().endsWith('/api/typing'));
	await bob.page.locator('#text').pressSequentially('secret', { delay: 40 });
	assert.equal((await typed).status(), 200);
	await bob.page.mouse.move(10, 10);
	const beat = await bob.page.waitForResponse((r) => r.url().endsWith('/api/heartbeat') &&
		JSON.parse(r.request().postData()).active === true);
	assert.equal(beat.status(), 200);
	await setStatus(bob, 'invisible', 'Hidden plans');
	await bob.page.locator('#my-dot[data-status="invisible"]').waitFor({ timeout: WAIT });
	// A broadcast after all that: once alice has it, she has everything
	// committed before it.
	await db.query("SELECT presence.broadcast($1, '{\"type\": \"fence\"}')", [ROOM]);
	const fence = await until('the fence on alice\'s stream', async () =>
		alice.raw.findIndex((e) => e.payload?.type === 'fence') + 1);
	const leaked = alice.raw.slice(gone, fence).filter((e) => JSON.stringify(e).includes('bob'));
	assert.deepEqual(leaked, [], 'events about invisible bob reached alice');
	assert.equal(await alice.page.locator('#typing').textContent(), '');
	assert.equal(await alice.page.getByText('Hidden plans').count(), 0);
	await memberRow(alice, 'bob', 'offline').waitFor({ timeout: WAIT });
	const { rows } = await db.query("SELECT status::text FROM presence.get('bob')");
	assert.equal(rows[0].status, 'offline');
	await shoot(alice, '06-invisible');
	await shoot(bob, '06-invisible');
});

step('bob\'s session ends behind his back: his overlay says offline, and a click brings him back', async () => {
	await bob.page.locator('#text').fill('');
	await setStatus(bob, 'online');
	await memberRow(alice, 'bob', 'online').waitFor({ timeout: WAIT });
	// As if he logged out everywhere from another device.
	await db.query("SELECT presence.disconnect('bob')");
	await memberRow(alice, 'bob', 'offline').waitFor({ timeout: WAIT });
	const overlay = bob.page.locator('.presence-overlay[data-state="offline"]');
	await overlay.waitFor({ timeout: WAIT });
	assert.equal(await overlay.locator('.presence-overlay-title').textContent(), 'You are offline');
	await shoot(bob, '07-offline-overlay');
	await overlay.click();
	await memberRow(alice, 'bob', 'online').waitFor({ timeout: WAIT });
	await overlay.waitFor({ state: 'detached', timeout: WAIT });
	const [back] = (await history(0, ['bob'])).slice(-1);
	assert.deepEqual([back.status, back.reason], ['online', 'connect']);
});

step('closing bob\'s tab sends a disconnect: alice sees him offline at once', async () => {
	const before = lastSeq(alice);
	const closedAt = Date.now();
	await bob.page.close({ runBeforeUnload: true });
	await memberRow(alice, 'bob', 'offline').waitFor({ timeout: WAIT });
	const took = Date.now() - closedAt;
	const [last] = (await history(before, ['bob'])).slice(-1);
	assert.deepEqual([last.status, last.reason], ['offline', 'disconnect']);
	assert.ok(alice.raw.some((e) => e.event === 'leave' && e.user_id === 'bob' && e.reason === 'disconnect' &&
		e.seq > before));
	assert.ok(took < 10000, `offline after ${took} ms, not at once`);
	await alice.page.locator('#feed li[data-event="leave"]', { hasText: 'bob left (disconnected)' }).last()
		.waitFor({ timeout: WAIT });
	await shoot(alice, '08-closed');
});
