"use strict";
// The dashboard's script. It reads Tally's public API with the key the user typed, which it keeps in this tab's
// session storage only, and writes every value with textContent: nothing the API returns is parsed as HTML.

const keyStorageName = "tally.dashboard.key";
const ledgerPageSize = 20;
const usageDays = 30;
/** How often the service's readiness is asked again while the page is open. */
const serviceCheckMilliseconds = 10_000;
/** A key as Tally issues it: ASCII letters, digits, `_` and one `:` between its public and secret parts. */
const keyPattern = /^[A-Za-z0-9_:]+$/;
const numbers = new Intl.NumberFormat("en-US");
let ledgerCursor = null;

const element = id => document.getElementById(id);

/** GETs a path of this server; returns the JSON body, or throws with the API's own message for an error. */
async function get(path, key) {
  let response;
  try {
    response = await fetch(path, { headers: key ? { Authorization: "Bearer " + key } : {}, cache: "no-store" });
  } catch {
    throw new Error("The server did not answer; is it running?");
  }
  let body = null;
  try { body = await response.json(); } catch { body = null; }
  if (!response.ok) {
    throw new Error((body && (body.detail || body.title || body.message || body.status)) || `The server answered ${response.status}.`);
  }
  return body;
}

function credits(value, unlimited) { return unlimited ? "unlimited" : numbers.format(value); }

function time(value) { return value ? value.replace("T", " ").replace(/(\.\d+)?(\+00:00|Z)$/, "") : ""; }

function addRow(table, cells) {
  const row = table.tBodies[0].insertRow();
  for (const [text, className] of cells) {
    const cell = row.insertCell();
    cell.textContent = text ?? "";
    if (className) cell.className = className;
  }
  return row;
}

function clear(table) { table.tBodies[0].replaceChildren(); }

async function showService() {
  const service = element("service");
  try {
    await get("/readyz");
    service.textContent = "Service ready";
    service.className = "service ready";
  } catch (error) {
    service.textContent = "Service not ready: " + error.message;
    service.className = "service not-ready";
  }
}

function showLedger(page) {
  const table = element("ledger");
  for (const entry of page.items) {
    addRow(table, [[String(entry.id), "number"], [time(entry.createdAt)], [entry.kind], [numbers.format(entry.credits), "number"],
      [entry.grantId, "id"], [entry.referenceId, "id"]]);
  }
  ledgerCursor = page.nextCursor;
  element("older").hidden = ledgerCursor === null;
}

// Each key shown, or forgotten, takes the next number: answers that arrive for an earlier one are dropped, so that a
// slow answer for the last key but one never replaces the figures of the last.
let shownKey = 0;

async function showOrganization(key, number) {
  const from = new Date(Date.now() - usageDays * 24 * 60 * 60 * 1000).toISOString();
  const [balance, usage, ledger] = await Promise.all([
    get("/v1/balance", key),
    get("/v1/usage?groupBy=day&from=" + encodeURIComponent(from), key),
    get("/v1/ledger?limit=" + ledgerPageSize, key),
  ]);
  if (number !== shownKey) return;
  // Only an active organization's key is answered (a disabled or deleted one's is 404), so the id is all to show.
  element("organization-id").textContent = balance.organizationId;
  element("remaining").textContent = credits(balance.remaining, balance.unlimited);
  element("used").textContent = numbers.format(balance.used);
  element("total").textContent = credits(balance.total, balance.unlimited);
  element("held").textContent = numbers.format(balance.held);
  const subscription = balance.subscription;
  element("subscription").textContent = subscription && subscription.status === "active"
    ? `Plan ${subscription.plan}: ${credits(subscription.creditsPerPeriod, subscription.unlimited)} credits a ${subscription.period}, ` +
      `this period from ${time(subscription.periodStart)} to ${time(subscription.periodEnd)} UTC.`
    : "No active subscription: consumptions are refused until there is one.";

  const grants = element("grants");
  clear(grants);
  for (const grant of balance.grants) {
    addRow(grants, [[grant.source], [numbers.format(grant.credits), "number"], [numbers.format(grant.remaining), "number"],
      [String(grant.priority), "number"], [time(grant.effectiveAt)], [time(grant.expiresAt)], [grant.id, "id"]]);
  }

  const usageTable = element("usage");
  clear(usageTable);
  const most = Math.max(1, ...usage.buckets.map(bucket => bucket.consumed));
  for (const bucket of usage.buckets) {
    const row = addRow(usageTable, [[bucket.key], [numbers.format(bucket.consumed), "number"], [numbers.format(bucket.refunded), "number"],
      [numbers.format(bucket.count), "number"], [""]]);
    const meter = document.createElement("meter");
    meter.max = most;
    meter.value = bucket.consumed;
    row.cells[4].append(meter);
  }

  clear(element("ledger"));
  showLedger(ledger);
  element("organization").hidden = false;
}

function showError(message) {
  element("error").textContent = message;
  element("error").hidden = false;
}

async function show(key) {
  const number = ++shownKey;
  element("error").hidden = true;
  if (!keyPattern.test(key)) {
    element("organization").hidden = true;
    showError("A key is letters, digits and underscores, such as sk_… or pk_…:sk_…; check what was pasted.");
    return;
  }
  try {
    await showOrganization(key, number);
  } catch (error) {
    if (number !== shownKey) return;
    element("organization").hidden = true;
    showError(error.message);
    // A request that failed may mean the service went away: say so at once rather than at the next check.
    showService();
  }
}

function forget() {
  shownKey++;
  sessionStorage.removeItem(keyStorageName);
  element("key").value = "";
  element("organization").hidden = true;
  for (const id of ["grants", "usage", "ledger"]) clear(element(id));
}

element("key-form").addEventListener("submit", event => {
  event.preventDefault();
  const key = element("key").value.trim().replace(/^Bearer\s+/i, "");
  sessionStorage.setItem(keyStorageName, key);
  show(key);
});
element("forget").addEventListener("click", forget);
element("older").addEventListener("click", async () => {
  const older = element("older");
  // One page at a time: a second click while the first is loading would append the same page twice.
  if (older.disabled) return;
  older.disabled = true;
  const key = sessionStorage.getItem(keyStorageName);
  const number = shownKey;
  try {
    const page = await get(`/v1/ledger?limit=${ledgerPageSize}&cursor=${encodeURIComponent(ledgerCursor)}`, key);
    // Another key shown meanwhile: this page belongs to the one before.
    if (number !== shownKey) return;
    showLedger(page);
    element("error").hidden = true;
  } catch (error) {
    if (number !== shownKey) return;
    showError(error.message);
    showService();
  } finally {
    older.disabled = false;
  }
});

showService();
setInterval(showService, serviceCheckMilliseconds);
const remembered = sessionStorage.getItem(keyStorageName);
if (remembered) show(remembered);
