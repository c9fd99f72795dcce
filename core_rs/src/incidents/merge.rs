//! Incident merging. An event joins the open incident that
//! - is in the same category group (categories in no group only meet their own category), and
//! - lies within the pair's time window T of the incident's reports: `first - T <= time <= last + T`, and
//! - either lies within distance D of the incident's anchor (the first located report), or has the same
//!   normalised address and a near-identical text (SimHash Hamming distance within the policy's bound)
//!   as the incident's first report that had both.
//!
//! D and T of a pair are the wider of the event's and the incident's category limits. When several incidents
//! qualify the one opened first wins. Otherwise the event opens a new incident with id `inc-<event id>`
//! (`inc-<event id>~<n>` in the unlikely case that id is still open), so replaying a stream after a crash
//! reproduces the same incidents (a further clash appends `.2`, `.3`, ...). Closed incidents are forgotten and never take new reports.
//!
//! An incident expires when no report joined it for its time-to-live: [`IncidentMerger::expire`] closes the ones
//! due at a given time, [`IncidentMerger::add_many_expiring`] closes them on a watermark that each event moves,
//! so that the results do not depend on how a stream is cut into batches.
//!
//! The reference implementation in tests/reference_incidents.py implements exactly these rules by brute force.

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::expiry::{Deadline, Deadlines};
use super::grid::{Grid, Located, Spot};
use super::incident_id::IncidentId;
use super::policy::{CategoryLimits, MergePolicy};
use super::snapshot::{self, check_follows, Component, Image};
use super::textsim::{matching_slots, minhash, normalize};
use super::IncidentError;

/// Changes remembered for the next delta before it falls back to a full snapshot.
const JOURNAL_LIMIT: usize = 1 << 21;

/// One event offered to the merger. Coordinates are WGS-84 degrees.
#[derive(Debug, Clone, Copy)]
pub struct MergeEvent<'a> {
    pub event_id: &'a str,
    pub time: f64,
    pub category: &'a str,
    pub location: Option<(f64, f64)>,
    pub address: Option<&'a str>,
    pub text: Option<&'a str>,
}

/// What happened to one event: the incident it belongs to (see [`IncidentMerger::incident_id`]),
/// whether it opened that incident, and the incident's report count after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The incident's slot: names it until it closes, then is reused.
    pub incident: u32,
    /// The incident's opening number, never reused: with the slot it names the incident across batches.
    pub seq: u64,
    pub is_new: bool,
    pub report_count: u32,
}

/// An incident that expired, with the slot and opening number it had.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub id: IncidentId,
    pub incident: u32,
    pub seq: u64,
    /// When its time-to-live ran out: its last report's time plus its time-to-live.
    pub deadline: f64,
}

/// What [`IncidentMerger::add_many_expiring`] did to a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiringBatch {
    /// One per event, as [`IncidentMerger::add_many`] gives them.
    pub outcomes: Vec<MergeOutcome>,
    /// The incidents the moving watermark closed, each with the position of the event it closed before,
    /// in order of position, then deadline, then opening.
    pub closed: Vec<(usize, Closed)>,
    /// The watermark after the batch: the newest time seen, or the one passed in.
    pub watermark: f64,
}

/// Counters reported by [`IncidentMerger::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MergerStats {
    pub events: u64,
    pub opened: u64,
    pub merged: u64,
    pub closed: u64,
    pub open_incidents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Incident {
    seq: u64,
    id: IncidentId,
    /// xxh3 of `id`, kept so closing does not have to read the id string.
    #[serde(skip)]
    id_hash: u64,
    category: u32,
    first_time: f64,
    last_time: f64,
    anchor: Option<(f64, f64)>,
    /// (address key, SimHash) of the first report that had both an address and a text.
    text_key: Option<(u64, Vec<u32>)>,
    reports: u32,
}

/// A category as the current policy sees it (the name lives in `IncidentMerger::category_names`).
#[derive(Clone, Copy)]
struct Category {
    group: u32,
    limits: CategoryLimits,
    ttl_s: f64,
    /// The expiry queue of its time-to-live.
    queue: usize,
}

#[derive(Serialize, Deserialize)]
struct FullState {
    categories: Vec<String>,
    next_seq: u64,
    counters: MergerStats,
    incidents: Vec<Incident>,
}

#[derive(Serialize, Deserialize)]
struct Changes {
    new_categories: Vec<String>,
    next_seq: u64,
    counters: MergerStats,
    closed: Vec<u64>,
    upserted: Vec<Incident>,
}

type MergerImage = Image<FullState, Changes>;

/// Incidents touched since the last snapshot, in order (repeats allowed: they are sorted out when a delta
/// is written, which keeps the per-event cost to one push).
struct Journal {
    categories_at_mark: usize,
    touched: Vec<u32>,
    closed: Vec<u64>,
}

