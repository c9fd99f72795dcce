// UI text and category names in English and Chinese, chosen from the browser's language.
"use strict";

const TEXT = {
  en: {
    title: "CityHub operations centre", open: "Open", overdue: "Overdue",
    city: "City", reports_to: "reports to", hubs_below: "hubs below:",
    tta: "Time to accept, min (median / p90)", ttr: "Time to resolve, min (median / p90)", rate: "Events / min",
    tta_clock: "From reception (受理: the hub received the report and dispatched it) to the first acceptance by " +
      "whoever it was dispatched to. Never from the event's own time, which a late or imported report puts far back.",
    ttr_clock: "From reception (受理: the hub received the report and dispatched it) to resolution (办结). " +
      "Never from the event's own time, which a late or imported report puts far back.",
    unit_min: "min",
    no_cell: "No cell", no_cell_title: "Open incidents whose place resolved to no grid cell: in triage, sent to the fallback route.",
    late: "late", late_title: "Reported long after it happened (a flushed buffer, an import): left out of the response times.",
    confirmed_by: "confirmed by {n} of {total} grids", unconfirmed: "not yet",
    connecting: "connecting", live: "live", reconnecting: "reconnecting",
    incidents: "Incidents", figures: "Figures", plugins: "Plugins", fit: "Fit",
    by_category: "By category", by_street: "By street", events_per_minute: "Events per minute by source",
    token: "Admin token", save: "Save", back: "← Back",
    all_severities: "All severities", all_categories: "All categories", all_districts: "All districts",
    all_streets: "All streets", all_sources: "All sources",
    status_active: "Active", status_all: "All", status_overdue: "Overdue",
    shown: "{n} of {total} incidents", reports: "Reports", grid_path: "Grid path", matched_rules: "Matched rules",
    dispatch_orders: "Dispatch orders", sources: "Sources", opened: "Opened", escalation: "Escalation",
    deadline: "Deadline", attempt: "attempt", none: "none", overdue_by: "overdue by {d}", in: "in {d}",
    category: "Category", street: "Street", source: "Source", count: "Count", median: "Median", p90: "p90",
    accept: "Accept", resolve: "Resolve", last_minute: "Last full minute", trend: "Last 30 min",
    enable: "Enable", disable: "Disable", enabled: "enabled", disabled: "disabled", calls: "calls",
    failures: "failures", last_error: "last error", need_token: "Enter the admin token (Plugins tab) first.",
    plugin_unavailable: "No plugin host connected.", done: "Done.", unreadable: "unreadable messages",
    no_incident: "This incident is no longer in the dashboard's window.",
    token_ok: "Token accepted.", token_refused: "Token refused.",
    unit_s: "s", unit_m: "m", unit_h: "h", unit_d: "d",
    role_active: "active hub", role_standby: "standby hub", role_activating: "taking over",
    role_stepping_down: "stepping down",
    all_scopes: "All hubs", scope_here: "Handled here", hub: "hub",
    cross_scope: "cross-scope", cross_scope_title: "One incident across a border, linked by {by}: {incidents}",
    linked_by: "linked by {by}", escalate_to: "Escalate to {to}", escalated_to: "Escalated to {to}",
    escalate_sent: "Sent up to {to}.", escalate_before: "It went up before.",
  },
  zh: {
    title: "城运中心 · CityHub", open: "待办", overdue: "超时",
    city: "市级", reports_to: "上级", hubs_below: "下级：",
    tta: "接单用时·分钟（中位 / P90）", ttr: "办结用时·分钟（中位 / P90）", rate: "事件/分钟",
    tta_clock: "自受理（平台接收并派单）起，至责任人首次接单止；不按事件自身发生时间计算（迟报、补录的事件发生时间可能很早）。",
    ttr_clock: "自受理（平台接收并派单）起，至办结止；不按事件自身发生时间计算（迟报、补录的事件发生时间可能很早）。",
    unit_min: "分钟",
    no_cell: "未落格", no_cell_title: "定位未落入任何网格的在办事件：待人工分拨，已派往兜底处置单位。",
    late: "迟报", late_title: "发生后很久才上报（设备补传、历史导入）：不计入办理用时。",
    confirmed_by: "{total} 个网格中 {n} 个已确认", unconfirmed: "未确认",
    connecting: "连接中", live: "实时", reconnecting: "重新连接中",
    incidents: "事件", figures: "指标", plugins: "插件", fit: "全览",
    by_category: "按类别", by_street: "按街道", events_per_minute: "各来源每分钟事件数",
    token: "管理令牌", save: "保存", back: "← 返回",
    all_severities: "全部等级", all_categories: "全部类别", all_districts: "全部区县",
    all_streets: "全部街道", all_sources: "全部来源",
    status_active: "处置中", status_all: "全部", status_overdue: "超时",
    shown: "显示 {n} / 共 {total} 件", reports: "上报记录", grid_path: "网格路径", matched_rules: "命中规则",
    dispatch_orders: "派单", sources: "来源", opened: "立案时间", escalation: "升级期限",
    deadline: "期限", attempt: "次派单", none: "无", overdue_by: "已超时 {d}", in: "剩余 {d}",
    category: "类别", street: "街道", source: "来源", count: "件数", median: "中位", p90: "P90",
    accept: "接单", resolve: "办结", last_minute: "上一整分钟", trend: "近30分钟",
    enable: "启用", disable: "停用", enabled: "已启用", disabled: "已停用", calls: "调用",
    failures: "失败", last_error: "最近错误", need_token: "请先在“插件”页输入管理令牌。",
    plugin_unavailable: "未连接插件宿主。", done: "已完成。", unreadable: "无法解析的消息",
    no_incident: "该事件已不在看板的时间窗口内。",
    token_ok: "令牌有效。", token_refused: "令牌无效。",
    unit_s: "秒", unit_m: "分", unit_h: "时", unit_d: "天",
    role_active: "主用", role_standby: "备用", role_activating: "接管中", role_stepping_down: "退为备用",
    all_scopes: "全部下级中心", scope_here: "本级处置", hub: "中心",
    cross_scope: "跨区域", cross_scope_title: "跨界的同一事件，由{by}关联：{incidents}",
    linked_by: "由{by}关联", escalate_to: "上报至{to}", escalated_to: "已上报至{to}",
    escalate_sent: "已上报至{to}。", escalate_before: "此前已上报。",
  },
};

