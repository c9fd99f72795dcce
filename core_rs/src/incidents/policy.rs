//! Which events may merge: category groups, and distance D / window T per category. Validated once.

use hashbrown::HashMap;

use super::textsim::similarity_to_slots;
use super::{config_error, IncidentError};

/// How far (metres) and how long (seconds) a report of one category may be from an incident it joins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CategoryLimits {
    pub distance_m: f64,
    pub window_s: f64,
}

impl CategoryLimits {
    fn validate(self, key: &str) -> Result<Self, IncidentError> {
        for (field, value) in [("distance_m", self.distance_m), ("window_s", self.window_s)] {
            if !value.is_finite() || value < 0.0 {
                return Err(config_error(
                    format!("{key}.{field}"),
                    format!("must be a finite number >= 0, got {value}"),
                ));
            }
        }
        Ok(self)
    }

    /// When a report of one category meets an incident of another (same group), the wider limits apply.
    pub fn widest(self, other: Self) -> Self {
        Self { distance_m: self.distance_m.max(other.distance_m), window_s: self.window_s.max(other.window_s) }
    }
}

/// The validated merge policy. Categories in no group form a group of their own.
#[derive(Debug, Clone)]
pub struct MergePolicy {
    group_of: HashMap<String, u32>,
    group_count: u32,
    default: CategoryLimits,
    per_category: HashMap<String, CategoryLimits>,
    min_matching_slots: u32,
    incident_ttl_s: Option<f64>,
    search_radius_m: f64,
}

impl MergePolicy {
    pub fn new(
        groups: Vec<(String, Vec<String>)>,
        default: CategoryLimits,
        per_category: Vec<(String, CategoryLimits)>,
        text_similarity: f64,
        incident_ttl_s: Option<f64>,
    ) -> Result<Self, IncidentError> {
        let default = default.validate("default")?;
        let mut group_of = HashMap::new();
        let mut group_names: HashMap<&str, u32> = HashMap::new();
        for (name, members) in &groups {
            let next = group_names.len() as u32;
            let group = *group_names.entry(name.as_str()).or_insert(next);
            for category in members {
                if category.is_empty() {
                    return Err(config_error(format!("groups[{name:?}]"), "a category name is empty"));
                }
                if let Some(previous) = group_of.insert(category.clone(), group) {
                    if previous != group {
                        return Err(config_error(
                            format!("groups[{name:?}]"),
                            format!(
                                "category {category:?} is already in another group; a category belongs to one group"
                            ),
                        ));
                    }
                }
            }
        }
        let per_category = per_category
            .into_iter()
            .map(|(name, limits)| {
                let limits = limits.validate(&format!("per_category[{name:?}]"))?;
                Ok((name, limits))
            })
            .collect::<Result<HashMap<_, _>, IncidentError>>()?;
        let min_matching_slots = similarity_to_slots(text_similarity).ok_or_else(|| {
            config_error("text_similarity", format!("must be between 0 and 1, got {text_similarity}"))
        })?;
        if let Some(ttl) = incident_ttl_s {
            if !ttl.is_finite() || ttl <= 0.0 {
                return Err(config_error("incident_ttl_s", format!("must be a finite number > 0, got {ttl}")));
            }
        }
        let search_radius_m = per_category.values().map(|l| l.distance_m).fold(default.distance_m, f64::max);
        Ok(Self {
            group_of,
            group_count: group_names.len() as u32,
            default,
            per_category,
            min_matching_slots,
            incident_ttl_s,
            search_radius_m,
        })
    }

    /// The named group of `category`, if it is in one.
    pub(crate) fn named_group(&self, category: &str) -> Option<u32> {
        self.group_of.get(category).copied()
    }

    /// Number of named groups; ids of categories in no group are allocated above it.
    pub(crate) fn group_count(&self) -> u32 {
        self.group_count
    }

    pub fn limits(&self, category: &str) -> CategoryLimits {
        self.per_category.get(category).copied().unwrap_or(self.default)
    }

    pub fn min_matching_slots(&self) -> u32 {
        self.min_matching_slots
    }

    pub fn incident_ttl_s(&self) -> Option<f64> {
        self.incident_ttl_s
    }

    /// The largest distance any pair of categories may merge over: the spatial index's cell size.
    pub fn search_radius_m(&self) -> f64 {
        self.search_radius_m
    }
}
