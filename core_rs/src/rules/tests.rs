use super::*;
use serde_json::json;

fn rule(id: &str, priority: i64, when: &str) -> RuleSpec {
    RuleSpec { id: id.into(), priority, condition: Condition::Expression(when.into()) }
}

fn matches(rules: &RuleSet, event: &Value, first_only: bool) -> Vec<u32> {
    let bytes = serde_json::to_vec(event).unwrap_or_default();
    rules.match_batch(&[&bytes], first_only).map(|m| m.event(0).to_vec()).unwrap_or_default()
}

fn problems(specs: &[RuleSpec]) -> Vec<RuleProblem> {
    match RuleSet::compile(specs, "Asia/Shanghai") {
        Err(CompileFailure::Rules(problems)) => problems,
        other => panic!("expected rule problems, got {:?}", other.err()),
    }
}

#[test]
fn gas_leak_at_night_matches_in_local_time() {
    let when = r#"category == "gas_leak" && payload.ppm >= 5000 && hour(time) >= 22"#;
    let rules = RuleSet::compile(&[rule("gas-night", 10, when)], "Asia/Shanghai").unwrap();
    // 14:30 UTC is 22:30 in Shanghai.
    let event = json!({"category": "gas_leak", "payload": {"ppm": 6000}, "time": "2026-05-01T14:30:00Z"});
    assert_eq!(matches(&rules, &event, false), vec![0]);
    let morning = json!({"category": "gas_leak", "payload": {"ppm": 6000}, "time": "2026-05-01T08:00:00+08:00"});
    assert!(matches(&rules, &morning, false).is_empty());
}

