//! Candidate lists: which rules an event must be evaluated against.
//!
//! A rule whose top-level conjunction requires `field == "<string>"` cannot match an event whose field
//! holds another string, so it need not be evaluated there (its outcome is plainly false: no missing
//! field to count). Rules are bucketed by the `category` they require; inside each bucket, by the
//! string field most of the bucket's rules require (e.g. `payload.zone`). Every list is in priority
//! order. An event whose key field is absent or not a string gets the whole bucket, so rules that
//! would report a missing field still do.

use hashbrown::HashMap;

/// `(slot, strings)`: the rule requires the field in `slot` to be one of `strings`.
pub type Requirement = (usize, Vec<String>);

#[derive(Debug, Default)]
pub struct Bucket {
    /// Every rule of the bucket, in priority order.
    all: Vec<u32>,
    split: Option<Split>,
}

#[derive(Debug)]
struct Split {
    slot: usize,
    by_value: HashMap<String, Vec<u32>>,
    /// Rules of the bucket that do not require the split field, for values no rule names.
    rest: Vec<u32>,
}

fn strings_for(requirements: &[Requirement], slot: usize) -> Option<&[String]> {
    requirements.iter().find(|(s, _)| *s == slot).map(|(_, strings)| strings.as_slice())
}

/// Splits `rules` (positions, in priority order) on `slot`: each value's list holds the rules
/// requiring that value plus those not constraining the slot.
fn split(rules: &[u32], requirements: &[Vec<Requirement>], slot: usize) -> (HashMap<String, Vec<u32>>, Vec<u32>) {
    let mut by_value: HashMap<String, Vec<u32>> = HashMap::new();
    let mut rest = Vec::new();
    let required = |rule: u32| requirements.get(rule as usize).and_then(|r| strings_for(r, slot));
    for &rule in rules {
        for value in required(rule).unwrap_or(&[]) {
            by_value.entry(value.clone()).or_default();
        }
    }
    for &rule in rules {
        match required(rule) {
            Some(values) => {
                for value in values {
                    if let Some(list) = by_value.get_mut(value) {
                        if list.last() != Some(&rule) {
                            list.push(rule);
                        }
                    }
                }
            }
            None => {
                rest.push(rule);
                by_value.values_mut().for_each(|list| list.push(rule));
            }
        }
    }
    (by_value, rest)
}

impl Bucket {
    /// A bucket of `rules`, split on the field (other than `exclude`) that most of them require.
    fn new(rules: Vec<u32>, requirements: &[Vec<Requirement>], exclude: Option<usize>) -> Bucket {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for &rule in &rules {
            for (slot, _) in requirements.get(rule as usize).into_iter().flatten() {
                if Some(*slot) != exclude {
                    *counts.entry(*slot).or_default() += 1;
                }
            }
        }
        let best = counts.into_iter().max_by_key(|&(slot, count)| (count, std::cmp::Reverse(slot)));
        let split = best.filter(|&(_, count)| count >= 2).map(|(slot, _)| {
            let (by_value, rest) = split(&rules, requirements, slot);
            Split { slot, by_value, rest }
        });
        Bucket { all: rules, split }
    }

    /// The rules to evaluate, given the event's string value (if any) of each slot.
    pub fn candidates<'s, 'v>(&'s self, string_at: impl Fn(usize) -> Option<&'v str>) -> &'s [u32] {
        match &self.split {
            Some(split) => match string_at(split.slot) {
                Some(value) => split.by_value.get(value).unwrap_or(&split.rest),
                None => &self.all,
            },
            None => &self.all,
        }
    }
}

/// The two-level index of a rule set.
#[derive(Debug, Default)]
pub struct RuleIndex {
    category_slot: usize,
    by_category: HashMap<String, Bucket>,
    /// For categories no rule names: the rules that accept any category.
    any_category: Bucket,
    /// For events without a string category.
    every_rule: Bucket,
}

impl RuleIndex {
    /// `requirements[i]` are those of the rule at position `i` (positions are in priority order).
    pub fn new(requirements: &[Vec<Requirement>], category_slot: usize) -> RuleIndex {
        let everyone: Vec<u32> = (0..requirements.len() as u32).collect();
        let (by_value, rest) = split(&everyone, requirements, category_slot);
        let by_category = by_value
            .into_iter()
            .map(|(category, rules)| (category, Bucket::new(rules, requirements, Some(category_slot))))
            .collect();
        RuleIndex {
            category_slot,
            by_category,
            any_category: Bucket::new(rest, requirements, Some(category_slot)),
            every_rule: Bucket::new(everyone, requirements, Some(category_slot)),
        }
    }

    pub fn candidates<'s, 'v>(&'s self, string_at: impl Fn(usize) -> Option<&'v str>) -> &'s [u32] {
        let bucket = match string_at(self.category_slot) {
            Some(category) => self.by_category.get(category).unwrap_or(&self.any_category),
            None => &self.every_rule,
        };
        bucket.candidates(string_at)
    }
}
