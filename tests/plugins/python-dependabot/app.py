"""GitHub Dependabot alerts, a connector plugin in Python.

Repositories become assets (every one of the organization, so that CVM closes what
was fixed in a repository that now has no alert); open Dependabot alerts become
vulnerabilities, one per advisory and repository. Built into a WebAssembly component
with componentize-py against the connector contract (wit/guides/python.md).
"""

import json
import math
import time
from datetime import datetime

from wit_world import exports
from componentize_py_types import Err
from wit_world.imports import http, log, output, types

SCANNER_TYPE = "GitHub Dependabot"
ALERTS_FETCHED = "alerts fetched"
REPOSITORIES_FETCHED = "repositories fetched"

# componentize-py may make a new Connector object for each call: what must last
# from one call to the next (the settings, where paging stands) lives here.
state = {"settings": None, "next": [], "sequence": 0, "emitted": set()}


class Connector(exports.Connector):
    def info(self) -> types.PluginInfo:
        Field, Kind = types.ConfigField, types.FieldKind
        return types.PluginInfo(
            id="python-dependabot",
            name="GitHub Dependabot alerts (Python)",
            version="0.1.0",
            description="Imports the open Dependabot alerts of a GitHub organization.",
            scanner_type=SCANNER_TYPE,
            fields=[
                Field("organization", "Organization", "The organization's login, e.g. octo-org.",
                      Kind.TEXT, True, None, [], []),
                # The plugin only ever sees a placeholder; the host puts the token
                # in on the way out, and only toward the API host.
                Field("token", "Token", "A token that may read the organization's Dependabot alerts.",
                      Kind.SECRET, True, None, ["{host}"], []),
                Field("host", "API host", "api.github.com, or a GitHub Enterprise Server's API host.",
                      Kind.HOST, True, "api.github.com", [], []),
            ],
            egress=[types.Egress("{host}", "the GitHub REST API")],
            independent_pages=False,
            section="Application Security",
            counters=[
                types.CounterInfo(ALERTS_FETCHED, "Alerts fetched", types.CounterRole.SOURCE_ROWS),
                types.CounterInfo(REPOSITORIES_FETCHED, "Repositories fetched", types.CounterRole.SOURCE_ASSETS),
            ],
            incremental=False,
        )

    def configure(self, settings: list[types.Setting]) -> list[str]:
        values = {s.key: s.value.strip() for s in settings}
        organization = values.get("organization", "")
        if not organization.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise Err([types.FieldError("organization", f"expected a login such as octo-org, got `{organization}`")])
        host = values.get("host") or "api.github.com"
        base = host.rstrip("/") if "://" in host else f"https://{host}"
        state["settings"] = {"base": base, "organization": organization, "token": values.get("token", "")}
        return []  # every declared origin: {host}, as configured

    def verify(self) -> list[types.Check]:
        s = state["settings"]
        get(f"{s['base']}/orgs/{s['organization']}/dependabot/alerts?state=open&per_page=1")
        return [types.Check("Dependabot alerts", f"read the alerts of {s['organization']}")]

    def start(self, request: types.RunRequest) -> types.RunPlan:
        s = state["settings"]
        org = f"{s['base']}/orgs/{s['organization']}"
        # Every repository first, then every open alert, each list page by page.
        state["next"] = [("repositories", f"{org}/repos?type=all&per_page=100"),
                         ("alerts", f"{org}/dependabot/alerts?state=open&per_page=100")]
        state["sequence"] = 0
        asked_full = request.mode == types.RunMode.FULL
        return types.RunPlan(types.RunMode.FULL, None if asked_full else "this plugin always reads everything")

    def fetch(self) -> types.Page | None:
        if not state["next"]:
            return None
        kind, url = state["next"].pop(0)
        response = get(url)
        following = next_link(response)
        if following:
            state["next"].insert(0, (kind, following))
        state["sequence"] += 1
        output.progress(kind, state["sequence"], None)
        return types.Page(kind, state["sequence"] - 1, response.body)

    def finish(self) -> bytes | None:
        return None  # no state: every run reads everything

    def map(self, page: types.Page) -> None:
        try:
            entries = json.loads(page.body)
        except ValueError as e:
            raise Err(types.PluginError_BadResponse(f"{page.kind} page {page.sequence + 1}: unreadable JSON: {e}"))
        if not isinstance(entries, list):
            raise Err(types.PluginError_BadResponse(f"{page.kind} page {page.sequence + 1}: expected a JSON array"))
        if page.kind == "repositories":
            output.count(REPOSITORIES_FETCHED, len(entries))
            named = [r for r in entries if isinstance(r, dict) and r.get("full_name")]
            emit_assets([repository_asset(r) for r in named])
            if len(named) < len(entries):
                output.skip("repository without a full name", len(entries) - len(named))
        elif page.kind == "alerts":
            output.count(ALERTS_FETCHED, len(entries))
            map_alerts(entries)
        else:
            raise Err(types.PluginError_Other(f"unknown page kind `{page.kind}`"))