#[test]
fn priority_orders_matches_and_first_only_stops_early() {
    let specs = [rule("low", 1, "true"), rule("high", 9, r#"category == "fire""#), rule("mid", 5, "true")];
    let rules = RuleSet::compile(&specs, "UTC").unwrap();
    let event = json!({"category": "fire"});
    assert_eq!(matches(&rules, &event, false), vec![1, 2, 0]);
    assert_eq!(matches(&rules, &event, true), vec![1]);
    assert_eq!(matches(&rules, &json!({"category": "noise"}), false), vec![2, 0]);
}

#[test]
fn missing_field_is_unknown_and_counted() {
    let specs = [rule("ppm", 0, "payload.ppm >= 5000"), rule("either", 0, r#"payload.ppm > 1 || category == "fire""#)];
    let rules = RuleSet::compile(&specs, "UTC").unwrap();
    assert_eq!(matches(&rules, &json!({"category": "fire", "payload": {}}), false), vec![1]);
    assert!(matches(&rules, &json!({"category": "noise"}), false).is_empty());
    let (events, stats) = rules.stats();
    assert_eq!(events, 2);
    assert_eq!(stats[0], RuleStats { matches: 0, missing: 2 });
    assert_eq!(stats[1], RuleStats { matches: 1, missing: 1 });
}

#[test]
fn in_grid_matches_names_or_ids_from_any_segment() {
    let rules = RuleSet::compile(
        &[rule("chenghua", 0, r#"in_grid("成华区/*")"#), rule("id", 0, r#"in_grid("510108*")"#)],
        "UTC",
    )
    .unwrap();
    let event = json!({"grid": "成都市/成华区/府青路街道/社区A/网格3", "grid_ids": "5101/510108/51010801"});
    assert_eq!(matches(&rules, &event, false), vec![0, 1]);
    assert!(matches(&rules, &json!({"grid": "成都市/成华区"}), false).is_empty());
    assert!(matches(&rules, &json!({"grid": "成都市/金牛区/x"}), false).is_empty());
}

#[test]
fn errors_name_rule_and_position_for_every_bad_rule() {
    let found = problems(&[
        rule("ok", 0, "true"),
        rule("bad-op", 0, "category == \n  && x"),
        rule("bad-fn", 0, "nosuch(1)"),
        RuleSpec {
            id: "bad-json".into(),
            priority: 0,
            condition: Condition::JsonLogic(r#"{"and": [{"frob": 1}]}"#.into()),
        },
    ]);
    let ids: Vec<&str> = found.iter().map(|p| p.rule_id.as_str()).collect();
    assert_eq!(ids, ["bad-op", "bad-fn", "bad-json"]);
    assert_eq!(found[0].error.position, Position::LineColumn { line: 2, column: 3 });
    assert_eq!(found[2].error.position, Position::Pointer("/and/0/frob".into()));
}

#[test]
fn events_that_are_not_objects_match_nothing_and_broken_json_is_an_error() {
    let rules = RuleSet::compile(&[rule("any", 0, "has(category)")], "UTC").unwrap();
    assert!(matches(&rules, &json!([1, 2]), false).is_empty());
    let error = rules.match_batch(&[b"{}", b"{\"a\":"], false).unwrap_err();
    assert_eq!(error.index, 1);
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(problems(&[rule("deep", 0, &deep)]).len(), 1);
    let negated = format!("{}true", "!".repeat(10_000));
    assert_eq!(problems(&[rule("neg", 0, &negated)]).len(), 1);
}

#[test]
fn jsonlogic_apply_follows_json_logic_js() {
    let apply = |logic: Value, data: Value| apply_jsonlogic(&logic, &data, "UTC").unwrap();
    assert_eq!(apply(json!({"var": ["a.b", 7]}), json!({"a": {}})), json!(7));
    assert_eq!(apply(json!({"cat": ["I love", " pie", 3.5]}), json!(null)), json!("I love pie3.5"));
    assert_eq!(apply(json!({"==": [1, "1"]}), json!(null)), json!(true));
    assert_eq!(apply(json!({"substr": ["jsonlogic", -5, -2]}), json!(null)), json!("log"));
}

#[test]
fn index_skips_rules_whose_required_strings_differ_but_keeps_missing_counts() {
    let specs = [
        rule("zone1", 2, r#"category == "fire" && payload.zone == "z1" && payload.level > 5"#),
        rule("zone2", 1, r#"category == "fire" && payload.zone in ["z2", "z3"]"#),
        rule("any-zone", 0, r#"category == "fire" && payload.level > 50"#),
    ];
    let rules = RuleSet::compile(&specs, "UTC").unwrap();
    assert_eq!(
        matches(&rules, &json!({"category": "fire", "payload": {"zone": "z3", "level": 60}}), false),
        vec![1, 2]
    );
    assert_eq!(matches(&rules, &json!({"category": "fire", "payload": {"zone": "z9", "level": 60}}), false), vec![2]);
    // No zone: every fire rule is evaluated. zone2's outcome is unknown and counted; zone1 is plainly
    // false whatever the zone (level 1 is not > 5), so it is not.
    assert!(matches(&rules, &json!({"category": "fire", "payload": {"level": 1}}), false).is_empty());
    let (_, stats) = rules.stats();
    assert_eq!(stats.iter().map(|s| s.missing).collect::<Vec<_>>(), vec![0, 1, 0]);
}

#[test]
fn large_batches_split_across_threads_give_the_same_answer() {
    let rules = RuleSet::compile(&[rule("hot", 0, "payload.t > 50"), rule("all", 0, "true")], "UTC").unwrap();
    let events: Vec<Vec<u8>> =
        (0..9000).map(|i| format!(r#"{{"payload": {{"t": {}}}}}"#, i % 100).into_bytes()).collect();
    let slices: Vec<&[u8]> = events.iter().map(Vec::as_slice).collect();
    let together = rules.match_batch_parallel(&slices, false).unwrap();
    let one_by_one: Vec<Vec<u32>> =
        slices.iter().map(|e| rules.match_batch(&[e], false).unwrap().event(0).to_vec()).collect();
    assert_eq!((0..together.len()).map(|i| together.event(i).to_vec()).collect::<Vec<_>>(), one_by_one);
    let mut broken = slices.clone();
    broken[7000] = b"{";
    broken[8000] = b"[";
    assert_eq!(rules.match_batch_parallel(&broken, false).unwrap_err().index, 7000);
}

#[test]
fn conjuncts_the_index_settles_are_skipped_without_changing_outcomes() {
    let specs = [
        rule("both", 0, r#"category == "a" && category == "b""#),
        rule("either", 0, r#"category in ["a", "b"] && payload.zone == "z1" && payload.level > 2"#),
        rule("only", 0, r#"category == "a""#),
        rule("nested", 0, r#"(category == "a" && payload.zone == "z1") && payload.level > 2"#),
        rule("zone", 0, r#"payload.zone == "z1" && payload.level > 2"#),
        rule("zone-too", 0, r#"payload.zone == "z2" || payload.zone == "z1""#),
    ];
    let rules = RuleSet::compile(&specs, "UTC").unwrap();
    let event = |category: &str, level: Value| json!({"category": category, "payload": {"zone": "z1", "level": level}});
    assert_eq!(matches(&rules, &event("a", json!(3)), false), vec![1, 2, 3, 4, 5]);
    assert_eq!(matches(&rules, &event("b", json!(3)), false), vec![1, 4, 5]);
    assert_eq!(matches(&rules, &event("a", json!(1)), false), vec![2, 5]);
    assert_eq!(matches(&rules, &json!({"category": "b", "payload": {"zone": "z1"}}), false), vec![5]);
    let (_, stats) = rules.stats();
    assert_eq!(stats.iter().map(|s| s.missing).collect::<Vec<_>>(), vec![0, 1, 0, 0, 1, 0]);
}
