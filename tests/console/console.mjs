// Drives the relay's operator console in Debian's chromium, as an operator does:
// sign in, see the agent online, run the connection test, run a function from the
// explorer, find that call in Calls (by the search form and by id) and in the audit log, export the audit CSV,
// create an API key, use it, revoke it and see the API refuse it, sign out. Runs axe-core on every page (no serious or critical violations) and
// fails on any Content-Security-Policy violation. Screenshots every page.
//
// Run by crates/cli/tests/console_browser.rs against `sapbridge dev`; the
// environment says where:
//   CONSOLE_URL     the relay (http://127.0.0.1:PORT)
//   CONSOLE_KEY     an operator API key
//   CONSOLE_SYSTEM  the system the dev agent serves
//   SCREENSHOTS     the folder screenshots go to
//   USER_DATA_DIR   a fresh profile folder for chromium
//   CHROMIUM        the browser (default /usr/bin/chromium)

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("CONSOLE_URL");
const key = env("CONSOLE_KEY");
const system = env("CONSOLE_SYSTEM");
const screenshots = env("SCREENSHOTS");
const STEP = 30_000;

// On stderr: the test reads it (stdout is discarded).
const log = (step, detail = {}) => console.error(JSON.stringify({ step, ...detail }));

const context = await chromium.launchPersistentContext(env("USER_DATA_DIR"), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  acceptDownloads: true,
  viewport: { width: 1280, height: 860 },
});
context.setDefaultTimeout(STEP);

const violations = [];
const page = context.pages()[0] ?? (await context.newPage());
page.on("console", (message) => {
  const text = message.text();
  if (/Content Security Policy|Refused to (execute|load|apply)/i.test(text)) {
    violations.push(text);
  }
});
page.on("pageerror", (error) => violations.push(`page error: ${error.message}`));

/// axe-core in the page (evaluated through the DevTools protocol, so the page's
/// own CSP stays as it is); serious and critical violations fail.
async function accessible(name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  log("axe", {
    page: name,
    violations: result.violations.map((v) => `${v.id} (${v.impact})`),
  });
  if (bad.length > 0) {
    throw new Error(
      `${name}: accessibility violations: ` +
        JSON.stringify(bad.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target) }))),
    );
  }
}

async function shot(name) {
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  log("screenshot", { path: `${name}.png` });
}

async function nav(name) {
  await page.getByRole("navigation", { name: "Console pages" }).getByRole("link", { name }).click();
  await page.waitForLoadState("domcontentloaded");
}