impl Journal {
    fn new(categories_at_mark: usize) -> Self {
        Self { categories_at_mark, touched: Vec::new(), closed: Vec::new() }
    }

    fn is_full(&self) -> bool {
        self.touched.len() + self.closed.len() > JOURNAL_LIMIT
    }
}

/// Open incidents live in a slab (a vector of slots reused after closing), so the grid, the text index and
/// the expiry heap reach an incident by direct index instead of another hash lookup.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Incident>>,
    free: Vec<u32>,
    open: usize,
}

impl Slab {
    fn get(&self, slot: u32) -> Option<&Incident> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    fn get_mut(&mut self, slot: u32) -> Option<&mut Incident> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    fn insert(&mut self, incident: Incident) -> u32 {
        self.open += 1;
        match self.free.pop() {
            Some(slot) => {
                if let Some(entry) = self.slots.get_mut(slot as usize) {
                    *entry = Some(incident);
                }
                slot
            }
            None => {
                self.slots.push(Some(incident));
                (self.slots.len() - 1) as u32
            }
        }
    }

    fn take(&mut self, slot: u32) -> Option<Incident> {
        let incident = self.slots.get_mut(slot as usize)?.take()?;
        self.open -= 1;
        self.free.push(slot);
        Some(incident)
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &Incident)> {
        self.slots.iter().enumerate().filter_map(|(slot, i)| Some((slot as u32, i.as_ref()?)))
    }
}

/// Category ids of the names a batch used, recognised by address: callers that share one string per
/// category (the Python binding does) skip hashing the name for every event.
#[derive(Default)]
struct RecentNames<'a> {
    names: Vec<(&'a str, u32)>,
}

impl<'a> RecentNames<'a> {
    const CAPACITY: usize = 16;

    fn find(&self, name: &str) -> Option<u32> {
        self.names.iter().find(|(known, _)| std::ptr::eq(*known, name)).map(|&(_, id)| id)
    }

    fn remember(&mut self, name: &'a str, id: u32) {
        if self.names.len() < Self::CAPACITY {
            self.names.push((name, id));
        }
    }
}

fn id_hash(id: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id)
}

/// Merges events into open incidents; see the module documentation for the rules.
pub struct IncidentMerger {
    policy: MergePolicy,
    categories: Vec<Category>,
    category_names: Vec<String>,
    category_ids: HashMap<String, u32>,
    incidents: Slab,
    /// xxh3 of an open incident's id → its slot (ids are checked on lookup; a clash gets a suffixed id).
    by_id: HashMap<u64, u32>,
    grid: Grid,
    texts: HashMap<(u32, u64), Vec<u32>>,
    deadlines: Deadlines,
    /// The deadlines a close takes out, kept between calls so that closing allocates nothing.
    due: Vec<Deadline>,
    next_seq: u64,
    counters: MergerStats,
    generation: u64,
    journal: Option<Journal>,
}

impl IncidentMerger {
    pub fn new(policy: MergePolicy) -> Self {
        let grid = Grid::new(policy.search_radius_m());
        Self {
            policy,
            categories: Vec::new(),
            category_names: Vec::new(),
            category_ids: HashMap::new(),
            incidents: Slab::default(),
            by_id: HashMap::new(),
            grid,
            texts: HashMap::new(),
            deadlines: Deadlines::default(),
            due: Vec::new(),
            next_seq: 0,
            counters: MergerStats::default(),
            generation: 0,
            journal: None,
        }
    }

    pub fn stats(&self) -> MergerStats {
        MergerStats { open_incidents: self.incidents.open as u64, ..self.counters }
    }

    /// The id of the incident a [`MergeOutcome`] names, while that incident is open.
    pub fn incident_id(&self, outcome: &MergeOutcome) -> Option<&IncidentId> {
        self.incidents.get(outcome.incident).filter(|i| i.seq == outcome.seq).map(|i| &i.id)
    }

