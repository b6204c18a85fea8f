//! The helpers against trees the engine produced (sdks/plugin-ast-cases.json,
//! shared with the Go SDK's tests and written by sdks/plugin-ast-cases.py):
//! add_predicate must turn each input into exactly the tree (and give the
//! count) the Python SDK's add_predicate, the reference implementation, does,
//! which for the hand-written cases is also the tree the engine parses from
//! the expected SQL; and tables() must give the engine's own answer.

use super::*;
use serde_json::json;

/// The cases of the fixture file's sections (see plugin-ast-cases.py):
/// `tables` (statements for tables() only), `add_predicate` (hand-written)
/// and `reference` (the Python SDK's results).
fn fixtures(sections: &[&str]) -> Vec<Value> {
    let mut file: Value =
        serde_json::from_str(include_str!("../../../../../plugin-ast-cases.json"))
            .expect("plugin-ast-cases.json");
    let mut cases = Vec::new();
    for section in sections {
        match file[*section].take() {
            Value::Array(section) => cases.extend(section),
            _ => panic!("plugin-ast-cases.json has no {section}"),
        }
    }
    cases
}

/// The hand-written case called `name`.
fn named(name: &str) -> Value {
    fixtures(&["add_predicate"]).into_iter().find(|c| c["name"] == name).unwrap()
}

#[test]
fn tables_match_the_engine() {
    for case in fixtures(&["tables", "add_predicate", "reference"]) {
        let expected: Vec<String> = serde_json::from_value(case["tables"].clone()).unwrap();
        assert_eq!(tables(&case["ast"]), expected, "{}", case["sql"]);
    }
}

#[test]
fn add_predicate_gives_the_expected_tree() {
    let mut checked = 0;
    for case in fixtures(&["add_predicate", "reference"]) {
        let mut tree = case["ast"].clone();
        let table = case["table"].as_str().unwrap();
        let name = format!("{} [{table}]", case["sql"].as_str().unwrap());
        let column = case["column"].as_str().unwrap();
        let added = match &case["value"] {
            Value::String(s) => add_predicate(&mut tree, table, column, s.as_str()),
            Value::Number(n) => add_predicate(&mut tree, table, column, n.as_i64().unwrap()),
            other => panic!("bad fixture value {other}"),
        };
        assert_eq!(added, case["count"].as_u64().unwrap() as usize, "{name}: count");
        assert_eq!(tree, case["want"], "{name}:\n got      {tree}\n expected {}", case["want"]);
        checked += 1;
    }
    assert!(checked >= 250, "{checked} cases");
}

#[test]
fn add_predicate_is_idempotent_in_count_only() {
    // A second call adds again: the helper does not look for predicates it
    // added before, so a plugin calls it once per statement.
    let mut tree = named("plain")["ast"].clone();
    assert_eq!(add_predicate(&mut tree, "orders", "tenant_id", "a"), 1);
    assert_eq!(add_predicate(&mut tree, "orders", "tenant_id", "a"), 1);
    assert_eq!(tree["where"]["this"]["node"], "and");
    assert_eq!(tree["where"]["this"]["this"]["node"], "paren");
}

#[test]
fn int64_values_stay_exact() {
    let mut tree = json!({"node": "delete", "this": {"node": "table",
        "this": {"node": "identifier", "this": "t", "quoted": false}}});
    add_predicate(&mut tree, "t", "k", i64::MIN);
    assert_eq!(
        tree["where"]["this"]["expression"],
        json!({"node": "neg", "this": {"node": "literal", "this": "9223372036854775808", "is_string": false}})
    );
    let text = r#"{"node":"literal","this":"x","n":9223372036854775807}"#;
    let parsed: Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed["n"].as_i64(), Some(i64::MAX));
    assert_eq!(parsed.to_string(), text, "member order and integers survive a round trip");
}

#[test]
fn node_tools() {
    let case = named("left_join_on");
    let tree = &case["ast"];
    assert_eq!(kind(tree), Some("select"));
    let joined = &tree["joins"][0]["this"];
    assert_eq!(table_name(joined), Some("orders"));
    assert_eq!(alias(joined), Some("o"));
    assert_eq!(nodes(tree).iter().filter(|n| kind(n) == Some("table")).count(), 2);
    assert_eq!(identifier("x")["quoted"], false);
    assert_eq!(identifier("1x")["quoted"], true);
    assert_eq!(identifier("select it")["quoted"], true);
    let function = json!({"node": "table", "this": {"node": "anonymous", "this": "pragma_table_info"}});
    assert_eq!(table_name(&function), None);
    let mut visited = 0;
    let mut copy = tree.clone();
    walk_mut(&mut copy, &mut |_| visited += 1);
    assert_eq!(visited, nodes(tree).len());
}