const NAMES = {
  en: {
    category: {},  // from the hub's taxonomy: setCategoryNames()
    severity: { info: "Info", low: "Low", medium: "Medium", high: "High", critical: "Critical" },
    state: { open: "Open", acknowledged: "Acknowledged", resolved: "Resolved", closed: "Closed" },
    cause: { severity: "Escalated for its severity", deadline: "Escalated: orders unanswered",
             operator: "Escalated by an operator", cross_scope: "Escalated: one incident across a border" },
    order: {
      created: "Created", sent: "Sent", accepted: "Accepted", on_site: "On site", resolved: "Resolved",
      rejected: "Rejected", redispatched: "Re-dispatched", escalated: "Escalated", evaluated: "Evaluated",
    },
  },
  zh: {
    category: {},  // from the hub's taxonomy: setCategoryNames()
    severity: { info: "提示", low: "低", medium: "中", high: "高", critical: "紧急" },
    state: { open: "待处置", acknowledged: "已受理", resolved: "已办结", closed: "已关闭" },
    cause: { severity: "因等级上报", deadline: "超时未处置上报", operator: "人工上报", cross_scope: "跨区域事件上报" },
    order: {
      created: "已创建", sent: "已派发", accepted: "已接单", on_site: "已到场", resolved: "已处置",
      rejected: "已退回", redispatched: "已二次派单", escalated: "已上报", evaluated: "已评价",
    },
  },
};

const LANG = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";

function t(key, values) {
  let text = TEXT[LANG][key] ?? TEXT.en[key] ?? key;
  for (const [name, value] of Object.entries(values || {})) text = text.replace(`{${name}}`, value);
  return text;
}

// The category labels come from the hub's taxonomy (GET /api/categories), the registry the pipeline,
// the AsyncAPI document and the docs read too: categories plugins or the config add are named like built-ins.
function setCategoryNames(categories) {
  for (const { name, label_en, label_zh } of categories) {
    NAMES.en.category[name] = label_en;
    NAMES.zh.category[name] = label_zh;
  }
}

// A display name for a code of one kind (category, severity, state, order); unknown codes show as they are.
function nameOf(kind, code) {
  if (code == null) return "";
  return NAMES[LANG][kind]?.[code] ?? code;
}

function translatePage() {
  document.documentElement.lang = LANG === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-i18n]")) element.textContent = t(element.dataset.i18n);
  for (const element of document.querySelectorAll("[data-i18n-title]")) element.title = t(element.dataset.i18nTitle);
}
