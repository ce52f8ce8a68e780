use super::builtin::{Builtin, Common};
use super::*;

const GOOD: &str = r#"
groups:
  - name: hosts
    interval: 10s
    rules:
      - alert: HighLoad
        expr: node_load1 > 4 and on(host) node_memory_MemAvailable_bytes < 1e9
        for: 1m
        keep_firing_for: 30s
        labels:
          severity: warning
          team: "{{ $labels.campus }}-ops"
        annotations:
          summary: "{{ $labels.host }} load {{ $value | humanize }}"
      - alert: HighLoad
        expr: node_load1 > 8
  - name: generic
    labels:
      system: his
    rules:
      - alert: AnyDown
        expr: '{__name__=~".+_up"} == 0'
"#;

#[test]
fn parses_prometheus_rule_files() {
    let groups = parse_file(GOOD, "good.yml", DEFAULT_INTERVAL).unwrap();
    assert_eq!(groups.len(), 2);
    let g = &groups[0];
    assert_eq!(g.interval, Duration::from_secs(10));
    assert_eq!(g.source, RuleSource::File("good.yml".into()));
    let r = &g.rules[0];
    assert_eq!(r.key, "hosts/HighLoad#0");
    assert_eq!(g.rules[1].key, "hosts/HighLoad#1", "same-named rules get distinct keys");
    assert_eq!(r.for_, Duration::from_secs(60));
    assert_eq!(r.keep_firing_for, Duration::from_secs(30));
    assert_eq!(
        r.reads,
        ReadSet::Names(["node_load1", "node_memory_MemAvailable_bytes"].into_iter().map(String::from).collect())
    );
    assert_eq!(groups[1].interval, DEFAULT_INTERVAL, "no interval: the default");
    assert_eq!(groups[1].rules[0].reads, ReadSet::Any, "a nameless selector reads anything");
    assert_eq!(groups[1].rules[0].labels["system"], "his", "group labels reach the rule");
}

fn errors_of(yaml: &str) -> Vec<RuleError> {
    parse_file(yaml, "bad.yml", DEFAULT_INTERVAL).unwrap_err().0
}

fn one_rule(rule: &str) -> String {
    format!("groups:\n  - name: g\n    rules:\n      - {}\n", rule.replace('\n', "\n        "))
}

#[test]
fn bad_rules_are_refused_naming_group_rule_and_field() {
    let cases = [
        ("alert: A\nexpr: sum(", "expr", "PromQL"),
        ("alert: A\nexpr: no_such_fn(up)", "expr", "unknown function"),
        ("alert: A\nexpr: up[5m]", "expr", "instant vector"),
        ("alert: A\nexpr: up\nfor: 5 minutes", "for", "not a duration"),
        ("alert: A\nexpr: up\nkeep_firing_for: 1.5m", "keep_firing_for", "not a duration"),
        ("record: job:up:sum\nexpr: sum(up)", "record", "not supported"),
        ("expr: up", "alert", "required"),
        ("alert: bad-name\nexpr: up", "alert", "not a valid alert name"),
        ("alert: A\nexpr: ''", "expr", "required"),
        ("alert: A\nexpr: up\nannotations:\n  summary: '{{ $labels.host '", "annotations.summary", "template"),
        ("alert: A\nexpr: up\nlabels:\n  bad-label: x", "labels", "not a valid label name"),
        ("alert: A\nexpr: up\nlabels:\n  alertname: x", "labels", "alertname"),
    ];
    for (rule, field, needle) in cases {
        let errs = errors_of(&one_rule(rule));
        assert_eq!(errs.len(), 1, "{rule}: {errs:?}");
        assert_eq!(errs[0].field, field, "{rule}");
        assert!(errs[0].message.contains(needle), "{rule}: {}", errs[0].message);
        assert!(errs[0].location.starts_with("bad.yml: group \"g\", rule 1"), "{}", errs[0].location);
    }
}

#[test]
fn every_problem_is_reported_and_yaml_errors_are_clear() {
    let yaml = "groups:\n  - name: g\n    interval: 0s\n    rules:\n      - alert: A\n        expr: up\n        for: x\n      - alert: B\n        expr: 'rate('\n  - name: g\n    rules: []\n";
    let errs = errors_of(yaml);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["interval", "for", "expr", "name"], "{errs:?}");
    let unknown = errors_of("groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        fore: 5m\n");
    assert_eq!(unknown[0].field, "yaml");
    assert!(unknown[0].message.contains("fore"), "{}", unknown[0].message);
}

#[test]
fn builtins_expand_to_valid_rules() {
    let kinds = [
        Builtin::HostDown { common: Common::default(), matchers: Some("campus=\"east\"".into()) },
        Builtin::NoData { common: Common::default(), selector: "node_load1{host=\"db-1\"}".into(), window: None },
        Builtin::TargetDown { common: Common::default(), metric: Some("pg_up".into()), matchers: None },
        Builtin::TargetDown { common: Common::default(), metric: None, matchers: None },
    ];
    let rules: Vec<RuleSpec> = kinds.iter().map(|k| k.expand().unwrap()).collect();
    assert_eq!(rules[0].expr, "tingzhen_agent_up{campus=\"east\"} == 0");
    assert_eq!(rules[0].labels["severity"], "critical");
    assert_eq!(rules[1].expr, "absent_over_time(node_load1{host=\"db-1\"}[5m])");
    assert!(rules[1].annotations["summary"].contains("node_load1"), "{:?}", rules[1].annotations);
    assert_eq!(rules[2].expr, "pg_up == 0");
    let spec = GroupSpec {
        name: "builtin".into(),
        interval: None,
        query_offset: None,
        limit: None,
        labels: LabelMap::new(),
        rules,
    };
    let g = compile_group(spec, RuleSource::Api, DEFAULT_INTERVAL).unwrap();
    assert_eq!(g.rules[0].reads, ReadSet::Names(["tingzhen_agent_up".to_string()].into()));
    assert_eq!(g.rules[3].reads, ReadSet::Any);
    let bad = Builtin::TargetDown { common: Common::default(), metric: Some("node_load1".into()), matchers: None };
    assert!(bad.expand().unwrap_err().contains("metric"));
    let bad = Builtin::NoData { common: Common::default(), selector: "x".into(), window: Some("5 min".into()) };
    assert!(bad.expand().unwrap_err().starts_with("window"));
}

#[test]
fn rule_file_globs() {
    let dir = tempfile::tempdir().unwrap();
    for n in ["a.yml", "b.yml", "c.yaml", "notes.txt"] {
        std::fs::write(dir.path().join(n), "groups: []\n").unwrap();
    }
    let p = |s: &str| dir.path().join(s).display().to_string();
    let found = expand_files(&[p("*.yml"), p("c.yaml")]).unwrap();
    let names: Vec<String> = found.iter().map(|f| f.file_name().unwrap().to_string_lossy().into()).collect();
    assert_eq!(names, ["a.yml", "b.yml", "c.yaml"]);
    assert!(expand_files(&[p("*.json")]).unwrap_err().message.contains("matches no file"));
    assert!(wildcard("rules-*-east.yml", "rules-his-east.yml"));
    assert!(!wildcard("rules-*-east.yml", "rules-his-west.yml"));
}

#[test]
fn the_shipped_example_rule_file_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rules/example.yml");
    let groups = load_file(&path, DEFAULT_INTERVAL).unwrap();
    assert_eq!(groups.iter().map(|g| g.rules.len()).sum::<usize>(), 5);
}