    /// Merges a batch in order. The batch is validated first: on error nothing was applied.
    pub fn add_many(&mut self, events: &[MergeEvent<'_>]) -> Result<Vec<MergeOutcome>, IncidentError> {
        validate_all(events)?;
        let mut names = RecentNames::default();
        Ok(events.iter().map(|event| self.add_named(&mut names, event)).collect())
    }

    /// Merges a batch in order on a running watermark: before each event whose time is past the watermark,
    /// the watermark moves to that time and the incidents due at it close exactly as [`Self::expire`] would
    /// close them. Given the watermark the previous batch returned (`-inf` at the start), the outcomes and
    /// closes of a stream do not depend on where it is cut into batches. The batch is validated first: on
    /// error nothing was applied.
    pub fn add_many_expiring(
        &mut self,
        events: &[MergeEvent<'_>],
        watermark: f64,
    ) -> Result<ExpiringBatch, IncidentError> {
        if watermark.is_nan() || watermark == f64::INFINITY {
            return Err(IncidentError::InvalidArgument(format!(
                "watermark must be an epoch-seconds time or -inf (nothing seen yet), got {watermark}"
            )));
        }
        validate_all(events)?;
        let mut names = RecentNames::default();
        let mut batch = ExpiringBatch { outcomes: Vec::with_capacity(events.len()), closed: Vec::new(), watermark };
        for (position, event) in events.iter().enumerate() {
            if event.time > batch.watermark {
                batch.watermark = event.time;
                self.close_due(event.time, |closed| batch.closed.push((position, closed)));
            }
            batch.outcomes.push(self.add_named(&mut names, event));
        }
        Ok(batch)
    }

    /// Merges one event of a batch whose category names `names` remembers.
    fn add_named<'a>(&mut self, names: &mut RecentNames<'a>, event: &MergeEvent<'a>) -> MergeOutcome {
        let category = match names.find(event.category) {
            Some(id) => id,
            None => {
                let id = self.intern(event.category);
                names.remember(event.category, id);
                id
            }
        };
        self.add_one(category, event)
    }

    fn add_one(&mut self, category: u32, event: &MergeEvent<'_>) -> MergeOutcome {
        let text_key = match (event.address, event.text) {
            (Some(address), Some(text)) => address_key(address).zip(minhash(text)),
            _ => None,
        };
        self.counters.events += 1;
        let point = event.location.map(Located::new);
        match self.best_match(category, event, point.as_ref(), &text_key) {
            Some((_, slot)) => self.join(slot, event, point, text_key),
            None => self.open(category, event, point, text_key),
        }
    }

    /// The qualifying incident opened first, as (seq, slot).
    fn best_match(
        &self,
        category: u32,
        event: &MergeEvent<'_>,
        point: Option<&Located>,
        text_key: &Option<(u64, Vec<u32>)>,
    ) -> Option<(u64, u32)> {
        let Category { group, limits, .. } = *self.category(category)?;
        let mut best: Option<(u64, u32)> = None;
        if let Some(point) = point {
            let mut consider = |spot: &Spot| {
                if best.is_none_or(|(b, _)| spot.seq < b)
                    && self.near_in_space_and_time(event.time, point, limits, spot)
                {
                    best = Some((spot.seq, spot.slot));
                }
            };
            if !self.grid.visit_near(group, point, &mut consider) {
                self.incidents
                    .iter()
                    .filter_map(|(slot, incident)| self.spot_in_group(slot, incident, group))
                    .for_each(|spot| consider(&spot));
            }
        }
        if let Some((address, signature)) = text_key {
            for &slot in self.texts.get(&(group, *address)).into_iter().flatten() {
                let Some(incident) = self.incidents.get(slot) else {
                    continue;
                };
                if best.is_some_and(|(b, _)| b <= incident.seq) {
                    continue;
                }
                let Some(theirs) = self.category(incident.category) else {
                    continue;
                };
                let window = limits.widest(theirs.limits).window_s;
                let similar = incident.text_key.as_ref().is_some_and(|(a, theirs)| {
                    a == address && matching_slots(signature, theirs) >= self.policy.min_matching_slots()
                });
                if similar && within_window(event.time, incident.first_time, incident.last_time, window) {
                    best = Some((incident.seq, slot));
                }
            }
        }
        best
    }

    /// The spatial rule: within distance of the incident's anchor and within the window of its reports,
    /// each under the wider limits of the pair. The distance goes first: its cheap bounds reject most spots
    /// without reading the incident.
    fn near_in_space_and_time(&self, time: f64, point: &Located, limits: CategoryLimits, spot: &Spot) -> bool {
        let Some(theirs) = self.category(spot.category) else {
            return false;
        };
        let pair = limits.widest(theirs.limits);
        point.within_m(&spot.anchor, pair.distance_m)
            && self
                .incidents
                .get(spot.slot)
                .is_some_and(|incident| within_window(time, incident.first_time, incident.last_time, pair.window_s))
    }

    /// The incident's grid entry, if it has an anchor and is in `group`.
    fn spot_in_group(&self, slot: u32, incident: &Incident, group: u32) -> Option<Spot> {
        self.category(incident.category).filter(|c| c.group == group)?;
        Some(Spot { anchor: Located::new(incident.anchor?), seq: incident.seq, slot, category: incident.category })
    }

    fn join(
        &mut self,
        slot: u32,
        event: &MergeEvent<'_>,
        point: Option<Located>,
        text_key: Option<(u64, Vec<u32>)>,
    ) -> MergeOutcome {
        let Some(incident) = self.incidents.get_mut(slot) else {
            return MergeOutcome { incident: slot, seq: u64::MAX, is_new: false, report_count: 0 };
        };
        incident.reports = incident.reports.saturating_add(1);
        incident.first_time = incident.first_time.min(event.time);
        let moves_deadline = event.time > incident.last_time;
        incident.last_time = incident.last_time.max(event.time);
        let gains_anchor = incident.anchor.is_none() && event.location.is_some();
        if gains_anchor {
            incident.anchor = event.location;
        }
        let new_text_address = match (incident.text_key.is_none(), text_key) {
            (true, Some((address, signature))) => {
                incident.text_key = Some((address, signature));
                Some(address)
            }
            _ => None,
        };
        let outcome = MergeOutcome { incident: slot, seq: incident.seq, is_new: false, report_count: incident.reports };
        let (seq, category) = (incident.seq, incident.category);
        if let Some(group) = self.category(category).map(|c| c.group) {
            if let (true, Some(anchor)) = (gains_anchor, point) {
                self.grid.insert(group, Spot { anchor, seq, slot, category });
            }
            if let Some(address) = new_text_address {
                self.texts.entry((group, address)).or_default().push(slot);
            }
        }
        if moves_deadline {
            self.push_deadline(slot, seq);
        }
        self.mark_touched(slot);
        self.counters.merged += 1;
        outcome
    }

    fn open(
        &mut self,
        category: u32,
        event: &MergeEvent<'_>,
        point: Option<Located>,
        text_key: Option<(u64, Vec<u32>)>,
    ) -> MergeOutcome {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut id = IncidentId::of_event(event.event_id);
        let mut clash = 0u32;
        let mut hash = id_hash(id.as_bytes());
        while self.by_id.contains_key(&hash) {
            clash += 1;
            let suffix = match clash {
                1 => format!("~{seq}"),
                _ => format!("~{seq}.{clash}"),
            };
            id = IncidentId::from_parts(&["inc-", event.event_id, &suffix]);
            hash = id_hash(id.as_bytes());
        }
        let incident = Incident {
            seq,
            id_hash: hash,
            id,
            category,
            first_time: event.time,
            last_time: event.time,
            anchor: event.location,
            text_key,
            reports: 1,
        };
        let slot = self.insert_hashed(incident, point);
        self.mark_touched(slot);
        self.counters.opened += 1;
        MergeOutcome { incident: slot, seq, is_new: true, report_count: 1 }
    }

    /// Closes an open incident; false when no open incident has that id.
    pub fn close(&mut self, incident_id: &str) -> bool {
        let slot = self.by_id.get(&id_hash(incident_id.as_bytes())).copied();
        match slot.filter(|&s| self.incidents.get(s).is_some_and(|i| i.id == *incident_id)) {
            Some(slot) => {
                self.remove(slot);
                self.counters.closed += 1;
                true
            }
            None => false,
        }
    }

    /// Closes every incident whose last report is more than its time-to-live before `now`
    /// (the policy's `incident_ttl_s`, else the category's window): the incidents whose deadline is
    /// before `now`, in order of deadline, then opening.
    pub fn expire(&mut self, now: f64) -> Result<Vec<Closed>, IncidentError> {
        if !now.is_finite() {
            return Err(IncidentError::InvalidArgument(format!(
                "expire(now): now must be a finite epoch-seconds time, got {now}"
            )));
        }
        let mut closed = Vec::new();
        self.close_due(now, |incident| closed.push(incident));
        Ok(closed)
    }

    /// Closes the incidents whose deadline is before `now` and hands each to `each`, in order of deadline,
    /// then opening. Costs one comparison when none is due.
    fn close_due(&mut self, now: f64, mut each: impl FnMut(Closed)) {
        if !self.deadlines.any_due(now) {
            return;
        }
        let mut due = std::mem::take(&mut self.due);
        let (incidents, categories) = (&self.incidents, &self.categories);
        self.deadlines.take_due(
            now,
            |&Deadline(deadline, seq, slot)| current_deadline(incidents, categories, slot, seq) == Some(deadline),
            &mut due,
        );
        for &Deadline(deadline, seq, slot) in &due {
            if let Some(incident) = self.remove(slot) {
                self.counters.closed += 1;
                each(Closed { id: incident.id, incident: slot, seq, deadline });
            }
        }
        self.due = due;
    }

    /// Swaps in a new policy; open incidents stay open and are re-indexed under it.
    pub fn update_policy(&mut self, policy: MergePolicy) {
        self.policy = policy;
        self.deadlines.reset();
        for (id, (category, name)) in self.categories.iter_mut().zip(&self.category_names).enumerate() {
            *category = resolve(&self.policy, &mut self.deadlines, id as u32, name);
        }
        self.reindex();
    }

    fn category(&self, id: u32) -> Option<&Category> {
        self.categories.get(id as usize)
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.category_ids.get(name) {
            return id;
        }
        let id = self.categories.len() as u32;
        self.category_ids.insert(name.to_owned(), id);
        let category = resolve(&self.policy, &mut self.deadlines, id, name);
        self.categories.push(category);
        self.category_names.push(name.to_owned());
        id
    }

    /// Queues the incident's current deadline (called when it opens and when a later report moves it).
    fn push_deadline(&mut self, slot: u32, seq: u64) {
        let Some(incident) = self.incidents.get(slot) else {
            return;
        };
        let Some(&Category { ttl_s, queue, .. }) = self.category(incident.category) else {
            return;
        };
        self.deadlines.push(queue, Deadline(incident.last_time + ttl_s, seq, slot));
        if self.deadlines.len() > 2 * self.incidents.open + 1024 {
            let (incidents, categories) = (&self.incidents, &self.categories);
            self.deadlines.retain(|&Deadline(deadline, seq, slot)| {
                current_deadline(incidents, categories, slot, seq) == Some(deadline)
            });
        }
    }

    fn index(&mut self, slot: u32) {
        let anchor = self.incidents.get(slot).and_then(|i| i.anchor);
        self.index_located(slot, anchor.map(Located::new));
    }

    /// Indexes the incident in `slot`, whose anchor is `anchor` (already located: opening an incident
    /// reuses the cosine its report's query computed).
    fn index_located(&mut self, slot: u32, anchor: Option<Located>) {
        let Some(incident) = self.incidents.get(slot) else {
            return;
        };
        let Some(group) = self.category(incident.category).map(|c| c.group) else {
            return;
        };
        if let Some(anchor) = anchor {
            let spot = Spot { anchor, seq: incident.seq, slot, category: incident.category };
            self.grid.insert(group, spot);
        }
        if let Some((address, _)) = &incident.text_key {
            self.texts.entry((group, *address)).or_default().push(slot);
        }
        let seq = incident.seq;
        self.push_deadline(slot, seq);
    }

    fn insert(&mut self, mut incident: Incident) -> u32 {
        incident.id_hash = id_hash(incident.id.as_bytes());
        let anchor = incident.anchor.map(Located::new);
        self.insert_hashed(incident, anchor)
    }

    /// Inserts an incident whose `id_hash` is set and whose anchor is `anchor`.
    fn insert_hashed(&mut self, incident: Incident, anchor: Option<Located>) -> u32 {
        let hash = incident.id_hash;
        let slot = self.incidents.insert(incident);
        self.by_id.insert(hash, slot);
        self.index_located(slot, anchor);
        slot
    }

    fn remove(&mut self, slot: u32) -> Option<Incident> {
        let incident = self.incidents.take(slot)?;
        self.by_id.remove(&incident.id_hash);
        if let Some(group) = self.category(incident.category).map(|c| c.group) {
            if let Some(anchor) = incident.anchor {
                self.grid.remove(group, slot, anchor);
            }
            if let Some((address, _)) = incident.text_key {
                if let Some(slots) = self.texts.get_mut(&(group, address)) {
                    slots.retain(|&s| s != slot);
                    if slots.is_empty() {
                        self.texts.remove(&(group, address));
                    }
                }
            }
        }
        if let Some(journal) = &mut self.journal {
            journal.closed.push(incident.seq);
            if journal.is_full() {
                self.journal = None;
            }
        }
        Some(incident)
    }

    /// Rebuilds the grid, the text index and the expiry queues (which `update_policy` emptied).
    fn reindex(&mut self) {
        self.grid = Grid::new(self.policy.search_radius_m());
        self.texts.clear();
        let slots: Vec<u32> = self.incidents.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.index(slot);
        }
    }

