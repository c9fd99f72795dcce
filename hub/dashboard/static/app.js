// The operations-centre page: live incidents from /api/stream (server-sent events), a virtualised list
// with filters, the incident page, figures and the plugin panel.
"use strict";

const ROW_HEIGHT = 46;
const OPEN_STATES = new Set(["open", "acknowledged"]);
const FILTER_NAMES = ["status", "severity", "category", "district", "street", "source", "scope"];
const HERE = "here";  // the scope filter's value for what no hub below owns
const TOKEN_KEY = "cityhub.adminToken";

const page = {
  tier: { scope: "city", parent: null, children: [] },
  incidents: new Map(),
  shown: [],
  filters: { status: "active" },
  selected: null,
  detail: null,
  figures: null,
  map: null,
  refreshQueued: false,
};

const $ = (selector) => document.querySelector(selector);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// --- formatting ------------------------------------------------------------------------------------

function duration(seconds) {
  if (seconds == null) return "–";
  const s = Math.round(Math.abs(seconds));
  const [sec, min, hour, day] = [t("unit_s"), t("unit_m"), t("unit_h"), t("unit_d")];
  const two = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s}${sec}`;
  if (s < 3600) return `${Math.floor(s / 60)}${min} ${two(s % 60)}${sec}`;
  if (s < 86400) return `${Math.floor(s / 3600)}${hour} ${two(Math.floor((s % 3600) / 60))}${min}`;
  return `${Math.floor(s / 86400)}${day} ${Math.floor((s % 86400) / 3600)}${hour}`;
}

function countdown(deadline) {
  if (!deadline) return "";
  const left = (Date.parse(deadline) - Date.now()) / 1000;
  return left < 0 ? t("overdue_by", { d: duration(left) }) : t("in", { d: duration(left) });
}

function clock(iso) {
  return iso ? new Date(iso).toLocaleString(LANG === "zh" ? "zh-CN" : "en-GB", { hour12: false }) : "";
}

function isOverdue(incident) {
  return OPEN_STATES.has(incident.state) && incident.deadline != null && Date.parse(incident.deadline) < Date.now();
}

// The hub below that owns an incident: its district at the city, its street at a district (the events of a
// child's scope are handed down to it, docs/deployment.md); none at a street, or outside every child.
function childScope(incident) {
  const key = page.tier.scope === "city" ? incident.district : incident.street;
  return page.tier.children.includes(key) ? key : null;
}

function scopeName(scope) {
  return scope === "city" ? t("city") : scope;
}

function place(incident) {
  return [incident.district_name || incident.district, incident.street_name || incident.street].filter(Boolean).join(" · ");
}

// --- incidents, filters and the list ---------------------------------------------------------------

function matches(incident) {
  const f = page.filters;
  const status = f.status || "active";
  if (status === "active" && !OPEN_STATES.has(incident.state)) return false;
  if (status === "overdue" && !isOverdue(incident)) return false;
  if (!["active", "overdue", "all"].includes(status) && incident.state !== status) return false;
  if (f.severity && incident.severity !== f.severity) return false;
  if (f.category && incident.category !== f.category) return false;
  if (f.district && incident.district !== f.district) return false;
  if (f.street && incident.street !== f.street) return false;
  if (f.source && !incident.sources.includes(f.source)) return false;
  if (f.scope && (childScope(incident) || HERE) !== f.scope) return false;
  return true;
}

// Recompute what is shown at most once per frame, however many changes arrive.
function refresh() {
  if (page.refreshQueued) return;
  page.refreshQueued = true;
  requestAnimationFrame(() => {
    page.refreshQueued = false;
    page.shown = [...page.incidents.values()].filter(matches);
    page.shown.sort((a, b) => (b.opened_at || "").localeCompare(a.opened_at || ""));
    $("#list-count").textContent = t("shown", { n: page.shown.length, total: page.incidents.size });
    $("#list-spacer").style.height = `${page.shown.length * ROW_HEIGHT}px`;
    renderRows();
    updateFilterOptions();
    const counts = new Map();
    for (const incident of page.incidents.values()) {
      if (!OPEN_STATES.has(incident.state)) continue;
      for (const cell of incident.cells) counts.set(cell, (counts.get(cell) || 0) + 1);
    }
    page.map.setMarkers(page.shown.filter((incident) => OPEN_STATES.has(incident.state) || page.filters.status !== "active"), counts);
  });
}

// Only the rows in view exist in the document: the list stays fast with tens of thousands of incidents.
function renderRows() {
  const list = $("#list");
  const first = Math.max(0, Math.floor(list.scrollTop / ROW_HEIGHT) - 5);
  const last = Math.min(page.shown.length, first + Math.ceil(list.clientHeight / ROW_HEIGHT) + 10);
  for (const row of list.querySelectorAll(".row")) row.remove();
  for (let index = first; index < last; index++) list.append(row(page.shown[index], index));
}

function row(incident, index) {
  const overdue = isOverdue(incident);
  return element("div", {
    class: `row${incident.id === page.selected ? " selected" : ""}${overdue ? " is-overdue" : ""}`,
    style: `top:${index * ROW_HEIGHT}px`,
    dataset: { id: incident.id, severity: incident.severity },
    onclick: () => openIncident(incident.id),
  },
  element("span", { class: `dot sev-${incident.severity}`, title: nameOf("severity", incident.severity) }),
  element("div", { class: "main" },
    element("div", { class: "what" }, nameOf("category", incident.category),
      element("span", { class: "state" }, nameOf("state", incident.state)),
      incident.escalated_to ? element("span", { class: "escalated-up", title: nameOf("cause", incident.escalation_cause) },
        `↑ ${incident.escalated_to}`) : "",
      incident.cross_scope ? element("span", { class: "cross-scope", title: crossScopeTitle(incident.cross_scope) },
        `⇄ ${t("cross_scope")}`) : "",
      incident.late ? element("span", { class: "badge late-flag", title: t("late_title") }, t("late")) : "",
      incident.confirmation ? element("span", { class: "badge confirmation" }, confirmedText(incident.confirmation)) : ""),
    element("div", { class: "where" }, place(incident) || incident.address || "", " · ", incident.sources.join(", "))),
  element("div", { class: "when" }, clock(incident.opened_at).slice(-8),
    element("div", { class: `countdown${overdue ? " late" : ""}` }, OPEN_STATES.has(incident.state) ? countdown(incident.deadline) : "")));
}

// Which centre this is: the city, a district or a street, and its place among the tiers.
function tierText(tier) {
  const scope = tier.scope === "city" ? t("city") : tier.scope;
  const above = tier.parent ? ` · ${t("reports_to")} ${tier.parent === "city" ? t("city") : tier.parent}` : "";
  const below = tier.children.length ? ` · ${t("hubs_below")} ${tier.children.join(", ")}` : "";
  return `${scope}${above}${below}`;
}

function crossScopeTitle(link) {
  const incidents = link.incidents.map((linked) => `${scopeName(linked.scope)} ${linked.id}`).join(", ");
  return t("cross_scope_title", { by: scopeName(link.linked_by), incidents });
}

function distinct(values) {
  return [...new Map(values.filter(([id]) => id)).entries()].sort((a, b) => String(a[1]).localeCompare(String(b[1])));
}

function fillSelect(select, allLabel, options, current) {
  const key = options.map(([value]) => value).join("|");
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  select.replaceChildren(element("option", { value: "" }, allLabel),
    ...options.map(([value, label]) => element("option", { value }, label)));
  select.value = current || "";
}

function updateFilterOptions() {
  const all = [...page.incidents.values()];
  const f = page.filters;
  fillSelect($("#f-status"), t("status_active"),
    [["overdue", t("status_overdue")], ...["open", "acknowledged", "resolved", "closed"].map((s) => [s, nameOf("state", s)]), ["all", t("status_all")]],
    f.status === "active" ? "" : f.status);
  fillSelect($("#f-severity"), t("all_severities"), [...SEVERITY_ORDER].reverse().map((s) => [s, nameOf("severity", s)]), f.severity);
  fillSelect($("#f-category"), t("all_categories"),
    distinct(all.map((i) => [i.category, nameOf("category", i.category)])), f.category);
  fillSelect($("#f-district"), t("all_districts"), distinct(all.map((i) => [i.district, i.district_name || i.district])), f.district);
  fillSelect($("#f-street"), t("all_streets"),
    distinct(all.filter((i) => !f.district || i.district === f.district).map((i) => [i.street, i.street_name || i.street])), f.street);
  fillSelect($("#f-source"), t("all_sources"), distinct(all.flatMap((i) => i.sources.map((s) => [s, s]))), f.source);
  fillSelect($("#f-scope"), t("all_scopes"),
    [...page.tier.children.map((child) => [child, `${scopeName(child)} ${t("hub")}`]), [HERE, t("scope_here")]], f.scope);
}

// --- the incident page -----------------------------------------------------------------------------

async function openIncident(id) {
  page.selected = id;
  page.map.select(id);
  if (location.hash !== `#incident/${id}`) history.replaceState(null, "", `#incident/${id}`);
  renderRows();
  await loadDetail();
}

