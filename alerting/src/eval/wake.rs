//! Evaluation on ingest: the `IngestObserver` the collector calls after every acknowledged
//! write. It maps metric names to the rule groups that read them and pokes those groups. It
//! runs on the ingest path, so it only does a hash lookup and an atomic swap per name; a
//! group already poked is not poked again until it has evaluated (that is the debounce).

use crate::rules::{ReadSet, RuleGroup};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tingzhen_core::query::IngestObserver;
use tokio::sync::Notify;

/// A group's doorbell.
#[derive(Debug, Default)]
pub struct GroupWake {
    dirty: AtomicBool,
    pub(crate) notify: Notify,
}

impl GroupWake {
    /// Rings once per evaluation at most: pokes while one is pending merge into it.
    pub fn poke(&self) -> bool {
        if self.dirty.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.notify.notify_one();
        true
    }

    /// Called right before an evaluation: writes from now on ring again.
    pub fn take(&self) {
        self.dirty.store(false, Ordering::Release);
    }
}

/// Metric name → the groups reading it; `any` holds groups with a nameless selector.
#[derive(Debug, Default)]
pub struct WakeIndex {
    by_metric: HashMap<String, Vec<Arc<GroupWake>>>,
    any: Vec<Arc<GroupWake>>,
}

impl WakeIndex {
    pub fn build<'a>(groups: impl IntoIterator<Item = (&'a RuleGroup, Arc<GroupWake>)>) -> Self {
        let mut idx = WakeIndex::default();
        for (g, wake) in groups {
            let mut any = false;
            let mut names = std::collections::BTreeSet::new();
            for r in &g.rules {
                match &r.reads {
                    ReadSet::Any => any = true,
                    ReadSet::Names(n) => names.extend(n.iter().cloned()),
                }
            }
            if any {
                idx.any.push(wake);
                continue;
            }
            for n in names {
                idx.by_metric.entry(n).or_default().push(wake.clone());
            }
        }
        idx
    }
}

/// The observer handed to the collector. Its index is swapped whenever rules change.
#[derive(Debug, Default)]
pub struct RuleWaker {
    index: RwLock<Arc<WakeIndex>>,
    /// Groups poked (not counting merged pokes); a self-metric.
    pub(crate) pokes: AtomicU64,
}

impl RuleWaker {
    pub fn set_index(&self, index: WakeIndex) {
        *self.index.write() = Arc::new(index);
    }
}

impl IngestObserver for RuleWaker {
    fn samples_written(&self, metric_names: &[&str]) {
        let index = self.index.read().clone();
        let mut rung = 0;
        for w in &index.any {
            rung += u64::from(w.poke());
        }
        if !index.by_metric.is_empty() {
            for name in metric_names {
                if let Some(groups) = index.by_metric.get(*name) {
                    for w in groups {
                        rung += u64::from(w.poke());
                    }
                }
            }
        }
        if rung > 0 {
            self.pokes.fetch_add(rung, Ordering::Relaxed);
        }
    }
}
