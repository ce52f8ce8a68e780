//! Inverted index: label name → value → sorted series ids, shared by the head and by loaded
//! blocks, and the evaluation of Prometheus matchers over it (absent label == "").

use std::collections::HashMap;
use tingzhen_core::{MatchOp, Matcher};

#[derive(Default)]
pub struct MemPostings {
    map: HashMap<Box<str>, HashMap<Box<str>, Vec<u32>>>,
    all: Vec<u32>,
}

fn insert_sorted(v: &mut Vec<u32>, id: u32) {
    // Ids are nearly always allocated in increasing order, so this is a push.
    match v.last() {
        Some(&last) if last >= id => {
            if let Err(pos) = v.binary_search(&id) {
                v.insert(pos, id);
            }
        }
        _ => v.push(id),
    }
}

impl MemPostings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add<'a>(&mut self, id: u32, labels: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (n, v) in labels {
            let values = match self.map.get_mut(n) {
                Some(m) => m,
                None => self.map.entry(n.into()).or_default(),
            };
            match values.get_mut(v) {
                Some(p) => insert_sorted(p, id),
                None => {
                    values.insert(v.into(), vec![id]);
                }
            }
        }
        insert_sorted(&mut self.all, id);
    }

    /// Removes a set of ids (sorted) from every list, dropping lists that become empty.
    pub fn remove(&mut self, ids: &[u32]) {
        if ids.is_empty() {
            return;
        }
        let gone = |id: &u32| ids.binary_search(id).is_ok();
        self.map.retain(|_, values| {
            values.retain(|_, p| {
                p.retain(|id| !gone(id));
                p.shrink_to_fit();
                !p.is_empty()
            });
            !values.is_empty()
        });
        self.all.retain(|id| !gone(id));
    }

    pub fn get(&self, name: &str, value: &str) -> &[u32] {
        self.map.get(name).and_then(|m| m.get(value)).map_or(&[], |v| v.as_slice())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(|k| &**k)
    }

    pub fn values(&self, name: &str) -> impl Iterator<Item = (&str, &[u32])> {
        self.map.get(name).into_iter().flat_map(|m| m.iter().map(|(k, v)| (&**k, v.as_slice())))
    }

    pub fn memory_bytes(&self) -> usize {
        let lists: usize = self.map.values().flat_map(|m| m.iter().map(|(k, v)| k.len() + v.capacity() * 4 + 48)).sum();
        lists + self.map.keys().map(|k| k.len() + 48).sum::<usize>() + self.all.capacity() * 4
    }

    /// Ids of series matching all `matchers`, sorted. Matchers that do not match "" narrow
    /// the set by postings intersection; those that do (e.g. `a!="x"`, `a=""`, `a=~"x|"`)
    /// can also select series lacking the label, so they subtract the postings of the values
    /// they reject instead.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<u32> {
        let mut positive: Vec<Vec<u32>> = Vec::new();
        let mut negative: Vec<&Matcher> = Vec::new();
        for m in matchers {
            if m.matches_empty() {
                negative.push(m);
            } else if m.op == MatchOp::Equal {
                positive.push(self.get(&m.name, &m.value).to_vec());
            } else {
                positive.push(union(self.values(&m.name).filter(|(v, _)| m.matches_value(Some(v))).map(|(_, p)| p)));
            }
        }
        let mut result = if positive.is_empty() {
            self.all.clone()
        } else {
            positive.sort_by_key(|p| p.len());
            let mut it = positive.into_iter();
            let mut acc = it.next().unwrap_or_default();
            for p in it {
                if acc.is_empty() {
                    break;
                }
                acc = intersect(&acc, &p);
            }
            acc
        };
        for m in negative {
            if result.is_empty() {
                break;
            }
            let reject = union(self.values(&m.name).filter(|(v, _)| !m.matches_value(Some(v))).map(|(_, p)| p));
            result = subtract(&result, &reject);
        }
        result
    }
}

pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mut out = Vec::with_capacity(small.len());
    if small.len() * 16 < large.len() {
        for x in small {
            if large.binary_search(x).is_ok() {
                out.push(*x);
            }
        }
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < small.len() && j < large.len() {
        match small[i].cmp(&large[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(small[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

pub fn subtract(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len());
    let mut j = 0;
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j < b.len() && b[j] == x {
            continue;
        }
        out.push(x);
    }
    out
}

pub fn union<'a>(lists: impl Iterator<Item = &'a [u32]>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut n = 0;
    for l in lists {
        out.extend_from_slice(l);
        n += 1;
    }
    if n > 1 {
        out.sort_unstable();
        out.dedup();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> MemPostings {
        let mut p = MemPostings::new();
        p.add(1, [("__name__", "up"), ("job", "node")]);
        p.add(2, [("__name__", "up"), ("job", "pg"), ("env", "prod")]);
        p.add(3, [("__name__", "load"), ("job", "node"), ("env", "dev")]);
        p
    }

    fn sel(p: &MemPostings, ms: &[Matcher]) -> Vec<u32> {
        p.select(ms)
    }

    #[test]
    fn matchers_follow_prometheus_semantics() {
        let p = idx();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        assert_eq!(sel(&p, &[m(MatchOp::Equal, "job", "node")]), [1, 3]);
        assert_eq!(sel(&p, &[m(MatchOp::Equal, "env", "")]), [1]);
        assert_eq!(sel(&p, &[m(MatchOp::NotEqual, "env", "prod")]), [1, 3]);
        assert_eq!(sel(&p, &[m(MatchOp::RegexMatch, "env", "prod|")]), [1, 2]);
        assert_eq!(sel(&p, &[m(MatchOp::RegexMatch, "env", ".+")]), [2, 3]);
        assert_eq!(sel(&p, &[m(MatchOp::RegexNoMatch, "job", "no.*"), m(MatchOp::Equal, "__name__", "up")]), [2]);
        assert_eq!(sel(&p, &[]), [1, 2, 3]);
        assert!(sel(&p, &[m(MatchOp::Equal, "nope", "x")]).is_empty());
        let mut p = p;
        p.remove(&[2]);
        assert_eq!(sel(&p, &[m(MatchOp::Equal, "__name__", "up")]), [1]);
        assert!(p.values("env").all(|(v, _)| v == "dev"));
    }
}
