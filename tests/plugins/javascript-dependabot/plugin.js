// GitHub Dependabot alerts, a connector plugin in JavaScript.
//
// Repositories become assets (every one of the organization, so that CVM closes what
// was fixed in a repository that now has no alert); open Dependabot alerts become
// vulnerabilities, one per advisory and repository. Built into a WebAssembly
// component with componentize-js against the connector contract
// (wit/guides/javascript.md).

import { send } from 'vulnbridge:connector/http@0.4.0';
import { log } from 'vulnbridge:connector/log@0.4.0';
import { count, emitAssets, emitDefinitions, emitVulnerabilities, progress, skip } from 'vulnbridge:connector/output@0.4.0';

const SCANNER_TYPE = 'GitHub Dependabot';
const ALERTS_FETCHED = 'alerts fetched';
const REPOSITORIES_FETCHED = 'repositories fetched';

// What lasts from one call to the next: the settings, where paging stands.
let settings = null;
let next = [];
let sequence = 0;
const emitted = new Set();

// A failed call: the contract's `plugin-error`, thrown.
const fail = (tag, message) => {
  throw { tag, val: message };
};

export const connector = {
  info() {
    const field = (key, label, help, kind, required, defaultValue, sentTo) =>
      ({ key, label, help, kind, required, defaultValue, sentTo, choices: [] });
    return {
      id: 'javascript-dependabot',
      name: 'GitHub Dependabot alerts (JavaScript)',
      version: '0.1.0',
      description: 'Imports the open Dependabot alerts of a GitHub organization.',
      scannerType: SCANNER_TYPE,
      fields: [
        field('organization', 'Organization', "The organization's login, e.g. octo-org.", 'text', true, undefined, []),
        // The plugin only ever sees a placeholder; the host puts the token in on the
        // way out, and only toward the API host.
        field('token', 'Token', "A token that may read the organization's Dependabot alerts.", 'secret', true, undefined, ['{host}']),
        field('host', 'API host', "api.github.com, or a GitHub Enterprise Server's API host.", 'host', true, 'api.github.com', []),
      ],
      egress: [{ origin: '{host}', purpose: 'the GitHub REST API' }],
      independentPages: false,
      section: 'Application Security',
      counters: [
        { name: ALERTS_FETCHED, label: 'Alerts fetched', role: 'source-rows' },
        { name: REPOSITORIES_FETCHED, label: 'Repositories fetched', role: 'source-assets' },
      ],
      incremental: false,
    };
  },

  configure(given) {
    const values = Object.fromEntries(given.map((s) => [s.key, s.value.trim()]));
    const organization = values.organization ?? '';
    if (!/^[A-Za-z0-9._-]+$/.test(organization)) {
      throw [{ key: 'organization', message: `expected a login such as octo-org, got \`${organization}\`` }];
    }
    const host = values.host || 'api.github.com';
    const base = host.includes('://') ? host.replace(/\/+$/, '') : `https://${host}`;
    settings = { base, organization, token: values.token ?? '' };
    return []; // every declared origin: {host}, as configured
  },

  verify() {
    get(`${settings.base}/orgs/${settings.organization}/dependabot/alerts?state=open&per_page=1`);
    return [{ name: 'Dependabot alerts', detail: `read the alerts of ${settings.organization}` }];
  },

  start(request) {
    const org = `${settings.base}/orgs/${settings.organization}`;
    // Every repository first, then every open alert, each list page by page.
    next = [['repositories', `${org}/repos?type=all&per_page=100`],
      ['alerts', `${org}/dependabot/alerts?state=open&per_page=100`]];
    sequence = 0;
    return { mode: 'full', reason: request.mode === 'full' ? undefined : 'this plugin always reads everything' };
  },

  fetch() {
    if (next.length === 0) return undefined;
    const [kind, url] = next.shift();
    const response = get(url);
    const following = nextLink(response);
    if (following) next.unshift([kind, following]);
    sequence += 1;
    progress(kind, BigInt(sequence), undefined);
    return { kind, sequence: sequence - 1, body: response.body };
  },

  finish() {
    return undefined; // no state: every run reads everything
  },

  map(page) {
    let entries;
    try {
      entries = JSON.parse(new TextDecoder().decode(page.body));
    } catch (e) {
      fail('bad-response', `${page.kind} page ${page.sequence + 1}: unreadable JSON: ${e}`);
    }
    if (!Array.isArray(entries)) fail('bad-response', `${page.kind} page ${page.sequence + 1}: expected a JSON array`);
    if (page.kind === 'repositories') {
      count(REPOSITORIES_FETCHED, BigInt(entries.length));
      const named = entries.filter((r) => r && r.full_name);
      emitOnce(named.map(repositoryAsset));
      if (named.length < entries.length) skip('repository without a full name', BigInt(entries.length - named.length));
    } else if (page.kind === 'alerts') {
      count(ALERTS_FETCHED, BigInt(entries.length));
      mapAlerts(entries);
    } else {
      fail('other', `unknown page kind \`${page.kind}\``);
    }
  },
};

