//! Incident changes as CloudEvents, byte for byte as `hub.pipeline.outputs.incident_update_output` and
//! `closed_output` wrote them with orjson: the `Incident` fields the pipeline keeps of an incident, and for
//! an update the report that made it (its event's place, id, location, address, triage and area, written
//! from the batch's event columns).

use super::cloudevent::{write_data_key, write_extension, write_head, Extension, Head};
use super::events::EventRows;
use super::json::{instant_from_seconds, write_int, write_str, write_time, Utc};

/// The CloudEvents `source` of what the hub itself makes.
pub const HUB_SOURCE: &str = "/cityhub/pipeline";
const TYPE_PREFIX: &str = "cityhub.incident.";

/// One incident change.
#[derive(Debug, Clone)]
pub struct IncidentChange<'a> {
    pub subject: &'a str,
    pub msg_id: &'a str,
    pub change: &'a str,
    pub incident_id: &'a str,
    pub category: &'a str,
    pub severity: &'a str,
    pub district: Option<&'a str>,
    pub late: bool,
    pub opened_at: f64,
    pub updated_at: f64,
    pub received_at: Option<f64>,
    pub report_count: i64,
    pub sources: Vec<&'a str>,
    pub matched_rules: Vec<&'a str>,
    /// Set on a `closed` change (state `closed`); an update of an open incident has its report instead.
    pub closed_reason: Option<&'a str>,
    /// The row of the report (in the batch's event columns) an update is about.
    pub report: Option<usize>,
}

fn write_member(out: &mut Vec<u8>, name: &str) {
    out.push(b',');
    write_str(out, name);
    out.push(b':');
}

fn write_strings(out: &mut Vec<u8>, values: &[&str]) {
    out.push(b'[');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, value);
    }
    out.push(b']');
}

fn write_clock(out: &mut Vec<u8>, seconds: f64) {
    write_time(out, instant_from_seconds(seconds), Utc::Offset);
}

/// The event properties an update writes.
pub const REPORT_PROPERTIES: [&str; 6] = ["id", "grid_path", "location", "address", "triage", "area"];

/// Where the event properties an update writes are in the batch's event columns.
struct ReportProperties {
    id: usize,
    triage: usize,
    /// grid_path, then location, address, triage and area, written in that order after `event_ids`.
    grid_path: usize,
    rest: [usize; 4],
}

impl ReportProperties {
    fn of(rows: &EventRows<'_, '_>) -> Result<Self, String> {
        let at = |name| rows.index(name, None);
        Ok(ReportProperties {
            id: at("id")?,
            triage: at("triage")?,
            grid_path: at("grid_path")?,
            rest: [at("location")?, at("address")?, at("triage")?, at("area")?],
        })
    }
}

/// The report's place, id, location, address, triage and area, as the event's `data` writes them.
fn write_report(out: &mut Vec<u8>, rows: &EventRows<'_, '_>, at: &ReportProperties, row: usize) -> Result<(), String> {
    rows.write_member(out, at.grid_path, row)?;
    out.extend_from_slice(b",\"event_ids\":[");
    write_str(out, rows.string(at.id, row).unwrap_or_default());
    out.push(b']');
    for index in at.rest {
        rows.write_member(out, index, row)?;
    }
    Ok(())
}

type Reports<'r, 's, 'c> = Option<(&'r EventRows<'s, 'c>, ReportProperties)>;

fn write_change(out: &mut Vec<u8>, change: &IncidentChange<'_>, reports: &Reports<'_, '_, '_>) -> Result<(), String> {
    let report = match (change.report, reports) {
        (None, _) => None,
        (Some(row), Some((rows, at))) if row < rows.len() => Some((*rows, at, row)),
        (Some(row), _) => return Err(format!("encode_incident_changes: no event row {row}")),
    };
    let triage = report.and_then(|(rows, at, row)| rows.string(at.triage, row));
    let head = Head {
        id: change.msg_id,
        source: [HUB_SOURCE, ""],
        type_: [TYPE_PREFIX, change.change],
        time: instant_from_seconds(change.updated_at),
        subject: change.subject,
    };
    write_head(out, &head);
    write_extension(out, "category", Some(Extension::Str(change.category)));
    write_extension(out, "severity", Some(Extension::Str(change.severity)));
    write_extension(out, "incidentid", Some(Extension::Str(change.incident_id)));
    write_extension(out, "district", change.district.map(Extension::Str));
    write_extension(out, "late", change.late.then_some(Extension::Bool(true)));
    write_extension(out, "triage", triage.map(Extension::Str));
    write_data_key(out);
    out.extend_from_slice(b"{\"id\":");
    write_str(out, change.incident_id);
    write_member(out, "category");
    write_str(out, change.category);
    write_member(out, "severity");
    write_str(out, change.severity);
    write_member(out, "state");
    write_str(out, if change.closed_reason.is_some() { "closed" } else { "open" });
    write_member(out, "opened_at");
    write_clock(out, change.opened_at);
    write_member(out, "updated_at");
    write_clock(out, change.updated_at);
    write_member(out, "report_count");
    write_int(out, change.report_count);
    write_member(out, "sources");
    write_strings(out, &change.sources);
    write_member(out, "matched_rules");
    write_strings(out, &change.matched_rules);
    out.extend_from_slice(b",\"escalation_level\":0,\"late\":");
    out.extend_from_slice(if change.late { b"true" } else { b"false" });
    if let Some(received_at) = change.received_at {
        write_member(out, "received_at");
        write_clock(out, received_at);
    }
    if let Some(reason) = change.closed_reason {
        write_member(out, "closed_reason");
        write_str(out, reason);
    }
    if let Some((rows, at, row)) = report {
        write_report(out, rows, at, row)?;
    }
    out.extend_from_slice(b"}}");
    Ok(())
}

/// Every change, one after another in one buffer; the offsets (one more than changes) say where each
/// starts and the last one ends. `rows` are the batch's events, which updates name by row (None when no
/// change is an update).
pub fn encode_incident_changes(
    changes: &[IncidentChange<'_>],
    rows: Option<&EventRows<'_, '_>>,
) -> Result<(Vec<u8>, Vec<usize>), String> {
    let reports = rows.map(|rows| Ok::<_, String>((rows, ReportProperties::of(rows)?))).transpose()?;
    let mut out = Vec::with_capacity(changes.len() * 1024);
    let mut offsets = Vec::with_capacity(changes.len() + 1);
    offsets.push(0);
    for change in changes {
        write_change(&mut out, change, &reports)?;
        offsets.push(out.len());
    }
    Ok((out, offsets))
}