function closeIncident() {
  page.selected = null;
  page.detail = null;
  page.map.select(null);
  history.replaceState(null, "", location.pathname);
  $("#detail").hidden = true;
  renderRows();
}

async function loadDetail() {
  const id = page.selected;
  const response = await fetch(`/api/incidents/${encodeURIComponent(id)}`);
  if (id !== page.selected) return;
  page.detail = response.ok ? await response.json() : null;
  renderDetail();
}

function renderDetail() {
  const body = $("#detail-body");
  $("#detail").hidden = false;
  if (!page.detail) {
    body.replaceChildren(element("p", {}, t("no_incident")));
    return;
  }
  const { summary, incident, reports, orders } = page.detail;
  body.replaceChildren(
    element("h2", { class: `sev-text-${summary.severity}` }, nameOf("category", summary.category),
      element("span", { class: `badge sev-${summary.severity}` }, nameOf("severity", summary.severity)),
      element("span", { class: "badge state" }, nameOf("state", summary.state))),
    element("p", { class: "id" }, summary.id),
    summary.cross_scope ? crossScopeSection(summary.cross_scope, summary.id) : "",
    tierActions(summary),
    summary.confirmation ? element("p", { class: "confirmation" }, confirmedText(summary.confirmation),
      summary.confirmation.unconfirmed.length
        ? ` · ${t("unconfirmed")}: ${summary.confirmation.unconfirmed.map((cell) => cell.name || cell.id).join(", ")}` : "") : "",
    element("dl", {},
      element("dt", {}, t("opened")), element("dd", {}, clock(summary.opened_at), summary.late ? ` (${t("late")})` : ""),
      element("dt", {}, t("sources")), element("dd", {}, summary.sources.join(", ")),
      element("dt", {}, t("escalation")), element("dd", { class: "countdown", dataset: { deadline: incident.escalate_at || "" } },
        incident.escalate_at ? `${clock(incident.escalate_at)} (${countdown(incident.escalate_at)})` : t("none"))),
    element("h3", {}, t("grid_path")),
    element("ol", { class: "grid-path" }, (incident.grid_path || []).map((cell) =>
      element("li", {}, element("b", {}, cell.name || cell.id), ` ${cell.level} · ${cell.id}`,
        cell.distance_m ? ` (+${Math.round(cell.distance_m)} m)` : ""))),
    element("h3", {}, t("matched_rules")),
    element("ul", { class: "rules" }, (incident.matched_rules || []).length
      ? incident.matched_rules.map((rule) => element("li", {}, rule)) : element("li", {}, t("none"))),
    element("h3", {}, t("dispatch_orders")),
    element("ul", { class: "orders" }, orders.length ? orders.map(orderItem) : element("li", {}, t("none"))),
    element("h3", {}, `${t("reports")} (${reports.length})`),
    element("ol", { class: "reports" }, reports.map((report) =>
      element("li", {}, element("span", { class: "time" }, clock(report.time)), " ",
        element("b", {}, report.source), " ", element("span", { class: `badge sev-${report.severity}` }, nameOf("severity", report.severity)),
        element("div", {}, report.text || report.address || nameOf("category", report.category))))),
  );
}