try {
  // Without a session: the sign-in form.
  await page.goto(`${base}/console/`);
  if (!page.url().endsWith("/console/sign-in")) throw new Error(`not sent to sign-in: ${page.url()}`);
  await accessible("sign-in");
  await shot("sign-in");

  // Sign in by keyboard: the key field, then Enter.
  await page.getByLabel("Operator API key").fill(key);
  await page.keyboard.press("Enter");
  await page.waitForURL(`${base}/console/`);
  log("signed in");

  // Overview: the agent online, and a live update arriving.
  const row = page.locator(`#systems tr[data-system="${system}"]`);
  await row.getByText("online").waitFor();
  await page.locator("#agents tr.agent").first().waitFor();
  await page.locator("#overview-live[data-updated]").waitFor();
  const agentId = (await page.locator("#agents tr.agent td").nth(1).textContent()).trim();
  log("overview", { system, agent: agentId, live: true });
  await accessible("overview");

  // Connection test.
  await nav("Connection test");
  await page.getByLabel("System").selectOption(system);
  await page.getByRole("button", { name: "Test connection" }).click();
  await page.locator("#test-ok").waitFor();
  const release = (await page.locator("#test-release").textContent()).trim();
  const roundTrip = (await page.locator("#test-ok").textContent()).trim();
  log("connection test", { release, result: roundTrip });
  await accessible("connection test");
  await shot("connection-test");

  // Function explorer: BAPI_CUSTOMER_GETDETAIL2 from the generated form.
  await nav("Function explorer");
  await page.getByLabel("System").selectOption(system);
  await page.getByLabel("Function module").fill("BAPI_CUSTOMER_GETDETAIL2");
  await page.getByRole("button", { name: "Look up" }).click();
  await page.locator("#function-form").waitFor();
  await page.locator("#p-CUSTOMERNO").fill("1000");
  await page.getByRole("button", { name: "Run BAPI_CUSTOMER_GETDETAIL2" }).click();
  await page.locator("#run-ok").waitFor();
  const request = JSON.parse(await page.locator("#request-json").textContent());
  const answer = JSON.parse(await page.locator("#run-answer").textContent());
  if (request.CUSTOMERNO !== "1000") throw new Error(`request: ${JSON.stringify(request)}`);
  const callId = answer.id;
  if (!callId || answer.status !== "succeeded") throw new Error(`answer: ${JSON.stringify(answer)}`);
  log("explorer", { request, call: callId, name: answer.result?.CUSTOMERADDRESS?.NAME });
  await accessible("explorer");
  await shot("function-explorer");

  // Overview again: the chart of the hour counts the calls just made (the
  // connection test's, the interface's, the run), with its figures as text too.
  await nav("Overview");
  const chart = page.locator(`figure.chart[data-system="${system}"]`);
  await chart.locator("rect.chart-ok").first().waitFor();
  const figures = (await chart.locator("desc").textContent()).trim();
  if (!/^\d+ call\(s\) finished in the last hour, 0 of them errors/.test(figures)) {
    throw new Error(`chart: ${figures}`);
  }
  log("overview chart", { system, figures });
  await accessible("overview with chart");
  await shot("overview");

  // Calls: the same call through the search form (filled and sent by keyboard),
  // then its page from the result's link; then by id.
  await nav("Calls");
  const search = page.getByRole("search", { name: "Search calls" });
  await search.getByLabel("System").fill(system);
  await search.getByLabel("Status").selectOption("succeeded");
  await search.getByLabel("Function or action").fill("BAPI_CUSTOMER_GETDETAIL2");
  await page.keyboard.press("Enter");
  await page.waitForURL(/[?&]function=BAPI_CUSTOMER_GETDETAIL2/);
  const found = page.locator(`#calls a:text-is("${callId}")`);
  await found.waitFor();
  const listed = await page.locator("#calls tbody tr").count();
  log("calls search", { call: callId, listed });
  await accessible("calls search");
  await shot("calls-search");
  await found.click();
  await page.waitForURL(/[?&]id=/);
  const linked = (await page.locator("#call-status").textContent()).trim();
  if (linked !== "succeeded") throw new Error(`searched call status ${linked}`);
  await nav("Calls");
  await page.getByLabel("Call id").fill(callId);
  await page.getByRole("button", { name: "Look up" }).click();
  const status = (await page.locator("#call-status").textContent()).trim();
  if (status !== "succeeded") throw new Error(`call status ${status}`);
  log("calls", { call: callId, status });
  await accessible("calls");
  await shot("calls");

  // Audit: the call's records, then the CSV with the same filter.
  await nav("Audit");
  await page.getByLabel("Call id").fill(callId);
  await page.getByRole("button", { name: "Filter" }).click();
  await page.locator("#audit tbody tr").first().waitFor();
  const rows = await page.locator("#audit tbody tr").count();
  await page.locator(`#audit a:text-is("${callId}")`).first().waitFor();
  log("audit", { call: callId, rows });
  await accessible("audit");
  await shot("audit");
  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#audit-csv").click()]);
  const csv = readFileSync(await download.path(), "utf8");
  if (!csv.startsWith("time,event,key,") || !csv.includes(callId)) {
    throw new Error(`CSV without the call: ${csv.slice(0, 400)}`);
  }
  log("audit csv", { file: download.suggestedFilename(), lines: csv.trim().split("\n").length });

  // Keys: create one, call the API with it, revoke it, and the API refuses it.
  await nav("Keys");
  const keyForm = page.locator('form[action="/console/keys"]');
  await keyForm.getByLabel("Name").fill("browser-flow");
  await keyForm.getByLabel("Systems").fill(system);
  await page.getByRole("button", { name: "Create key" }).click();
  const secret = (await page.locator("#new-key").textContent()).trim();
  const callWith = async (k) =>
    (await fetch(`${base}/v1/systems`, { headers: { authorization: `Bearer ${k}` } })).status;
  const before = await callWith(secret);
  if (before !== 200) throw new Error(`the new key answered ${before}`);
  await accessible("keys");
  await page.getByRole("button", { name: "Revoke browser-flow" }).click();
  await page.locator("#notice").waitFor();
  const after = await callWith(secret);
  if (after !== 401) throw new Error(`the revoked key answered ${after}`);
  log("keys", { created: "browser-flow", api_with_key: before, api_after_revoke: after });
  await accessible("keys after revoke");

  // Agent tokens: create one (shown once), see it listed, revoke it.
  const tokenForm = page.locator('form[action="/console/keys/tokens"]');
  await tokenForm.getByLabel("Name").fill("browser-plant");
  await tokenForm.getByLabel("Systems").fill(system);
  await page.getByRole("button", { name: "Create agent token" }).click();
  const token = (await page.locator("#new-token").textContent()).trim();
  if (!token.startsWith("sbt_")) throw new Error(`no agent token shown: ${token}`);
  await page.locator('#tokens tr[data-token="browser-plant"]').waitFor();
  await accessible("agent token created");
  await page.getByRole("button", { name: "Revoke agent token browser-plant" }).click();
  await page.locator("#notice").waitFor();
  log("agent tokens", { created: "browser-plant", revoked: true });
  // Taken after the revocations: the page shows neither secret.
  await shot("keys");

  // Sign out: back to sign-in, and the console is closed again.
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${base}/console/sign-in`);
  await page.goto(`${base}/console/calls`);
  if (!page.url().endsWith("/console/sign-in")) throw new Error(`still signed in: ${page.url()}`);
  log("signed out");

  if (violations.length > 0) throw new Error(`CSP violations or page errors: ${violations.join("; ")}`);
  log("done", { ok: true });
  await context.close();
} catch (error) {
  log("failed", { error: String(error?.stack ?? error), url: page.url(), violations });
  await page.screenshot({ path: join(env("USER_DATA_DIR"), "..", "failure.png") }).catch(() => {});
  await context.close();
  process.exit(1);
}
