//! Candidate lists: which rules an event must be evaluated against.
//!
//! A rule whose top-level conjunction requires `field == "<string>"` cannot match an event whose field
//! holds another string, so it need not be evaluated there (its outcome is plainly false: no missing
//! field to count). Rules are bucketed by the `category` they require; inside each bucket, by the
//! string field most of the bucket's rules require (e.g. `payload.zone`). Every list is in priority
//! order. An event whose key field is absent or not a string gets the whole bucket, so rules that
//! would report a missing field still do.
//!
//! A list reached through a string also tells which conjuncts of its rules that string already
//! satisfies (`category == "fire"` in the `fire` bucket): those are not evaluated again.

use hashbrown::HashMap;

/// `(slot, strings)`: the rule requires the field in `slot` to be one of `strings`.
pub type Requirement = (usize, Vec<String>);

/// `(position, slot, strings)`: the rule's top-level conjunct at `position` is such a requirement.
pub type Conjunct = (usize, usize, Vec<String>);

/// A rule to evaluate, and its conjuncts (bit `i`: conjunct `i`) that the way the event reached
/// this list already satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub rule: u32,
    pub settled: u64,
}

/// What the event is known to hold when it reaches a list: field `slot` is the string `value`.
type Known<'k> = (usize, &'k str);

/// `rules` as candidates, each with the conjuncts that `known` satisfies.
fn candidates(rules: &[u32], conjuncts: &[Vec<Conjunct>], known: &[Known<'_>]) -> Vec<Candidate> {
    let settled = |rule: u32| {
        let terms = conjuncts.get(rule as usize).map_or(&[][..], Vec::as_slice);
        terms
            .iter()
            .filter(|(position, slot, strings)| {
                *position < 64 && known.iter().any(|(s, value)| s == slot && strings.iter().any(|t| t == value))
            })
            .fold(0u64, |bits, (position, _, _)| bits | (1 << position))
    };
    rules.iter().map(|&rule| Candidate { rule, settled: settled(rule) }).collect()
}

#[derive(Debug, Default)]
pub struct Bucket {
    /// Every rule of the bucket, in priority order.
    all: Vec<Candidate>,
    split: Option<Split>,
}

#[derive(Debug)]
struct Split {
    slot: usize,
    by_value: HashMap<String, Vec<Candidate>>,
    /// Rules of the bucket that do not require the split field, for values no rule names.
    rest: Vec<Candidate>,
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

/// The rules' requirements and top-level conjuncts, by rule position.
pub struct Terms<'t> {
    pub requirements: &'t [Vec<Requirement>],
    pub conjuncts: &'t [Vec<Conjunct>],
}

impl Bucket {
    /// A bucket of `rules`, split on the field (other than `exclude`) that most of them require;
    /// every event reaching it is known to hold `known`.
    fn new(rules: Vec<u32>, terms: &Terms<'_>, exclude: Option<usize>, known: &[Known<'_>]) -> Bucket {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for &rule in &rules {
            for (slot, _) in terms.requirements.get(rule as usize).into_iter().flatten() {
                if Some(*slot) != exclude {
                    *counts.entry(*slot).or_default() += 1;
                }
            }
        }
        let best = counts.into_iter().max_by_key(|&(slot, count)| (count, std::cmp::Reverse(slot)));
        let split = best.filter(|&(_, count)| count >= 2).map(|(slot, _)| {
            let (by_value, rest) = split(&rules, terms.requirements, slot);
            let by_value = by_value
                .into_iter()
                .map(|(value, list)| {
                    let known: Vec<Known<'_>> = known.iter().copied().chain([(slot, value.as_str())]).collect();
                    let list = candidates(&list, terms.conjuncts, &known);
                    (value, list)
                })
                .collect();
            Split { slot, by_value, rest: candidates(&rest, terms.conjuncts, known) }
        });
        Bucket { all: candidates(&rules, terms.conjuncts, known), split }
    }

    /// The rules to evaluate, given the event's string value (if any) of each slot.
    pub fn candidates<'s, 'v>(&'s self, string_at: impl Fn(usize) -> Option<&'v str>) -> &'s [Candidate] {
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
    /// `terms` are those of the rules by position (positions are in priority order).
    pub fn new(terms: &Terms<'_>, category_slot: usize) -> RuleIndex {
        let everyone: Vec<u32> = (0..terms.requirements.len() as u32).collect();
        let (by_value, rest) = split(&everyone, terms.requirements, category_slot);
        let by_category = by_value
            .into_iter()
            .map(|(category, rules)| {
                let bucket = Bucket::new(rules, terms, Some(category_slot), &[(category_slot, category.as_str())]);
                (category, bucket)
            })
            .collect();
        RuleIndex {
            category_slot,
            by_category,
            any_category: Bucket::new(rest, terms, Some(category_slot), &[]),
            every_rule: Bucket::new(everyone, terms, Some(category_slot), &[]),
        }
    }

    pub fn candidates<'s, 'v>(&'s self, string_at: impl Fn(usize) -> Option<&'v str>) -> &'s [Candidate] {
        let bucket = match string_at(self.category_slot) {
            Some(category) => self.by_category.get(category).unwrap_or(&self.any_category),
            None => &self.every_rule,
        };
        bucket.candidates(string_at)
    }
}
