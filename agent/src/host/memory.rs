//! `/proc/meminfo` (memory and swap), the swap/paging subset of `/proc/vmstat` and
//! `/proc/sys/fs/file-nr`, under node_exporter's meminfo, vmstat and filefd names.

use super::out::Out;

/// One /proc/meminfo field, already converted the way node_exporter names it: `Active(anon)`
/// becomes `Active_anon`, and fields in kB become bytes with a `_bytes` suffix.
#[derive(Debug, Clone, PartialEq)]
pub struct MemField {
    pub name: String,
    pub value: f64,
}

pub fn parse_meminfo(text: &str) -> Vec<MemField> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut parts = rest.split_ascii_whitespace();
        let Some(Ok(v)) = parts.next().map(str::parse::<f64>) else { continue };
        let key = key.trim().replace('(', "_").replace(')', "");
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        let (name, value) = match parts.next() {
            Some("kB") => (format!("node_memory_{key}_bytes"), v * 1024.0),
            _ => (format!("node_memory_{key}"), v),
        };
        out.push(MemField { name, value });
    }
    out
}

pub fn emit_meminfo(fields: &[MemField], out: &mut Out) {
    for f in fields {
        let help = format!("Memory information field {}.", f.name.trim_start_matches("node_memory_"));
        out.gauge(&f.name, &help, &[], f.value);
    }
}

/// MemTotal in bytes, for the inventory heartbeat.
pub fn mem_total(fields: &[MemField]) -> Option<u64> {
    fields.iter().find(|f| f.name == "node_memory_MemTotal_bytes").map(|f| f.value as u64)
}

/// node_exporter's default vmstat fields: `^(oom_kill|pgpg|pswp|pg.*fault).*`.
fn vmstat_wanted(key: &str) -> bool {
    key.starts_with("oom_kill")
        || key.starts_with("pgpg")
        || key.starts_with("pswp")
        || (key.starts_with("pg") && key[2..].contains("fault"))
}

pub fn parse_vmstat(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            let v = v.trim().parse::<f64>().ok()?;
            (vmstat_wanted(k) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')).then(|| (k.to_string(), v))
        })
        .collect()
}

pub fn emit_vmstat(fields: &[(String, f64)], out: &mut Out) {
    for (k, v) in fields {
        out.untyped(&format!("node_vmstat_{k}"), &format!("/proc/vmstat information field {k}."), &[], *v);
    }
}

/// `allocated unused maximum` from /proc/sys/fs/file-nr.
pub fn parse_file_nr(text: &str) -> Option<(f64, f64)> {
    let v: Vec<f64> = text.split_ascii_whitespace().filter_map(|x| x.parse().ok()).collect();
    (v.len() == 3).then(|| (v[0], v[2]))
}

pub fn emit_file_nr(v: (f64, f64), out: &mut Out) {
    out.gauge("node_filefd_allocated", "File descriptor statistics: allocated.", &[], v.0);
    out.gauge("node_filefd_maximum", "File descriptor statistics: maximum.", &[], v.1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_names_and_units_follow_node_exporter() {
        let text = "MemTotal:       16384 kB\nActive(anon):     100 kB\nHugePages_Total:       4\nSwapFree: 0 kB\nbroken line\nX: y kB\n";
        let f = parse_meminfo(text);
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "node_memory_MemTotal_bytes",
                "node_memory_Active_anon_bytes",
                "node_memory_HugePages_Total",
                "node_memory_SwapFree_bytes"
            ]
        );
        assert_eq!(f[0].value, 16384.0 * 1024.0);
        assert_eq!(f[2].value, 4.0);
        assert_eq!(mem_total(&f), Some(16384 * 1024));
    }

    #[test]
    fn vmstat_keeps_default_fields_only() {
        let f = parse_vmstat("nr_free_pages 5\npgpgin 10\npswpout 2\npgmajfault 3\noom_kill 0\npgfree 99\nbad\n");
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["pgpgin", "pswpout", "pgmajfault", "oom_kill"]);
    }

    #[test]
    fn file_nr() {
        assert_eq!(parse_file_nr("1024\t0\t9223372036854775807\n"), Some((1024.0, 9223372036854775807.0)));
        assert_eq!(parse_file_nr("garbage"), None);
    }
}