    fn mark_touched(&mut self, slot: u32) {
        if let Some(journal) = &mut self.journal {
            journal.touched.push(slot);
            if journal.is_full() {
                self.journal = None;
            }
        }
    }

    /// The open incidents in `slots`, each once, in opening order.
    fn sorted_incidents(&self, slots: impl Iterator<Item = u32>) -> Vec<Incident> {
        let mut incidents: Vec<Incident> = slots.filter_map(|slot| self.incidents.get(slot)).cloned().collect();
        incidents.sort_unstable_by_key(|i| i.seq);
        incidents.dedup_by_key(|i| i.seq);
        incidents
    }

    /// The whole state as bytes (about 55 bytes per open incident, 375 with a text signature).
    /// Starts a new generation.
    pub fn snapshot(&mut self) -> Result<Vec<u8>, IncidentError> {
        self.generation += 1;
        self.journal = Some(Journal::new(self.categories.len()));
        let state = FullState {
            categories: self.category_names.clone(),
            next_seq: self.next_seq,
            counters: self.counters,
            incidents: self.sorted_incidents(self.incidents.iter().map(|(slot, _)| slot)),
        };
        snapshot::seal(Component::Merger, &MergerImage::Full { generation: self.generation, state })
    }

    /// The incidents opened, changed or closed since the last snapshot or delta: cost proportional to
    /// the incidents the batches touched, not to all open ones. A full snapshot when there is no earlier
    /// snapshot (nothing is logged until the first one) or the change log outgrew its limit.
    pub fn snapshot_delta(&mut self) -> Result<Vec<u8>, IncidentError> {
        let Some(journal) = self.journal.replace(Journal::new(self.categories.len())) else {
            return self.snapshot();
        };
        let follows = self.generation;
        self.generation += 1;
        let changes = Changes {
            new_categories: self.category_names.iter().skip(journal.categories_at_mark).cloned().collect(),
            next_seq: self.next_seq,
            counters: self.counters,
            closed: journal.closed,
            upserted: self.sorted_incidents(journal.touched.into_iter()),
        };
        snapshot::seal(Component::Merger, &MergerImage::Delta { follows, generation: self.generation, changes })
    }

