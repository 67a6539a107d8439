// The connector console: a client of the REST API (/api/openapi.json), nothing more.
// No framework and no build step; every text from the API goes into the page as text
// (never as HTML). The token is kept in sessionStorage and sent as a Bearer token.
"use strict";

const TOKEN_KEY = "connector-host-token";
const state = { token: sessionStorage.getItem(TOKEN_KEY), role: null, plugins: null, cvmFields: null, timer: null, keepBanner: false };

/** Shows the page at `hash`, keeping the banner just set. */
function go(hash) {
  state.keepBanner = true;
  if (location.hash === hash || (hash === "#/" && location.hash === "")) {
    state.keepBanner = false;
    route();
  } else {
    location.hash = hash;
  }
}

// --- DOM helpers ---

/** An element with attributes (`on*` are listeners) and children (strings are text). */
function h(tag, attrs, ...children) {
  const svg = ["svg", "path", "line", "text", "g", "title", "circle"].includes(tag);
  const el = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.setAttribute("class", value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);
const main = () => $("main");
const isAdmin = () => state.role === "admin";
const number = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  return s < 90 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

function show(...nodes) {
  clearInterval(state.timer);
  state.timer = null;
  main().replaceChildren(...nodes.flat(Infinity).filter((n) => n !== null && n !== undefined && n !== false));
}

function banner(text, error) {
  const b = $("banner");
  b.replaceChildren(...[text].flat(Infinity));
  b.className = error ? "banner error" : "banner";
  b.hidden = false;
}

function clearBanner() {
  $("banner").hidden = true;
}

// --- the API ---

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  const text = await response.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (response.status === 401 && path !== "/api/session") {
    signOut("Your token is no longer accepted; sign in again.");
    throw new Error("signed out");
  }
  return { status: response.status, data };
}

// --- sign in and out ---

function signInPage(message) {
  $("top").hidden = true;
  clearBanner();
  const error = h("p", { class: "error", id: "signin-error", role: "alert" }, message || "");
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-help signin-error" });
  const form = h("form", { class: "card", onsubmit: async (event) => {
      event.preventDefault();
      state.token = input.value.trim();
      const { status, data } = await api("GET", "/api/session");
      if (status !== 200) {
        error.textContent = "This token is not accepted. Check it and try again.";
        input.setAttribute("aria-invalid", "true");
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, state.token);
      state.role = data.role;
      location.hash = "#/";
      route();
    } },
    h("h1", {}, "Connectors"),
    h("p", { class: "muted" }, "Sign in with an API token."),
    h("div", { class: "field" },
      h("label", { for: "token" }, "API token"),
      input,
      h("p", { class: "help", id: "token-help" }, "An admin token can change connectors; a viewer token can read them.")),
    error,
    h("button", { type: "submit", class: "primary", id: "sign-in" }, "Sign in"));
  show(h("div", { class: "signin" }, form));
  input.focus();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null;
  state.role = null;
  location.hash = "#/";
  signInPage(message);
}

// --- routing ---