// The other sides of a cross-scope incident; the ones this hub shows open on a click.
function crossScopeSection(link, ownId) {
  return element("div", { class: "cross-scope-links" },
    element("span", { class: "cross-scope" }, `⇄ ${t("cross_scope")} ${link.id}`), ` · ${t("linked_by", { by: scopeName(link.linked_by) })}`,
    element("ul", {}, link.incidents.filter((linked) => linked.id !== ownId).map((linked) =>
      element("li", { dataset: { linked: linked.id } }, `${scopeName(linked.scope)} · `,
        page.incidents.has(linked.id) ? element("a", { href: `#incident/${linked.id}`, onclick: (event) => {
          event.preventDefault();
          openIncident(linked.id);
        } }, linked.id) : linked.id))));
}

// At a hub with a parent: where the incident went up, or the operator's request to send it up (an incident of
// a hub below is that hub's to escalate).
function tierActions(summary) {
  const parent = page.tier.parent;
  if (!parent) return "";
  if (summary.escalated_to) {
    return element("p", { class: "tier-actions escalated-up" },
      `${t("escalated_to", { to: scopeName(summary.escalated_to) })} · ${nameOf("cause", summary.escalation_cause)}`);
  }
  if (childScope(summary)) return "";
  return element("div", { class: "tier-actions" },
    element("button", { id: "escalate", onclick: () => escalate(summary.id, parent) }, t("escalate_to", { to: scopeName(parent) })),
    element("span", { id: "escalate-message", role: "status" }));
}