    /// Rebuilds a merger from a full snapshot under `policy` (which may differ from the one it was taken with).
    pub fn restore(bytes: &[u8], policy: MergePolicy) -> Result<Self, IncidentError> {
        match snapshot::open::<MergerImage>(Component::Merger, bytes)? {
            MergerImage::Full { generation, state } => {
                let mut merger = Self::new(policy);
                merger.load_full(generation, state)?;
                Ok(merger)
            }
            MergerImage::Delta { .. } => Err(IncidentError::InvalidSnapshot(
                "these bytes are a delta; restore from a full snapshot, then apply the deltas".into(),
            )),
        }
    }

    /// Applies a delta (or a full snapshot, which replaces the state) taken after the current generation.
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), IncidentError> {
        match snapshot::open::<MergerImage>(Component::Merger, bytes)? {
            MergerImage::Full { generation, state } => {
                *self = Self::new(self.policy.clone());
                self.load_full(generation, state)
            }
            MergerImage::Delta { follows, generation, changes } => {
                check_follows(self.generation, follows)?;
                for name in &changes.new_categories {
                    self.intern(name);
                }
                let mut slot_of: HashMap<u64, u32> = self.incidents.iter().map(|(slot, i)| (i.seq, slot)).collect();
                for seq in changes.closed {
                    if let Some(slot) = slot_of.remove(&seq) {
                        self.remove(slot);
                    }
                }
                for incident in changes.upserted {
                    self.check_restorable(&incident)?;
                    if let Some(slot) = slot_of.remove(&incident.seq) {
                        self.remove(slot);
                    }
                    self.insert(incident);
                }
                self.next_seq = changes.next_seq;
                self.counters = changes.counters;
                self.generation = generation;
                self.journal = Some(Journal::new(self.categories.len()));
                Ok(())
            }
        }
    }

    fn load_full(&mut self, generation: u64, state: FullState) -> Result<(), IncidentError> {
        for name in &state.categories {
            self.intern(name);
        }
        for incident in state.incidents {
            self.check_restorable(&incident)?;
            self.insert(incident);
        }
        self.next_seq = state.next_seq;
        self.counters = state.counters;
        self.generation = generation;
        self.journal = Some(Journal::new(self.categories.len()));
        Ok(())
    }

    fn check_restorable(&self, incident: &Incident) -> Result<(), IncidentError> {
        let valid_point = incident.anchor.is_none_or(|(lon, lat)| valid_lon_lat(lon, lat));
        if self.category(incident.category).is_some() && valid_point && incident.first_time.is_finite() {
            Ok(())
        } else {
            Err(IncidentError::InvalidSnapshot(format!("incident {:?} in the snapshot is inconsistent", incident.id)))
        }
    }
}

