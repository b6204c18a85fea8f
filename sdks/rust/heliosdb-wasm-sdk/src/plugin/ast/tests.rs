//! The helpers against trees the engine produced (fixtures.json, written by
//! make_fixtures.py): add_predicate must turn each input into exactly the
//! tree (and give the count) the Python SDK's add_predicate, the reference
//! implementation, does, which for the hand-written cases is also the tree
//! the engine parses from the expected SQL; and tables() must give the
//! engine's own answer.

use super::*;
use serde_json::json;

fn fixtures() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures.json")).expect("fixtures.json")
}

#[test]
fn tables_match_the_engine() {
    for case in fixtures() {
        let expected: Vec<String> = serde_json::from_value(case["tables"].clone()).unwrap();
        assert_eq!(tables(&case["ast"]), expected, "{}", case["sql"]);
    }
}

#[test]
fn add_predicate_gives_the_expected_tree() {
    let mut checked = 0;
    for case in fixtures().into_iter().filter(|c| c.get("expected").is_some()) {
        let mut tree = case["ast"].clone();
        let table = case["table"].as_str().unwrap();
        let column = case["column"].as_str().unwrap();
        let added = match &case["value"] {
            Value::String(s) => add_predicate(&mut tree, table, column, s.as_str()),
            Value::Number(n) => add_predicate(&mut tree, table, column, n.as_i64().unwrap()),
            other => panic!("bad fixture value {other}"),
        };
        assert_eq!(added, case["count"].as_u64().unwrap() as usize, "{}: count", case["name"]);
        assert_eq!(
            tree, case["expected"],
            "{}:\n got      {}\n expected {}",
            case["name"], tree, case["expected"]
        );
        checked += 1;
    }
    assert!(checked >= 250, "{checked} cases");
}

#[test]
fn add_predicate_is_idempotent_in_count_only() {
    // A second call adds again: the helper does not look for predicates it
    // added before, so a plugin calls it once per statement.
    let mut tree = fixtures().into_iter().find(|c| c["name"] == "plain").unwrap()["ast"].clone();
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
    let case = fixtures().into_iter().find(|c| c["name"] == "left_join_on").unwrap();
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