async function escalate(id, parent) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const message = $("#escalate-message");
  if (!token) {
    message.textContent = t("need_token");
    return;
  }
  const response = await fetch(`/incidents/${encodeURIComponent(id)}/escalate`, {
    method: "POST", headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) message.textContent = `${response.status}: ${body.detail || response.statusText}`;
  else message.textContent = body.escalated ? t("escalate_sent", { to: scopeName(parent) }) : t("escalate_before");
}

// "confirmed by 37 of 52 grids": an area warning's grids whose order is accepted or done.
function confirmedText(confirmation) {
  return t("confirmed_by", { n: confirmation.confirmed, total: confirmation.cells });
}

function orderItem(order) {
  const finished = order.superseded || ["resolved", "evaluated", "rejected"].includes(order.status);
  return element("li", { dataset: { order: order.id }, class: order.superseded ? "superseded" : "" },
    element("b", {}, order.target), order.connector ? ` → ${order.connector}` : "",
    element("span", { class: "badge" }, nameOf("order", order.superseded ? "redispatched" : order.status)),
    order.attempt > 1 ? element("span", { class: "badge" }, `${order.attempt} ${t("attempt")}`) : "",
    element("div", {}, order.summary),
    order.deadline ? element("div", { class: "countdown", dataset: { deadline: finished ? "" : order.deadline } },
      `${t("deadline")}: ${clock(order.deadline)}${finished ? "" : ` (${countdown(order.deadline)})`}`) : "",
    element("ol", { class: "updates" }, order.updates.map((update) =>
      element("li", {}, clock(update.time), " ", nameOf("order", update.status), update.actor ? ` · ${update.actor}` : "",
        update.note ? ` · ${update.note}` : ""))));
}

// Countdowns tick every second without re-rendering the page.
function tick() {
  for (const node of document.querySelectorAll("#detail .countdown[data-deadline]")) {
    const deadline = node.dataset.deadline;
    if (deadline) node.textContent = node.textContent.replace(/\([^)]*\)$/, `(${countdown(deadline)})`);
  }
  renderRows();
}

// --- figures ---------------------------------------------------------------------------------------

// Response times are shown in minutes, the unit the centres are measured in (受理 → 办结).
function minutes(seconds) {
  const value = seconds / 60;
  return value < 10 ? value.toFixed(1) : String(Math.round(value));
}

function pair(summary) {
  return summary ? `${minutes(summary.median_s)} / ${minutes(summary.p90_s)} ${t("unit_min")}` : "–";
}