fn within_window(time: f64, first_time: f64, last_time: f64, window_s: f64) -> bool {
    time >= first_time - window_s && time <= last_time + window_s
}

/// Group, limits, time-to-live and expiry queue of a category under `policy`. Categories in no group get a
/// group of their own.
fn resolve(policy: &MergePolicy, deadlines: &mut Deadlines, id: u32, name: &str) -> Category {
    let group = policy.named_group(name).unwrap_or_else(|| policy.group_count().saturating_add(id));
    let limits = policy.limits(name);
    let ttl_s = policy.incident_ttl_s().unwrap_or(limits.window_s);
    Category { group, limits, ttl_s, queue: deadlines.queue_for(ttl_s) }
}

/// The current deadline of the incident in `slot`, if it is still the one opened as `seq`.
fn current_deadline(incidents: &Slab, categories: &[Category], slot: u32, seq: u64) -> Option<f64> {
    let incident = incidents.get(slot).filter(|i| i.seq == seq)?;
    Some(incident.last_time + categories.get(incident.category as usize)?.ttl_s)
}

fn address_key(address: &str) -> Option<u64> {
    let normalized = normalize(address);
    (!normalized.is_empty()).then(|| xxhash_rust::xxh3::xxh3_64(normalized.as_bytes()))
}

fn valid_lon_lat(lon: f64, lat: f64) -> bool {
    (-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)
}

