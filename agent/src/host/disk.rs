//! `/proc/diskstats` per block device, under node_exporter's diskstats names, with its default
//! device exclusions (RAM, loop and floppy devices, and partitions of whole disks).

use super::out::Out;

#[derive(Debug, Clone, PartialEq)]
pub struct DiskStats {
    pub device: String,
    /// The numeric columns after the device name (11 on old kernels, up to 17 on new ones).
    pub fields: Vec<u64>,
}

pub fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_ascii_whitespace().skip(2);
            let device = it.next()?.to_string();
            let fields: Vec<u64> = it.map(|v| v.parse().unwrap_or(0)).collect();
            (fields.len() >= 11).then_some(DiskStats { device, fields })
        })
        .collect()
}

/// node_exporter's default `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`, without a regex
/// engine (the agent stays small).
pub fn excluded_device(name: &str) -> bool {
    fn digits_then_end(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    for p in ["zram", "ram", "loop", "fd"] {
        if let Some(rest) = name.strip_prefix(p)
            && digits_then_end(rest)
        {
            return true;
        }
    }
    for p in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = name.strip_prefix(p) {
            let letters = rest.bytes().take_while(|b| b.is_ascii_lowercase()).count();
            // Exactly one letter then digits: "sda1" is a partition, "sdaa1" is not excluded.
            if letters == 1 && digits_then_end(&rest[1..]) {
                return true;
            }
        }
    }
    if let Some(rest) = name.strip_prefix("nvme") {
        // nvme<d+>n<d+>p<d+>
        let d1 = rest.bytes().take_while(u8::is_ascii_digit).count();
        if d1 > 0
            && let Some(rest) = rest[d1..].strip_prefix('n')
        {
            let d2 = rest.bytes().take_while(u8::is_ascii_digit).count();
            if d2 > 0
                && let Some(rest) = rest[d2..].strip_prefix('p')
            {
                return digits_then_end(rest);
            }
        }
    }
    false
}

const SECTOR: f64 = 512.0;

pub fn emit_diskstats(disks: &[DiskStats], out: &mut Out) {
    // (column, name, help, multiplier); io_now is the only gauge.
    const COLS: [(usize, &str, &str, f64); 17] = [
        (0, "node_disk_reads_completed_total", "The total number of reads completed successfully.", 1.0),
        (1, "node_disk_reads_merged_total", "The total number of reads merged.", 1.0),
        (2, "node_disk_read_bytes_total", "The total number of bytes read successfully.", SECTOR),
        (3, "node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", 0.001),
        (4, "node_disk_writes_completed_total", "The total number of writes completed successfully.", 1.0),
        (5, "node_disk_writes_merged_total", "The number of writes merged.", 1.0),
        (6, "node_disk_written_bytes_total", "The total number of bytes written successfully.", SECTOR),
        (7, "node_disk_write_time_seconds_total", "This is the total number of seconds spent by all writes.", 0.001),
        (8, "node_disk_io_now", "The number of I/Os currently in progress.", 1.0),
        (9, "node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", 0.001),
        (10, "node_disk_io_time_weighted_seconds_total", "The weighted number of seconds spent doing I/Os.", 0.001),
        (11, "node_disk_discards_completed_total", "The total number of discards completed successfully.", 1.0),
        (12, "node_disk_discards_merged_total", "The total number of discards merged.", 1.0),
        (13, "node_disk_discarded_sectors_total", "The total number of sectors discarded successfully.", 1.0),
        (
            14,
            "node_disk_discard_time_seconds_total",
            "This is the total number of seconds spent by all discards.",
            0.001,
        ),
        (15, "node_disk_flush_requests_total", "The total number of flush requests completed successfully", 1.0),
        (
            16,
            "node_disk_flush_requests_time_seconds_total",
            "This is the total number of seconds spent by all flush requests.",
            0.001,
        ),
    ];
    for d in disks.iter().filter(|d| !excluded_device(&d.device)) {
        for (col, name, help, mult) in COLS {
            let Some(&v) = d.fields.get(col) else { continue };
            let labels = [("device", d.device.as_str())];
            if col == 8 {
                out.gauge(name, help, &labels, v as f64);
            } else {
                out.counter(name, help, &labels, v as f64 * mult);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_excludes_like_node_exporter() {
        let text = "   7       0 loop0 10 0 20 1 0 0 0 0 0 4 1 0 0 0 0 0 0\n 253       0 vda 1000 5 8000 300 2000 6 16000 400 2 500 700 1 2 3 4 5 6\n 253       1 vda1 1 2 3 4 5 6 7 8 9 10 11\n 259 0 nvme0n1 1 2 3 4 5 6 7 8 9 10 11\n short 1 2\n";
        let d = parse_diskstats(text);
        assert_eq!(d.len(), 4);
        assert_eq!(d[1].device, "vda");
        assert_eq!(d[1].fields[2], 8000);
        let kept: Vec<&str> = d.iter().filter(|d| !excluded_device(&d.device)).map(|d| d.device.as_str()).collect();
        assert_eq!(kept, ["vda", "nvme0n1"]);
    }

    #[test]
    fn exclusion_rules() {
        for n in ["ram0", "zram0", "loop12", "fd0", "sda1", "hdb2", "vda10", "xvda1", "nvme0n1p1"] {
            assert!(excluded_device(n), "{n}");
        }
        for n in ["sda", "vda", "nvme0n1", "dm-0", "md0", "sdaa1", "loop", "sr0"] {
            assert!(!excluded_device(n), "{n}");
        }
    }
}