def get(url: str) -> http.Response:
    """A GET through the host, waiting out GitHub's rate limits and 5xx a few times."""
    token = state["settings"]["token"]
    headers = [("authorization", f"Bearer {token}"), ("accept", "application/vnd.github+json"),
               ("x-github-api-version", "2022-11-28"), ("user-agent", "python-dependabot")]
    for attempt in range(4):
        try:
            response = http.send(http.Request(http.Method.GET, url, headers, None, 60_000))
        except Err as e:  # the host refused or could not send it: e.value says which
            raise Err(types.PluginError_Unreachable(f"GET {url}: {e.value}"))
        limited = response.status == 429 or (response.status == 403 and header(response, "retry-after"))
        if (limited or response.status >= 500) and attempt < 3:
            wait = int(header(response, "retry-after") or 2 ** attempt)
            log.log(log.Level.WARN, f"GitHub answered {response.status}; trying again in {wait} s")
            time.sleep(min(wait, 60))
            continue
        break
    message = f"GET {url}: GitHub answered {response.status}"
    if response.status == 401:
        raise Err(types.PluginError_Authentication(f"{message}: the token is not valid"))
    if response.status == 403:
        raise Err(types.PluginError_Permission(f"{message}: the token may not read Dependabot alerts"))
    if response.status == 404:
        raise Err(types.PluginError_NotConfigured(f"{message}: no such organization, or no access to it"))
    if limited:
        raise Err(types.PluginError_Throttled(f"{message}: rate limited"))
    if response.status != 200:
        raise Err(types.PluginError_BadResponse(message))
    return response


def header(response: http.Response, name: str) -> str | None:
    return next((v for k, v in response.headers if k.lower() == name), None)


def next_link(response: http.Response) -> str | None:
    """The `rel="next"` URL of GitHub's Link header, if any."""
    for part in (header(response, "link") or "").split(","):
        if 'rel="next"' in part:
            return part.split(";")[0].strip().strip("<>")
    return None


def repository_asset(repository: dict) -> types.Asset:
    full_name = repository["full_name"]
    owner = full_name.split("/")[0]
    locators = types.Locators(
        external_id=f"github-repository:{repository['id']}" if repository.get("id") is not None else None,
        hostname=None, fqdn=None, netbios=None, ip_address=None, mac_address=None,
        url=repository.get("html_url"), application=full_name)
    visibility = "public" if repository.get("private") is False else "private"
    tags = [SCANNER_TYPE, f"github-org:{owner}", visibility]
    return types.Asset(full_name, locators, None, None, tags, None)


def emit_assets(assets: list[types.Asset]) -> None:
    """Each repository once per run, however many of its alerts follow."""
    new = [a for a in assets if a.key not in state["emitted"]]
    state["emitted"].update(a.key for a in new)
    output.emit_assets(new)


def map_alerts(alerts: list) -> None:
    assets, vulnerabilities, definitions = [], [], {}
    skipped = {}
    for alert in alerts:
        advisory = alert.get("security_advisory") or {} if isinstance(alert, dict) else {}
        repository = alert.get("repository") or {} if isinstance(alert, dict) else {}
        if not advisory.get("ghsa_id"):
            reason = "alert without an advisory id"
        elif advisory.get("withdrawn_at"):
            reason = "advisory withdrawn by GitHub"
        elif not repository.get("full_name"):
            reason = "alert without a repository"
        else:
            reason = None
        if reason:
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        ghsa = advisory["ghsa_id"]
        vulnerable = alert.get("security_vulnerability") or {}
        package = vulnerable.get("package") or {}
        patched = (vulnerable.get("first_patched_version") or {}).get("identifier")
        assets.append(repository_asset(repository))
        vulnerabilities.append(types.Vulnerability(
            asset_key=repository["full_name"], identifier=ghsa,
            score=score((advisory.get("cvss") or {}).get("score"), vulnerable.get("severity") or advisory.get("severity")),
            found=timestamp(alert.get("created_at")), last_seen=None,
            details=f"Package: {package.get('name', '?')} ({package.get('ecosystem', '?')})\n"
                    f"First patched version: {patched or 'none'}\nAlert: {alert.get('html_url', '')}",
            status=types.VulnerabilityStatus_Open()))
        cves = sorted({i["value"] for i in advisory.get("identifiers", []) if i.get("type") == "CVE"})
        name = package.get("name")
        definitions[ghsa] = types.VulnerabilityDefinition(
            identifier=ghsa, name=advisory.get("summary") or ghsa, cve_ids=cves,
            description=advisory.get("description"),
            solution=f"Upgrade {name} to {patched} or later." if name and patched else None)
    emit_assets(assets)
    output.emit_vulnerabilities(vulnerabilities)
    output.emit_definitions(list(definitions.values()))
    for reason, count in skipped.items():
        output.skip(reason, count)


def score(cvss: float | None, severity: str | None) -> int:
    """CVSS rounded half up to 0-10, else the severity's usual score."""
    if isinstance(cvss, (int, float)) and cvss > 0:
        return min(10, math.floor(cvss + 0.5))
    return {"critical": 10, "high": 8, "medium": 5, "moderate": 5, "low": 2}.get((severity or "").lower(), 0)


def timestamp(text: str | None) -> types.Datetime | None:
    if not text:
        return None
    seconds = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return types.Datetime(int(seconds), 0)