fn validate_all(events: &[MergeEvent<'_>]) -> Result<(), IncidentError> {
    for (index, event) in events.iter().enumerate() {
        validate(event).map_err(|reason| IncidentError::InvalidEvent { index, reason })?;
    }
    Ok(())
}

fn validate(event: &MergeEvent<'_>) -> Result<(), String> {
    if event.event_id.is_empty() {
        return Err("event_id is empty".into());
    }
    let with_id = |reason: String| format!("event {:?}: {reason}", event.event_id);
    if !event.time.is_finite() {
        return Err(with_id(format!("time must be a finite epoch-seconds number, got {}", event.time)));
    }
    if event.category.is_empty() {
        return Err(with_id("category is empty".into()));
    }
    if let Some((lon, lat)) = event.location {
        if !valid_lon_lat(lon, lat) {
            return Err(with_id(format!(
                "location ({lon}, {lat}) is not WGS-84 degrees (lon in [-180, 180], lat in [-90, 90], no NaN)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> MergePolicy {
        MergePolicy::new(
            vec![("gas".into(), vec!["gas_leak".into(), "smell_gas".into()])],
            CategoryLimits { distance_m: 100.0, window_s: 3600.0 },
            vec![("gas_leak".into(), CategoryLimits { distance_m: 200.0, window_s: 7200.0 })],
            0.7,
            None,
        )
        .unwrap()
    }

    fn event<'a>(id: &'a str, time: f64, category: &'a str, location: Option<(f64, f64)>) -> MergeEvent<'a> {
        MergeEvent { event_id: id, time, category, location, address: None, text: None }
    }

    #[test]
    fn compatible_reports_nearby_merge_and_others_open_incidents() {
        let mut m = IncidentMerger::new(policy());
        let p = (104.06, 30.67);
        let near = (104.0615, 30.67); // ~144 m east: within gas_leak's 200 m
        let out = m
            .add_many(&[
                event("a", 0.0, "gas_leak", Some(p)),
                event("b", 60.0, "smell_gas", Some(near)),
                event("c", 120.0, "fire", Some(p)),
                event("d", 90_000.0, "gas_leak", Some(p)),
            ])
            .unwrap();
        let ids: Vec<_> =
            out.iter().map(|o| (m.incident_id(o).unwrap().as_str().to_owned(), o.is_new, o.report_count)).collect();
        assert_eq!(ids[0], ("inc-a".into(), true, 1));
        assert_eq!(ids[1], ("inc-a".into(), false, 2));
        assert_eq!(ids[2], ("inc-c".into(), true, 1));
        assert_eq!(ids[3], ("inc-d".into(), true, 1));
    }

    #[test]
    fn near_identical_text_at_the_same_address_merges_without_coordinates() {
        let mut m = IncidentMerger::new(policy());
        let mut a = event("a", 0.0, "smell_gas", None);
        a.address = Some("幸福小区3号楼2单元");
        a.text = Some("幸福小区3号楼2单元楼道里有很浓的煤气味，请尽快派人处理");
        let mut b = a;
        b.event_id = "b";
        b.address = Some("幸福小区 3号楼 2单元");
        b.text = Some("幸福小区3号楼2单元楼道里有很浓的煤气味,请尽快派人来处理");
        let out = m.add_many(&[a, b]).unwrap();
        assert!(!out[1].is_new);
    }

    #[test]
    fn closed_and_expired_incidents_take_no_new_reports() {
        let mut m = IncidentMerger::new(policy());
        let p = Some((0.0, 0.0));
        m.add_many(&[event("a", 0.0, "fire", p)]).unwrap();
        assert!(m.close("inc-a"));
        assert!(!m.close("inc-a"));
        let out = m.add_many(&[event("b", 1.0, "fire", p)]).unwrap();
        assert!(out[0].is_new);
        let closed = m.expire(10_000.0).unwrap();
        assert_eq!(closed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), ["inc-b"]);
        assert!(m.add_many(&[event("c", 2.0, "fire", p)]).unwrap()[0].is_new);
    }

    type Reports = Vec<(String, bool, u32)>;
    type Closes = Vec<(usize, String, f64)>;

    /// Merges `events` cut into batches at `cuts` on a running watermark, through a snapshot and restore at
    /// each cut when `restore` is set: per event (incident id, opened, report count), per close (position in
    /// `events`, incident id, deadline).
    fn merge_cut(events: &[MergeEvent<'_>], cuts: &[usize], restore: bool) -> (Reports, Closes) {
        let mut m = IncidentMerger::new(policy());
        let (mut reports, mut closes, mut watermark) = (Vec::new(), Vec::new(), f64::NEG_INFINITY);
        let bounds: Vec<usize> = [0].into_iter().chain(cuts.iter().copied()).collect();
        for (i, &start) in bounds.iter().enumerate() {
            let end = bounds.get(i + 1).copied().unwrap_or(events.len());
            if restore {
                m = IncidentMerger::restore(&m.snapshot().unwrap(), policy()).unwrap();
            }
            let batch = m.add_many_expiring(&events[start..end], watermark).unwrap();
            closes.extend(batch.closed.iter().map(|(at, c)| (start + at, c.id.as_str().to_owned(), c.deadline)));
            for (at, o) in batch.outcomes.iter().enumerate() {
                let closed_later = batch.closed.iter().find(|(_, c)| c.seq == o.seq);
                let id = m
                    .incident_id(o)
                    .or(closed_later.map(|(_, c)| &c.id))
                    .map_or_else(|| format!("event {} names no incident", start + at), |id| id.as_str().to_owned());
                reports.push((id, o.is_new, o.report_count));
            }
            watermark = batch.watermark;
        }
        (reports, closes)
    }

    #[test]
    fn expiry_on_a_running_watermark_does_not_depend_on_batch_boundaries() {
        // Three spots, times mostly rising with late reports; `fire` incidents live 3600 s after their last report.
        let ids: Vec<String> = (0..48).map(|i| format!("e{i}")).collect();
        let events: Vec<MergeEvent<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                let time = (i * 400) as f64 - if i % 5 == 3 { 3900.0 } else { 0.0 };
                let spot = (104.0 + (i % 3) as f64 * 0.01, 30.0);
                event(id, time, if i % 7 == 6 { "noise" } else { "fire" }, Some(spot))
            })
            .collect();
        let whole = merge_cut(&events, &[], false);
        assert!(whole.1.len() >= 3, "the stream closes incidents: {:?}", whole.1);
        assert!(whole.0.iter().filter(|r| !r.1).count() >= 10, "and merges reports");
        for a in 0..=events.len() {
            for restore in [false, true] {
                assert_eq!(merge_cut(&events, &[a], restore), whole, "cut at {a}");
            }
            for b in (a..=events.len()).step_by(5) {
                assert_eq!(merge_cut(&events, &[a, b], true), whole, "cut at {a}, {b}");
            }
        }
    }

    #[test]
    fn a_late_report_in_the_batch_misses_an_incident_a_newer_one_closed() {
        let mut m = IncidentMerger::new(policy());
        let p = Some((0.0, 0.0));
        m.add_many(&[event("a", 0.0, "fire", p)]).unwrap();
        let batch = m.add_many_expiring(&[event("b", 4000.0, "noise", p), event("c", 100.0, "fire", p)], 0.0).unwrap();
        assert_eq!(batch.watermark, 4000.0);
        assert_eq!(batch.closed.len(), 1);
        let (position, closed) = &batch.closed[0];
        assert_eq!((*position, closed.id.as_str(), closed.deadline), (0, "inc-a", 3600.0));
        assert!(batch.outcomes[1].is_new, "inc-a closed before c arrived");
        assert!(m.add_many_expiring(&[], f64::NAN).is_err());
        assert!(m.add_many_expiring(&[], f64::INFINITY).is_err());
    }

    #[test]
    fn points_across_the_antimeridian_are_found() {
        let mut m = IncidentMerger::new(policy());
        let out = m
            .add_many(&[
                event("a", 0.0, "fire", Some((179.9999, 0.0))),
                event("b", 1.0, "fire", Some((-179.9999, 0.0))),
            ])
            .unwrap();
        assert!(!out[1].is_new);
    }

    #[test]
    fn snapshot_and_deltas_restore_identical_behaviour() {
        let mut m = IncidentMerger::new(policy());
        m.add_many(&[event("a", 0.0, "fire", Some((1.0, 1.0)))]).unwrap();
        let full = m.snapshot().unwrap();
        m.add_many(&[event("b", 5.0, "fire", Some((1.0, 1.0))), event("c", 5.0, "noise", Some((2.0, 2.0)))]).unwrap();
        m.close("inc-c");
        let delta = m.snapshot_delta().unwrap();
        let mut restored = IncidentMerger::restore(&full, policy()).unwrap();
        restored.apply(&delta).unwrap();
        assert_eq!(restored.stats(), m.stats());
        let probe = [event("d", 6.0, "fire", Some((1.0, 1.0))), event("e", 6.0, "noise", Some((2.0, 2.0)))];
        assert_eq!(restored.add_many(&probe).unwrap(), m.add_many(&probe).unwrap());
        assert!(restored.apply(&delta).is_err());
        assert!(IncidentMerger::restore(b"CHUB\x01\x02garbage!", policy()).is_err());
    }

    #[test]
    fn bad_events_are_rejected_before_anything_is_applied() {
        let mut m = IncidentMerger::new(policy());
        let err = m.add_many(&[event("a", 0.0, "fire", None), event("b", 0.0, "fire", Some((f64::NAN, 0.0)))]);
        assert!(matches!(err, Err(IncidentError::InvalidEvent { index: 1, .. })));
        assert_eq!(m.stats().events, 0);
        assert!(m.add_many(&[event("a", f64::INFINITY, "fire", None)]).is_err());
        assert!(m.add_many(&[event("a", 0.0, "", None)]).is_err());
        assert!(m.add_many(&[event("a", 0.0, "x", Some((0.0, 91.0)))]).is_err());
    }
}