// A GET through the host; 5xx is tried again twice. JavaScript here has no blocking
// sleep, so a rate limit is reported as `throttled` (the service runs it again later).
function get(url) {
  const headers = [['authorization', `Bearer ${settings.token}`], ['accept', 'application/vnd.github+json'],
    ['x-github-api-version', '2022-11-28'], ['user-agent', 'javascript-dependabot']];
  let response;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    try {
      response = send({ method: 'get', url, headers, body: undefined, timeoutMs: 60000 });
    } catch (e) { // the host refused or could not send it: the error says which
      fail('unreachable', `GET ${url}: ${describe(e)}`);
    }
    if (response.status < 500) break;
    log('warn', `GitHub answered ${response.status}; trying again`);
  }
  const message = `GET ${url}: GitHub answered ${response.status}`;
  if (response.status === 401) fail('authentication', `${message}: the token is not valid`);
  if (response.status === 429 || (response.status === 403 && header(response, 'retry-after'))) {
    fail('throttled', `${message}: rate limited`);
  }
  if (response.status === 403) fail('permission', `${message}: the token may not read Dependabot alerts`);
  if (response.status === 404) fail('not-configured', `${message}: no such organization, or no access to it`);
  if (response.status !== 200) fail('bad-response', message);
  return response;
}

// An `http-error` as text: its case and its message.
function describe(error) {
  const value = error?.payload ?? error;
  return value?.tag ? `${value.tag}: ${value.val}` : String(value);
}

function header(response, name) {
  return response.headers.find(([k]) => k.toLowerCase() === name)?.[1];
}

// The `rel="next"` URL of GitHub's Link header, if any.
function nextLink(response) {
  const part = (header(response, 'link') ?? '').split(',').find((p) => p.includes('rel="next"'));
  return part ? part.split(';')[0].trim().replace(/^<|>$/g, '') : undefined;
}

function repositoryAsset(repository) {
  const fullName = repository.full_name;
  return {
    key: fullName,
    locators: {
      externalId: repository.id != null ? `github-repository:${repository.id}` : undefined,
      url: repository.html_url ?? undefined,
      application: fullName,
    },
    tags: [SCANNER_TYPE, `github-org:${fullName.split('/')[0]}`, repository.private === false ? 'public' : 'private'],
  };
}

// Each repository once per run, however many of its alerts follow.
function emitOnce(assets) {
  const fresh = assets.filter((a) => !emitted.has(a.key));
  fresh.forEach((a) => emitted.add(a.key));
  emitAssets(fresh);
}

function mapAlerts(alerts) {
  const assets = [];
  const vulnerabilities = [];
  const definitions = new Map();
  const skipped = new Map();
  for (const alert of alerts) {
    const advisory = alert?.security_advisory ?? {};
    const repository = alert?.repository ?? {};
    let reason;
    if (!advisory.ghsa_id) reason = 'alert without an advisory id';
    else if (advisory.withdrawn_at) reason = 'advisory withdrawn by GitHub';
    else if (!repository.full_name) reason = 'alert without a repository';
    if (reason) {
      skipped.set(reason, (skipped.get(reason) ?? 0) + 1);
      continue;
    }
    const ghsa = advisory.ghsa_id;
    const vulnerable = alert.security_vulnerability ?? {};
    const pkg = vulnerable.package ?? {};
    const patched = vulnerable.first_patched_version?.identifier;
    assets.push(repositoryAsset(repository));
    vulnerabilities.push({
      assetKey: repository.full_name,
      identifier: ghsa,
      score: score(advisory.cvss?.score, vulnerable.severity ?? advisory.severity),
      found: timestamp(alert.created_at),
      details: `Package: ${pkg.name ?? '?'} (${pkg.ecosystem ?? '?'})\n`
        + `First patched version: ${patched ?? 'none'}\nAlert: ${alert.html_url ?? ''}`,
      status: { tag: 'open' },
    });
    const cves = [...new Set((advisory.identifiers ?? []).filter((i) => i.type === 'CVE').map((i) => i.value))].sort();
    definitions.set(ghsa, {
      identifier: ghsa,
      name: advisory.summary || ghsa,
      cveIds: cves,
      description: advisory.description ?? undefined,
      solution: pkg.name && patched ? `Upgrade ${pkg.name} to ${patched} or later.` : undefined,
    });
  }
  emitOnce(assets);
  emitVulnerabilities(vulnerabilities);
  emitDefinitions([...definitions.values()]);
  for (const [reason, n] of skipped) skip(reason, BigInt(n));
}

// CVSS rounded half up to 0-10, else the severity's usual score.
function score(cvss, severity) {
  if (typeof cvss === 'number' && cvss > 0) return Math.min(10, Math.floor(cvss + 0.5));
  return { critical: 10, high: 8, medium: 5, moderate: 5, low: 2 }[(severity ?? '').toLowerCase()] ?? 0;
}

function timestamp(text) {
  if (!text) return undefined;
  return { seconds: BigInt(Math.floor(Date.parse(text) / 1000)), nanoseconds: 0 };
}
