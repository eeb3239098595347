// What every e2e file needs: free ports, the gateway's processes (stopped at the end), waiting for
// them to answer, and a headless Chromium. (Not named *.test.mjs: it is imported, not run.)
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

/** A TCP port free on 127.0.0.1 right now. */
export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** Child processes started with `start`, stopped (and awaited) by `stopAll`. */
export class Processes {
  constructor(bin) {
    this.bin = bin;
    this.children = [];
  }

  /** Runs `bin args…` with `env` added; keeps the end of its output for error messages. */
  start(name, args, env = {}) {
    const child = spawn(this.bin, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    const keep = (chunk) => {
      log = (log + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    const entry = { name, child, log: () => log };
    this.children.push(entry);
    return entry;
  }

  async stopAll() {
    for (const { child } of [...this.children].reverse()) {
      if (child.exitCode === null) child.kill('SIGTERM');
    }
    await Promise.all(
      this.children.map(({ child }) => (child.exitCode === null ? new Promise((r) => child.once('exit', r)) : null)),
    );
  }
}

/** Polls `probe` until it is true, failing with the process's log if it exits or time runs out. */
export async function waitFor(what, probe, entry, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (entry.child.exitCode !== null) {
      throw new Error(`${entry.name} exited (${entry.child.exitCode}) before ${what}:\n${entry.log()}`);
    }
    try {
      if (await probe()) return;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}:\n${entry.log()}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Logs `p` in on the dashboard at `base` and waits for the header to show the user. */
export async function logIn(p, base, { username, password }) {
  await p.goto(`${base}/login`);
  await p.locator('#login_username').fill(username);
  await p.locator('#login_password').fill(password);
  await p.locator('form#login button[type=submit]').click();
  await p.getByTestId('current-username').getByText(username, { exact: true }).waitFor();
}

/** Headless Chromium (Debian's, at `chromiumPath`) with a profile in `tmp`, speaking English. */
export async function launchChromium(chromiumPath, tmp) {
  const context = await chromium.launchPersistentContext(join(tmp, 'chromium-profile'), {
    executablePath: chromiumPath,
    headless: true,
    locale: 'en-US',
    viewport: { width: 1360, height: 860 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  context.setDefaultTimeout(20_000);
  const page = context.pages()[0] ?? (await context.newPage());
  page.on('pageerror', (e) => console.error('page error:', e.message));
  // The dashboard speaks English here whatever the machine's language.
  await page.addInitScript(() => localStorage.setItem('apihub.locale', 'en'));
  return { context, page };
}

/** Runs `journey`; if it throws, saves a screenshot of `page` as `<shots>/<name>.png` first. */
export async function screenshotOnFailure(page, shots, name, journey) {
  try {
    await journey();
  } catch (e) {
    await page?.screenshot({ path: join(shots, `${name}.png`), fullPage: true }).catch(() => {});
    throw e;
  }
}
