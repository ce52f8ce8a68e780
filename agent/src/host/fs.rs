//! Filesystems: the mount table and `statvfs` per mount, under node_exporter's filesystem names
//! and its default exclusions of pseudo filesystems and system mount points.

use super::out::Out;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// node_exporter 1.x's default `fs-types-exclude`.
const EXCLUDED_FS_TYPES: [&str; 25] = [
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];

/// node_exporter 1.x's default `mount-points-exclude`:
/// `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
pub fn excluded_mountpoint(mp: &str) -> bool {
    let Some(rest) = mp.strip_prefix('/') else { return false };
    let under = |p: &str| rest == p || rest.strip_prefix(p).is_some_and(|r| r.starts_with('/'));
    let below = |p: &str| rest.strip_prefix(p).is_some_and(|r| r.starts_with('/') && r.len() > 1);
    under("dev")
        || under("proc")
        || under("sys")
        || below("run/credentials")
        || below("var/lib/docker")
        || below("var/lib/containers/storage")
}

pub fn excluded(m: &Mount) -> bool {
    EXCLUDED_FS_TYPES.contains(&m.fstype.as_str()) || excluded_mountpoint(&m.mountpoint)
}

/// The mount table undoes the kernel's octal escapes (`\040` is a space).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') as u32 * 64 + (b[i + 2] - b'0') as u32 * 8 + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/mounts, keeping the first entry for each mount point (bind mounts and
/// over-mounts list a path more than once; one series per mount point is what dashboards want).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(dev), Some(mp), Some(fstype)) = (it.next(), it.next(), it.next()) else { continue };
        let m = Mount { device: unescape(dev), mountpoint: unescape(mp), fstype: fstype.to_string() };
        if !out.iter().any(|o| o.mountpoint == m.mountpoint) {
            out.push(m);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
pub struct FsStats {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
    pub readonly: bool,
}

fn statvfs(path: &str) -> Option<FsStats> {
    let s = rustix::fs::statvfs(path).ok()?;
    let bs = s.f_frsize as f64;
    Some(FsStats {
        size: s.f_blocks as f64 * bs,
        free: s.f_bfree as f64 * bs,
        avail: s.f_bavail as f64 * bs,
        files: s.f_files as f64,
        files_free: s.f_ffree as f64,
        readonly: s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
    })
}

/// Runs statvfs off the collection thread: a dead NFS server would otherwise hang every
/// collection. While a previous stat is still stuck no new one is started.
#[derive(Debug, Default)]
pub struct FsCollector {
    stuck: Arc<AtomicBool>,
}

pub const STAT_TIMEOUT: Duration = Duration::from_secs(5);

impl FsCollector {
    pub fn stat_all(&self, mounts: Vec<Mount>) -> Vec<(Mount, Option<FsStats>)> {
        if self.stuck.load(Ordering::Acquire) {
            return Vec::new();
        }
        let (tx, rx) = mpsc::channel();
        let stuck = self.stuck.clone();
        stuck.store(true, Ordering::Release);
        let spawned = std::thread::Builder::new().name("tz-statfs".into()).spawn(move || {
            let r: Vec<_> = mounts.into_iter().map(|m| (statvfs(&m.mountpoint), m)).map(|(s, m)| (m, s)).collect();
            stuck.store(false, Ordering::Release);
            let _ = tx.send(r);
        });
        if spawned.is_err() {
            self.stuck.store(false, Ordering::Release);
            return Vec::new();
        }
        rx.recv_timeout(STAT_TIMEOUT).unwrap_or_default()
    }
}

pub fn emit_filesystems(stats: &[(Mount, Option<FsStats>)], out: &mut Out) {
    for (m, s) in stats {
        let l = [("device", m.device.as_str()), ("fstype", m.fstype.as_str()), ("mountpoint", m.mountpoint.as_str())];
        out.gauge(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
            &l,
            if s.is_some() { 0.0 } else { 1.0 },
        );
        let Some(s) = s else { continue };
        out.gauge("node_filesystem_size_bytes", "Filesystem size in bytes.", &l, s.size);
        out.gauge("node_filesystem_free_bytes", "Filesystem free space in bytes.", &l, s.free);
        out.gauge("node_filesystem_avail_bytes", "Filesystem space available to non-root users in bytes.", &l, s.avail);
        out.gauge("node_filesystem_files", "Filesystem total file nodes.", &l, s.files);
        out.gauge("node_filesystem_files_free", "Filesystem total free file nodes.", &l, s.files_free);
        out.gauge("node_filesystem_readonly", "Filesystem read-only status.", &l, if s.readonly { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = include_str!("../../tests/fixtures/mounts.txt");

    #[test]
    fn mounts_are_parsed_deduplicated_and_filtered() {
        let all = parse_mounts(MOUNTS);
        let kept: Vec<&str> = all.iter().filter(|m| !excluded(m)).map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(kept, ["/", "/boot", "/data/my disk", "/run", "/var/lib/docker"]);
        assert_eq!(all.iter().find(|m| m.mountpoint == "/").unwrap().device, "/dev/vda");
    }

    #[test]
    fn mountpoint_rules() {
        for p in ["/dev", "/dev/shm", "/proc", "/sys/fs/cgroup", "/run/credentials/x", "/var/lib/docker/overlay2/a"] {
            assert!(excluded_mountpoint(p), "{p}");
        }
        for p in ["/", "/devices", "/run/credentials", "/var/lib/docker", "/home"] {
            assert!(!excluded_mountpoint(p), "{p}");
        }
        assert_eq!(unescape(r"a\040b"), "a b");
        assert_eq!(unescape(r"x\0"), r"x\0");
    }

    #[test]
    fn statvfs_of_root_works() {
        let s = statvfs("/").expect("statvfs /");
        assert!(s.size > 0.0 && s.avail <= s.size);
        let r = FsCollector::default().stat_all(vec![Mount {
            device: "x".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
        }]);
        assert_eq!(r.len(), 1);
        assert!(r[0].1.is_some());
    }
}