function renderFigures(figures) {
  page.figures = figures;
  $("#fig-open").textContent = figures.open;
  $("#fig-overdue").textContent = figures.overdue;
  $("#fig-no-cell").textContent = figures.no_cell ?? "–";
  $("#fig-tta").textContent = pair(figures.time_to_accept.all);
  $("#fig-ttr").textContent = pair(figures.time_to_resolve.all);
  const rates = Object.values(figures.events_per_minute);
  $("#fig-rate").textContent = Math.round(rates.reduce((sum, rate) => sum + rate.per_minute, 0));
  const categories = new Set([...Object.keys(figures.open_by_category), ...Object.keys(figures.time_to_accept.by_category),
    ...Object.keys(figures.time_to_resolve.by_category)]);
  table($("#t-category"), [t("category"), t("open"), [t("accept"), t("tta_clock")], [t("resolve"), t("ttr_clock")]], [...categories].sort().map((category) =>
    [nameOf("category", category), figures.open_by_category[category] || 0,
      pair(figures.time_to_accept.by_category[category]), pair(figures.time_to_resolve.by_category[category])]));
  const streets = new Set([...Object.keys(figures.time_to_accept.by_street), ...Object.keys(figures.time_to_resolve.by_street)]);
  table($("#t-street"), [t("street"), [t("accept"), t("tta_clock")], [t("resolve"), t("ttr_clock")]], [...streets].sort().map((street) =>
    [street, pair(figures.time_to_accept.by_street[street]), pair(figures.time_to_resolve.by_street[street])]));
  table($("#t-rate"), [t("source"), t("rate"), t("last_minute"), t("trend")],
    Object.entries(figures.events_per_minute).sort().map(([source, rate]) =>
      [source, Math.round(rate.per_minute), rate.last_minute, sparkline(rate.series)]));
}

// A heading is its text, or [text, tooltip] (the clock a response-time column counts with).
function table(node, headings, rows) {
  const heading = (h) => Array.isArray(h) ? element("th", { title: h[1] }, h[0]) : element("th", {}, h);
  node.replaceChildren(element("tr", {}, headings.map(heading)),
    ...rows.map((cells) => element("tr", {}, cells.map((cell) => element("td", {}, cell)))));
}

function sparkline(series) {
  const max = Math.max(1, ...series);
  const points = series.map((value, index) => `${(index * 100) / (series.length - 1)},${20 - (value / max) * 18}`).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 100 20");
  svg.setAttribute("class", "spark");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  return svg;
}

// --- plugins ---------------------------------------------------------------------------------------

async function loadPlugins() {
  const response = await fetch("/api/plugins");
  const list = $("#plugin-list");
  if (!response.ok) {
    list.replaceChildren(element("p", {}, t("plugin_unavailable")));
    return;
  }
  const plugins = await response.json();
  list.replaceChildren(...plugins.map((plugin) => element("div", { class: "plugin", dataset: { plugin: plugin.name } },
    element("div", { class: "plugin-head" },
      element("b", {}, plugin.name),
      element("span", { class: `badge ${plugin.enabled ? "ok" : "off"}` },
        plugin.enabled ? t("enabled") : `${t("disabled")}${plugin.disabled_reason ? ` (${plugin.disabled_reason})` : ""}`),
      element("button", { dataset: { plugin: plugin.name, action: plugin.enabled ? "disable" : "enable" },
        onclick: () => switchPlugin(plugin.name, plugin.enabled ? "disable" : "enable") },
        plugin.enabled ? t("disable") : t("enable"))),
    element("div", { class: "counters" }, `${t("calls")}: ${plugin.calls ?? 0} · ${t("failures")}: ${plugin.failures ?? 0}`),
    plugin.last_error ? element("div", { class: "error" }, `${t("last_error")}: ${plugin.last_error}`) : "",
    plugin.details ? element("pre", {}, JSON.stringify(plugin.details, null, 1)) : "")));
}

