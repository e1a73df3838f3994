//! `docs/metrics.md` and the catalog in the code list the same metrics, with the same type, unit and
//! labels.

use std::collections::BTreeMap;

use leasehold::telemetry::CATALOG;

#[test]
fn the_docs_table_matches_the_catalog() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
    let text = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    let mut documented = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `leasehold_")) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert!(cells.len() >= 4, "a malformed row in docs/metrics.md: {line}");
        let name = cells[0].trim_matches('`').to_owned();
        let labels = if cells[3] == "-" { String::new() } else { cells[3].to_owned() };
        let row = (cells[1].to_owned(), cells[2].to_owned(), labels);
        assert!(documented.insert(name.clone(), row).is_none(), "{name} is documented twice");
    }
    let coded: BTreeMap<String, (String, String, String)> = CATALOG
        .iter()
        .map(|m| (m.name.to_owned(), (m.kind.as_str().to_owned(), m.unit.to_owned(), m.labels.join(", "))))
        .collect();
    let mut problems = Vec::new();
    for (name, row) in &coded {
        match documented.get(name) {
            None => problems.push(format!("{name} is emitted but not documented")),
            Some(d) if d != row => problems.push(format!("{name}: documented as {d:?}, emitted as {row:?}")),
            Some(_) => {}
        }
    }
    for name in documented.keys().filter(|n| !coded.contains_key(*n)) {
        problems.push(format!("{name} is documented but not emitted"));
    }
    assert!(problems.is_empty(), "docs/metrics.md and the catalog disagree:\n{}", problems.join("\n"));
}