async function route() {
  if (!state.token) return signInPage();
  if (!state.role) {
    const { status, data } = await api("GET", "/api/session");
    if (status !== 200) return signInPage("Your token is no longer accepted; sign in again.");
    state.role = data.role;
  }
  $("top").hidden = false;
  $("role").textContent = state.role === "admin" ? "Admin" : "Viewer";
  const path = location.hash.replace(/^#/, "") || "/";
  let match;
  try {
    if (path === "/") await connectorsPage();
    else if (path === "/add") await catalogPage();
    else if ((match = path.match(/^\/connectors\/([\w-]+)$/))) await connectorPage(match[1]);
    else if ((match = path.match(/^\/runs\/([\w-]+)$/))) await runPage(match[1]);
    else show(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to connectors")));
  } catch (e) {
    if (e.message !== "signed out") banner(`Something went wrong: ${e.message}`, true);
  }
  main().focus({ preventScroll: true });
}

async function plugins() {
  if (!state.plugins) state.plugins = (await api("GET", "/api/plugins")).data;
  if (!state.cvmFields) state.cvmFields = (await api("GET", "/api/cvm")).data.fields;
  return state.plugins;
}

// --- the list of connectors ---

function addButton(id) {
  return isAdmin() ? h("a", { class: "button primary", href: "#/add", id }, "Add Connector") : null;
}

function statusBadge(status) {
  return h("span", { class: `status ${status}` }, status);
}

async function connectorsPage() {
  document.title = "Connectors · connector-host";
  const [{ data: connectors }, catalog] = await Promise.all([api("GET", "/api/connectors"), plugins()]);
  const pluginName = (id) => (catalog.find((p) => p.id === id) || { name: id }).name;
  const header = h("div", { class: "row spread" }, h("h1", {}, "Connectors"), connectors.length ? addButton("add-connector") : null);
  if (!connectors.length) {
    return show(header, h("section", { class: "card empty", id: "empty-state" },
      h("h2", {}, "No connectors yet"),
      h("p", { class: "muted" }, "A connector brings a source's vulnerabilities into Cisco Vulnerability Management on a schedule."),
      isAdmin() ? addButton("add-connector") : h("p", {}, "An admin can add one.")));
  }
  const rows = connectors.map((c) => {
    const last = c.last_run;
    return h("tr", { "data-connector": c.id },
      h("td", {}, h("a", { href: `#/connectors/${c.id}` }, c.name)),
      h("td", {}, pluginName(c.plugin)),
      h("td", {}, c.schedule || "manual"),
      h("td", {}, c.paused_reason ? statusBadge("paused") : c.enabled ? when(c.next_due) : "disabled"),
      h("td", {}, last ? statusBadge(last.status) : "never run"),
      h("td", {}, last ? when(last.finished_at || last.queued_at) : "–"),
      h("td", { class: "num" }, last ? number(last.assets) : "–"),
      h("td", { class: "num" }, last ? number(last.open_vulnerabilities) : "–"));
  });
  show(header, h("div", { class: "table-wrap" }, h("table", { id: "connectors" },
    h("caption", { class: "sr-only" }, "Configured connectors"),
    h("thead", {}, h("tr", {}, ["Name", "Plugin", "Schedule", "Next run", "Last run", "Finished"].map((t) => h("th", { scope: "col" }, t)),
      h("th", { scope: "col", class: "num" }, "Assets"), h("th", { scope: "col", class: "num" }, "Open vulnerabilities"))),
    h("tbody", {}, rows))));
}

// --- the catalogue ---

async function catalogPage() {
  document.title = "Add Connector · connector-host";
  const catalog = await plugins();
  // Vulnerability Management first (this product's home), "Other" last, the rest by name.
  const rank = (section) => (section === "Vulnerability Management" ? 0 : section === "Other" ? 2 : 1);
  const sections = [...new Set(catalog.map((p) => p.section))].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  show(h("h1", {}, "Add Connector"),
    h("p", { class: "muted" }, "Choose the source. Each connector runs in its own sandbox and reaches only the hosts it declares."),
    sections.map((section) => h("section", { "aria-labelledby": `s-${slug(section)}` },
      h("h2", { id: `s-${slug(section)}` }, section),
      h("div", { class: "grid" }, catalog.filter((p) => p.section === section).map((p) =>
        h("article", { class: "card", "data-plugin": p.id },
          h("h3", {}, p.name),
          h("p", { class: "muted" }, p.description),
          h("p", { class: "muted" }, `Version ${p.version}`),
          isAdmin() ? h("button", { type: "button", class: "primary", onclick: () => connectorDialog(p, null), "aria-label": `Add ${p.name}` }, "Add") : null))))));
}

const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-");

// --- the connector dialog: Add, and Edit ---

/** Whether text is a host name or an http(s) URL, as the host checks it. */
function looksLikeHost(text) {
  const value = text.trim();
  if (/^https?:\/\//i.test(value)) {
    try { return Boolean(new URL(value).hostname); } catch { return false; }
  }
  return /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(:\d{1,5})?$/i.test(value);
}

function fieldInput(field, value, editing) {
  const id = `f-${field.key}`;
  const common = { id, name: field.key, "aria-describedby": `h-${field.key} e-${field.key}`, "aria-required": field.required ? "true" : null };
  if (field.kind === "boolean") {
    const current = value ?? field.default ?? "false";
    return h("select", common,
      h("option", { value: "true", selected: current === "true" }, "Yes"),
      h("option", { value: "false", selected: current !== "true" }, "No"));
  }
  // Contract 0.4: a field with choices takes one of them (the host checks it too).
  if (field.choices && field.choices.length && field.kind !== "secret") {
    const current = typeof value === "string" ? value : field.default || "";
    const none = field.required || field.default ? [] : [h("option", { value: "", selected: current === "" }, "—")];
    return h("select", common, none, field.choices.map((c) =>
      h("option", { value: c.value, selected: current.toLowerCase() === c.value.toLowerCase() }, c.label)));
  }
  if (field.kind === "secret") {
    const isSet = value && typeof value === "object" && value.set;
    return h("input", { ...common, type: "password", autocomplete: "new-password",
      placeholder: editing && isSet ? "set: leave empty to keep it" : null });
  }
  const input = h("input", { ...common, type: field.kind === "integer" ? "number" : "text",
    step: field.kind === "integer" ? "1" : null, inputmode: field.kind === "host" ? "url" : null, spellcheck: "false" });
  input.value = typeof value === "string" ? value : field.default || "";
  return input;
}

function fieldBlock(field, value, editing) {
  return h("div", { class: "field", "data-field": field.key },
    h("label", { for: `f-${field.key}` }, field.label, field.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null),
    fieldInput(field, value, editing),
    h("p", { class: "help", id: `h-${field.key}` }, field.help),
    h("p", { class: "error", id: `e-${field.key}`, role: "alert" }));
}

function egressBlock(plugin) {
  const secrets = plugin.fields.filter((f) => f.kind === "secret");
  const origins = h("ul", { id: "egress" }, plugin.egress.map((e) => h("li", {}, h("code", {}, e.origin), ` — ${e.purpose}`)));
  return h("section", { class: "egress", "aria-labelledby": "egress-title" },
    h("h3", { id: "egress-title" }, `This connector will connect to ${plugin.egress.length} declared origins, and nothing else`),
    secrets.map((f) => h("p", {}, `${f.label} is sent only to `, h("code", {}, f.sent_to.join(", ") || "nowhere"), ".")),
    // A long list is folded; the count and where secrets go are always in view.
    plugin.egress.length > 6 ? h("details", {}, h("summary", {}, "Show the origins"), origins) : origins,
    h("p", { class: "muted" }, "{…} stands for the value of that field."));
}

/** Opens the dialog for `plugin`; `connector` is the stored one when editing. */
function connectorDialog(plugin, connector) {
  const editing = Boolean(connector);
  let savedId = connector ? connector.id : null;
  const nameIsField = plugin.fields.some((f) => f.key === "name");
  const values = connector ? connector.settings : {};
  const cvm = connector && connector.cvm ? connector.cvm : null;
  const formError = h("div", { class: "form-error", id: "form-error", role: "alert" });
  const result = h("div", { id: "verify-result", "aria-live": "polite" });
  // The [cvm] fields as the service reads them (GET /api/cvm); the rarely changed
  // ones stay out of the dialog.
  const cvmFields = state.cvmFields.filter((f) => !f.advanced)
    .map((f) => ({ ...f, key: `cvm.${f.key}`, required: false, default: f.default || undefined, sent_to: [] }));
  const cvmValue = (key) => (cvm ? cvm[key.slice(4)] : undefined);
  const submit = h("button", { type: "submit", class: "primary", id: "save-verify" }, "Save and Verify");
  const dialog = h("dialog", { "aria-labelledby": "dialog-title", id: "connector-dialog" });
  const form = h("form", { novalidate: true, onsubmit: (event) => { event.preventDefault(); saveAndVerify(); } },
    h("h2", { id: "dialog-title" }, `${editing ? "Edit" : "Add"} ${plugin.name}`),
    nameIsField ? null : fieldBlock({ key: "name", label: "Name", kind: "text", required: true, help: "What this connector is called in the list." }, connector ? connector.name : "", editing),
    plugin.fields.filter((f) => f.required).map((f) => fieldBlock(f, values[f.key], editing)),
    h("details", { id: "advanced" },
      h("summary", {}, `Advanced settings (${plugin.fields.filter((f) => !f.required).length})`),
      plugin.fields.filter((f) => !f.required).map((f) => fieldBlock(f, values[f.key], editing))),
    fieldBlock({ key: "schedule", label: "Schedule", kind: "text", required: false, help: "When it runs, in UTC: five cron fields (0 3 * * * is daily at 03:00), @daily, or every 6h. Empty: only when run by hand." }, connector ? connector.schedule || "" : "", editing),
    h("details", { open: Boolean(cvm) },
      h("summary", {}, "Deliver to Cisco Vulnerability Management"),
      cvmFields.map((f) => fieldBlock(f, cvmValue(f.key), editing))),
    egressBlock(plugin),
    formError,
    result,
    h("footer", { class: "actions" },
      h("button", { type: "button", onclick: () => { dialog.close(); dialog.remove(); } }, "Cancel"),
      submit));
  dialog.append(form);
  document.body.append(dialog);
  dialog.showModal();

  const input = (key) => form.querySelector(`[name="${CSS.escape(key)}"]`);
  const setError = (key, message) => {
    const el = $(`e-${key}`);
    if (!el) return false;
    el.textContent = message;
    const folded = el.closest("details");
    if (folded) folded.open = true;
    input(key).setAttribute("aria-invalid", "true");
    return true;
  };
  const clearErrors = () => {
    form.querySelectorAll(".error").forEach((e) => (e.textContent = ""));
    form.querySelectorAll("[aria-invalid]").forEach((e) => e.removeAttribute("aria-invalid"));
    formError.textContent = "";
    result.replaceChildren();
  };
  const allFields = [...plugin.fields, ...cvmFields];

  /** The field an error message is about: one it names by key or label. */
  const fieldOf = (message) => {
    const text = message.toLowerCase();
    const named = allFields.filter((f) => text.includes(f.key.replace(/^cvm\./, "")) || text.includes(f.label.toLowerCase()));
    named.sort((a, b) => b.label.length - a.label.length);
    return named.length ? named[0].key : null;
  };

  function body() {
    const settings = {};
    for (const f of plugin.fields) {
      // A default is left to the plugin (so a later version's default applies).
      const value = input(f.key).value.trim();
      if (value !== "" && (value !== f.default || f.key === "name")) settings[f.key] = value;
      else if (editing && f.kind !== "secret") settings[f.key] = null;
    }
    // Delivery to CVM is asked for by filling in more than the prefilled API host.
    const cvmBody = {};
    let cvmAsked = false;
    for (const f of cvmFields) {
      const value = input(f.key).value.trim();
      if (value !== "") cvmBody[f.key.slice(4)] = value;
      if (value !== "" && value !== f.default) cvmAsked = true;
    }
    const hasCvm = cvmAsked || Boolean(cvm);
    const name = nameIsField ? (settings.name || plugin.name) : input("name").value.trim();
    const schedule = input("schedule").value.trim();
    return { name, settings, schedule: schedule || null, cvm: hasCvm ? cvmBody : null };
  }

  function checkLocally() {
    let ok = true;
    for (const f of [...plugin.fields, ...cvmFields]) {
      const value = input(f.key).value.trim();
      const storedSecret = f.kind === "secret" && editing && ((values[f.key] && values[f.key].set) || (f.key === "cvm.api_key" && cvm));
      if (f.required && value === "" && !storedSecret) ok = !setError(f.key, `${f.label} is required.`) && false;
      else if (f.kind === "host" && value !== "" && !looksLikeHost(value)) {
        ok = !setError(f.key, `Enter a host name such as ${f.default || "api.example.com"}, or an https:// URL.`) && false;
      }
    }
    if (!nameIsField && input("name").value.trim() === "") ok = !setError("name", "Name is required.") && false;
    return ok;
  }

  function focusFirstError() {
    const first = form.querySelector('[aria-invalid="true"]');
    if (first) first.focus();
    else if (formError.textContent) formError.scrollIntoView({ block: "center" });
  }

  async function saveAndVerify() {
    clearErrors();
    if (!checkLocally()) return focusFirstError();
    submit.disabled = true;
    submit.textContent = "Saving…";
    try {
      const payload = body();
      const saved = savedId
        ? await api("PATCH", `/api/connectors/${savedId}`, payload)
        : await api("POST", "/api/connectors", { plugin: plugin.id, ...payload });
      if (saved.status === 422) {
        for (const e of saved.data.errors) {
          const key = e.field === "cvm" ? fieldOf(e.message) || "cvm.api_host" : e.field;
          if (!setError(key, e.message)) formError.append(h("p", {}, e.message));
        }
        focusFirstError();
        return;
      }
      if (saved.status === 409) {
        if (!setError(nameIsField ? "name" : "name", saved.data.error)) formError.textContent = saved.data.error;
        return;
      }
      if (saved.status >= 300) {
        formError.textContent = saved.data && saved.data.error ? saved.data.error : `Saving failed (${saved.status}).`;
        return;
      }
      savedId = saved.data.id;
      submit.textContent = "Verifying…";
      const { data: verified } = await api("POST", `/api/connectors/${savedId}/verify`);
      if (!verified.ok) {
        const field = (verified.errors && verified.errors[0] && verified.errors[0].field) || fieldOf(verified.error);
        const message = `Saved, but verify failed: ${verified.error}`;
        if (!field || !setError(field, message)) formError.textContent = message;
        (field ? input(field) : submit).focus();
        return;
      }
      dialog.close();
      dialog.remove();
      state.plugins = null;
      banner([h("strong", {}, `${payload.name} is saved and verified.`),
        h("ul", { class: "checks", id: "checks" }, verified.checks.map((c) => h("li", {}, h("strong", {}, c.name), ` — ${c.detail}`)))]);
      go(editing ? `#/connectors/${savedId}` : "#/");
    } finally {
      submit.disabled = false;
      submit.textContent = "Save and Verify";
    }
  }
}

// --- a connector's page ---

function chart(runs) {
  const points = runs.filter((r) => r.status === "succeeded").slice(0, 20).reverse();
  if (points.length < 1) return h("p", { class: "muted" }, "The chart appears after the first successful run.");
  const width = 640, height = 220, pad = 40;
  const max = Math.max(1, ...points.map((r) => Math.max(r.assets || 0, r.open_vulnerabilities || 0)));
  const x = (i) => pad + (points.length === 1 ? (width - 2 * pad) / 2 : (i * (width - 2 * pad)) / (points.length - 1));
  const y = (v) => height - pad - ((v || 0) * (height - 2 * pad)) / max;
  const line = (key) => points.map((r, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(r[key]).toFixed(1)}`).join(" ");
  const dots = (key, cls) => points.map((r, i) => h("circle", { cx: x(i), cy: y(r[key]), r: 3, class: cls }));
  return h("figure", {},
    h("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title", id: "chart" },
      h("title", { id: "chart-title" }, `Assets and open vulnerabilities over the last ${points.length} successful runs`),
      h("line", { x1: pad, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis" }),
      h("line", { x1: pad, y1: pad, x2: pad, y2: height - pad, class: "axis" }),
      h("text", { x: 4, y: pad }, number(max)),
      h("text", { x: 4, y: height - pad }, "0"),
      h("text", { x: pad, y: height - 12 }, when(points[0].finished_at)),
      points.length > 1 ? h("text", { x: width - pad - 150, y: height - 12 }, when(points[points.length - 1].finished_at)) : null,
      h("path", { d: line("assets"), class: "assets" }), dots("assets", "assets"),
      h("path", { d: line("open_vulnerabilities"), class: "vulns" }), dots("open_vulnerabilities", "vulns")),
    h("figcaption", { class: "legend" }, h("span", { class: "a" }, "Assets"), h("span", { class: "v" }, "Open vulnerabilities")));
}

// A figure the plugin declared by its role (contract 0.4), else a counter whose
// name has the word (plugins of older contracts declare none).
function declared(run, role, word) {
  const value = run.summary && run.summary[role];
  return value !== undefined && value !== null ? value : counter(run, word);
}

// Rows the run skipped, every reason together.
function skippedTotal(summary) {
  return Object.values(summary.skipped || {}).reduce((sum, n) => sum + n, 0);
}

// A counter as the summary labels it: the plugin's label (contract 0.4), else its
// name with a capital, as the CLI prints it.
function counterLabel(summary, name) {
  const label = summary.counter_labels && summary.counter_labels[name];
  return label || name.charAt(0).toUpperCase() + name.slice(1);
}

// Rows in against records out: what the source gave, what was skipped and why,
// what was written. Every skipped row has a reason and a count.
function reconciliation(s) {
  const skipped = Object.entries(s.skipped || {}).sort((a, b) => b[1] - a[1]);
  const rows = [
    ["Assets read from the source", s.source_assets], ["Rows read from the source", s.source_rows],
    ["Rows skipped", skippedTotal(s)], ...skipped.map(([reason, n]) => [reason, n, "reason"]),
    ["Assets written", s.assets_written], ["Vulnerabilities written", s.vulnerabilities_written],
    ["of which closed (fixed)", s.vulnerabilities_closed], ["Vulnerability definitions written", s.definitions_written]];
  return h("div", { class: "table-wrap" }, h("table", { id: "reconciliation" },
    h("caption", { class: "sr-only" }, "Rows in and records out"),
    h("tbody", {}, rows.filter(([, v]) => v !== undefined && v !== null).map(([k, v, kind]) => h("tr", kind ? { class: "reason" } : {},
      h("th", { scope: "row" }, kind ? `↳ ${k}` : k), h("td", { class: "num" }, number(v)))))));
}

function counter(run, word) {
  const counters = (run.summary && run.summary.counters) || {};
  const key = Object.keys(counters).find((k) => k.includes(word));
  return key ? counters[key] : null;
}

function cvmCounts(run) {
  const counts = run.cvm && run.cvm.run && run.cvm.run.counts;
  if (!counts) return "–";
  return `${number(counts.processed_assets_count ?? 0)} assets, +${number(counts.created_scanner_vuln_count ?? 0)} / −${number((counts.closed_scanner_vuln_count ?? 0) + (counts.autoclosed_scanner_vuln_count ?? 0))} vulns`;
}

function progressText(run) {
  const p = run.progress || {};
  const parts = Object.entries(p).filter(([k]) => k !== "stage").map(([k, v]) => `${k}: ${number(v.done)}${v.total ? ` of ${number(v.total)}` : ""}`);
  return [p.stage ? `${p.stage}…` : run.status === "queued" ? "waiting for a worker…" : "fetching…", ...parts].join(" · ");
}

async function connectorPage(id) {
  const [{ status, data: c }, catalog, { data: runs }] = await Promise.all([
    api("GET", `/api/connectors/${id}`), plugins(), api("GET", `/api/runs?connector=${id}&limit=50`)]);
  if (status !== 200) return show(h("h1", {}, "No such connector"), h("p", {}, h("a", { href: "#/" }, "Back to connectors")));
  document.title = `${c.name} · connector-host`;
  const plugin = catalog.find((p) => p.id === c.plugin) || { name: c.plugin, fields: [], egress: [] };
  const active = runs.find((r) => r.status === "queued" || r.status === "running");
  const actions = isAdmin() ? h("div", { class: "row", id: "actions" },
    h("button", { type: "button", class: "primary", id: "run-now", disabled: Boolean(active || c.paused_reason), onclick: async () => {
        const { status: s, data } = await api("POST", `/api/connectors/${id}/runs`);
        if (s === 202) banner(`Run ${data.id} queued.`); else banner(data.error, true);
        go(location.hash);
      } }, active ? "Running…" : "Run now"),
    h("button", { type: "button", id: "edit", onclick: () => connectorDialog(plugin, c) }, "Edit"),
    c.paused_reason ? h("button", { type: "button", id: "approve", onclick: async () => {
        const { status: s, data } = await api("POST", `/api/connectors/${id}/approve`);
        banner(s === 200 ? "Approved: the connector runs again." : data.error, s !== 200);
        go(location.hash);
      } }, "Approve the plugin's new access") : null,
    h("button", { type: "button", class: "danger", id: "delete", onclick: async () => {
        if (!confirm(`Delete ${c.name} and its run history?`)) return;
        const { status: s, data } = await api("DELETE", `/api/connectors/${id}`);
        if (s === 204) { banner(`${c.name} was deleted.`); go("#/"); } else banner(data.error, true);
      } }, "Delete")) : null;
  const settingValue = (v) => (v && typeof v === "object" ? (v.set ? "set" : "not set") : String(v));
  const shownValue = (f) => (f.key in c.settings ? settingValue(c.settings[f.key])
    : f.default ? h("span", { class: "muted" }, `${f.default} (default)`) : h("span", { class: "muted" }, "not set"));
  const history = h("div", { class: "table-wrap" }, h("table", { id: "runs" },
    h("caption", { class: "sr-only" }, "Run history"),
    h("thead", {}, h("tr", {}, ["Status", "Started", "Duration"].map((t) => h("th", { scope: "col" }, t)),
      ["Source assets", "Rows read", "Rows skipped", "Assets", "Vulnerabilities", "Files", "API calls", "Throttled"].map((t) => h("th", { scope: "col", class: "num" }, t)),
      h("th", { scope: "col" }, "CVM run"))),
    h("tbody", {}, runs.map((r) => h("tr", { "data-run": r.id },
      h("td", {}, h("a", { href: `#/runs/${r.id}` }, statusBadge(r.status))),
      h("td", {}, when(r.started_at || r.queued_at)),
      h("td", {}, r.status === "running" || r.status === "queued" ? progressText(r) : duration(r.duration_ms)),
      h("td", { class: "num" }, number(declared(r, "source_assets", "devices"))),
      h("td", { class: "num" }, number(declared(r, "source_rows", "rows"))),
      h("td", { class: "num", "data-skipped": "" }, number(r.summary ? skippedTotal(r.summary) : null)),
      h("td", { class: "num" }, number(r.assets)),
      h("td", { class: "num" }, number(r.open_vulnerabilities)),
      h("td", { class: "num" }, r.files.length),
      h("td", { class: "num" }, number(r.summary && r.summary.api_calls)),
      h("td", { class: "num" }, number(r.summary && r.summary.throttled_responses)),
      h("td", {}, cvmCounts(r)))))));
  show(
    h("p", {}, h("a", { href: "#/" }, "← Connectors")),
    h("div", { class: "row spread", "data-connector-id": c.id },
      h("div", {}, h("h1", {}, c.name), h("p", { class: "muted" }, `${plugin.name} ${c.plugin_version || ""}`,
        c.enabled ? "" : " · disabled")),
      actions),
    c.paused_reason ? h("div", { class: "card", role: "alert", id: "paused" },
      h("p", {}, statusBadge("paused"), " ", c.paused_reason),
      c.changes && c.changes.length ? [h("p", {}, "What differs from what was approved:"),
        h("ul", { id: "changes" }, c.changes.map((change) => h("li", {}, change)))] : null) : null,
    h("div", { class: "grid two" },
      h("section", { class: "card", "aria-labelledby": "schedule-title" },
        h("h2", { id: "schedule-title" }, "Schedule"),
        h("p", {}, c.schedule ? h("code", {}, c.schedule) : "Only when run by hand."),
        c.next_due_times.length ? [h("p", {}, "Next runs (UTC):"), h("ul", { id: "next-runs" }, c.next_due_times.map((t) => h("li", {}, when(t))))] : null,
        incrementalFacts(c, id)),
      h("section", { class: "card", "aria-labelledby": "chart-heading" },
        h("h2", { id: "chart-heading" }, "Assets and open vulnerabilities"),
        chart(runs))),
    h("h2", {}, "Run history"),
    runs.length ? history : h("p", { class: "muted", id: "no-runs" }, "No runs yet."),
    h("section", { class: "card", "aria-labelledby": "settings-title" },
      h("h2", { id: "settings-title" }, "Settings"),
      h("dl", { class: "settings", id: "settings" }, plugin.fields.map((f) => [h("dt", {}, f.label), h("dd", {}, shownValue(f))]),
        c.cvm ? [h("dt", {}, "CVM"), h("dd", {}, `connector ${c.cvm.connector_id} at ${c.cvm.api_host || "api.kennasecurity.com"}, API key ${settingValue(c.cvm.api_key)}`)] : []),
      h("details", {},
        h("summary", {}, `Reaches ${(c.egress || []).length} declared origins`),
        h("ul", { id: "reaches" }, (c.egress || []).map((e) => h("li", {}, h("code", {}, e.origin), ` — ${e.purpose}`))))));
  if (active) state.timer = setInterval(async () => {
    const { data } = await api("GET", `/api/runs/${active.id}`);
    if (data.status !== active.status || data.status === "succeeded" || data.status === "failed") return route();
    const cell = document.querySelector(`tr[data-run="${active.id}"] td:nth-child(3)`);
    if (cell) cell.textContent = progressText(data);
  }, 1000);
}