async function switchPlugin(name, action) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const message = $("#plugin-message");
  if (!token) {
    message.textContent = t("need_token");
    $("#token").focus();
    return;
  }
  const response = await fetch(`/plugins/${encodeURIComponent(name)}/${action}`, {
    method: "POST", headers: { Authorization: `Bearer ${token}` },
  });
  const body = await response.json().catch(() => ({}));
  message.textContent = response.ok ? t("done") : `${response.status}: ${body.detail || response.statusText}`;
  await loadPlugins();
}

// The token is checked once on entry, so a typo shows at once rather than on the first switch.
async function saveToken(event) {
  event.preventDefault();
  const token = $("#token").value;
  const response = await fetch("/api/dashboard/token", { headers: { Authorization: `Bearer ${token}` } });
  if (response.ok) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  $("#plugin-message").textContent = response.ok ? t("token_ok") : t("token_refused");
}

// --- live updates ----------------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/api/stream");
  const live = $("#live");
  source.onopen = () => {
    live.textContent = t("live");
    live.className = "live on";
  };
  source.onerror = () => {
    live.textContent = t("reconnecting");
    live.className = "live off";
  };
  source.addEventListener("snapshot", (message) => {
    const snapshot = JSON.parse(message.data);
    page.incidents = new Map(snapshot.incidents.map((incident) => [incident.id, incident]));
    renderFigures(snapshot.figures);
    refresh();
    if (page.selected) loadDetail();
  });
  source.addEventListener("changes", (message) => {
    for (const incident of JSON.parse(message.data).incidents) page.incidents.set(incident.id, incident);
    refresh();
    if (page.selected && page.incidents.has(page.selected)) loadDetail();
  });
  source.addEventListener("figures", (message) => renderFigures(JSON.parse(message.data)));
}

// This hub's role among active and standby hubs; a standby links to the active hub's dashboard.
async function showRole() {
  const response = await fetch("/api/role");
  if (!response.ok) return;
  const { role, active_admin_url: activeUrl } = await response.json();
  const badge = $("#role");
  badge.textContent = t(`role_${role.replace(" ", "_")}`);
  badge.className = `role ${role === "active" ? "on" : "off"}`;
  if (role !== "active" && activeUrl) badge.href = `${activeUrl}/dashboard`;
  else badge.removeAttribute("href");
}

// --- start -----------------------------------------------------------------------------------------

function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.id === `tab-${name}`);
  $("#detail").hidden = true;
  if (name === "plugins") loadPlugins();
}

async function start() {
  translatePage();
  const config = await (await fetch("/api/dashboard/config")).json();
  setCategoryNames(await (await fetch("/api/categories")).json());
  page.tier = config.tier;
  $("#tier").textContent = tierText(config.tier);
  $("#f-scope").hidden = !config.tier.children.length;
  page.map = new GridMap($("#map"), { onSelect: openIncident, tileUrl: config.tile_url });
  const grids = await fetch("/api/grids");
  if (grids.ok) page.map.setCells(await grids.json());
  for (const name of FILTER_NAMES) {
    $(`#f-${name}`).addEventListener("change", (event) => {
      page.filters[name] = event.target.value || (name === "status" ? "active" : "");
      if (name === "district") page.filters.street = "";
      $("#list").scrollTop = 0;
      refresh();
    });
  }
  $("#list").addEventListener("scroll", renderRows, { passive: true });
  $("#detail-close").addEventListener("click", closeIncident);
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  $("#zoom-in").addEventListener("click", () => page.map.zoom(1.5));
  $("#zoom-out").addEventListener("click", () => page.map.zoom(1 / 1.5));
  $("#zoom-fit").addEventListener("click", () => page.map.fit());
  $("#token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("#token-form").addEventListener("submit", saveToken);
  $("#map-legend").replaceChildren(...[...SEVERITY_ORDER].reverse().map((severity) =>
    element("span", {}, element("span", { class: `dot sev-${severity}` }), nameOf("severity", severity))));
  if (location.hash.startsWith("#incident/")) openIncident(decodeURIComponent(location.hash.slice("#incident/".length)));
  connect();
  showRole();
  setInterval(tick, 1000);
  setInterval(showRole, 5000);
}

start();