// Where the next run starts from (contract 0.4): its mode and why, the time changes
// are read from, the last baseline; an admin may clear the state (the next run is
// then a baseline; nothing starts).
function incrementalFacts(c, id) {
  const inc = c.incremental;
  if (!inc || !inc.supported) return h("p", { class: "muted", id: "next-mode" }, "Every run is a full one (the plugin does not run on changes).");
  return h("div", { id: "incremental" },
    h("p", { id: "next-mode" }, `Next run: ${inc.next_mode} (${inc.why}).`),
    h("dl", { class: "settings" },
      h("dt", {}, "Changes read since"), h("dd", {}, inc.changes_since ? when(inc.changes_since) : "—"),
      h("dt", {}, "Last baseline"), h("dd", {}, inc.last_baseline ? when(inc.last_baseline) : "none yet"),
      h("dt", {}, "Baseline every"), h("dd", {}, `${inc.baseline_days} days`)),
    isAdmin() && inc.state_bytes !== null ? h("button", { type: "button", id: "clear-state", onclick: async () => {
        const { status: s, data } = await api("POST", `/api/connectors/${id}/clear-state`);
        banner(s === 204 ? "State cleared: the next run is a full baseline." : data.error, s !== 204);
        go(location.hash);
      } }, "Clear state") : null);
}

// --- a run's page ---

async function download(url, name) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${state.token}` } });
  const blob = await response.blob();
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
}

async function runPage(id) {
  const { status, data: r } = await api("GET", `/api/runs/${id}`);
  if (status !== 200) return show(h("h1", {}, "No such run"), h("p", {}, h("a", { href: "#/" }, "Back to connectors")));
  const { data: log } = await api("GET", `/api/runs/${id}/log`);
  document.title = `Run ${id} · connector-host`;
  const s = r.summary || {};
  const facts = [
    ["Status", statusBadge(r.status)], ["Triggered by", r.triggered_by], ["Mode", s.mode ? `${s.mode}${s.mode_reason ? ` (${s.mode_reason})` : ""}` : "–"], ["Queued", when(r.queued_at)], ["Started", when(r.started_at)],
    ["Finished", when(r.finished_at)], ["Duration", duration(r.duration_ms)], ["Worker", r.worker || "–"],
    ...Object.entries(s.counters || {}).map(([k, v]) => [counterLabel(s, k), number(v)]),
    ["API calls", number(s.api_calls)], ["Throttled responses", number(s.throttled_responses)], ["CVM run", cvmCounts(r)]];
  show(
    h("p", {}, h("a", { href: `#/connectors/${r.connector}` }, "← Connector")),
    h("h1", {}, `Run ${r.id}`),
    r.status === "running" || r.status === "queued" ? h("p", { id: "progress", "aria-live": "polite" }, progressText(r)) : null,
    r.error ? h("p", { class: "form-error", role: "alert", id: "run-error" }, r.error) : null,
    r.settings_problem ? h("p", { id: "run-hint" }, "The source refused the connector's credentials or permissions: ",
      h("a", { href: `#/connectors/${r.connector}` }, "check its settings"), ", then Save and Verify.") : null,
    r.error_kind === "throttled" ? h("p", { id: "run-hint" }, "The source throttled the run; it runs again in about 15 minutes.") : null,
    s.warnings && s.warnings.length ? h("section", { class: "card", id: "run-warnings", role: "status" },
      h("h2", {}, "Warnings"), h("ul", {}, s.warnings.map((w) => h("li", {}, w)))) : null,
    h("section", { class: "card" }, h("dl", { class: "settings", id: "run-facts" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
    r.summary ? [h("h2", {}, "Reconciliation"), reconciliation(s)] : null,
    h("h2", {}, "KDI files"),
    r.files.length ? h("ul", { id: "files" }, r.files.map((f) => h("li", {},
      h("button", { type: "button", class: "link", onclick: () => download(f.url, f.name), "data-file": f.name }, `Download ${f.name}`),
      ` (${number(f.bytes)} bytes)`))) : h("p", { class: "muted" }, "No files (kept for the retention period after a successful run)."),
    h("h2", {}, "Log"),
    h("pre", { class: "log", id: "log", tabindex: "0" }, log.map((l) => h("span", { class: l.level }, `${new Date(l.at).toISOString()} ${l.level.toUpperCase().padEnd(5)} ${l.message}\n`))));
  if (r.status === "running" || r.status === "queued") state.timer = setInterval(async () => {
    const { data } = await api("GET", `/api/runs/${id}`);
    if (data.status !== r.status) return route();
    const p = $("progress");
    if (p) p.textContent = progressText(data);
  }, 1000);
}

// --- start ---

window.addEventListener("hashchange", () => {
  if (!state.keepBanner) clearBanner();
  state.keepBanner = false;
  route();
});
document.addEventListener("DOMContentLoaded", () => {
  $("sign-out").addEventListener("click", () => signOut("You are signed out."));
  route();
});
