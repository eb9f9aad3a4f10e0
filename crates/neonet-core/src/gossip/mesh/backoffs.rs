//! The bounded store of PRUNE backoffs per (topic, peer ID) kept by `MeshState`.

use std::cmp::Ordering;

use hashbrown::HashMap;

/// Backoffs per (topic, peer ID), bounded; they outlive the peer's connection.
#[derive(Debug)]
pub(super) struct Backoffs {
    pub(super) map: HashMap<Box<str>, HashMap<Box<[u8]>, f64>>,
    pub(super) count: usize,
    pub(super) capacity: usize,
    pub(super) slack: f64,
}

impl Backoffs {
    pub(super) fn until(&self, topic: &str, id: &[u8]) -> Option<f64> {
        self.map
            .get(topic)
            .and_then(|per_topic| per_topic.get(id))
            .copied()
    }

    pub(super) fn expire(&mut self, now: f64) {
        let slack = self.slack;
        let mut removed = 0;
        self.map.retain(|_, per_topic| {
            let before = per_topic.len();
            per_topic.retain(|_, until| now < *until + slack);
            removed += before - per_topic.len();
            !per_topic.is_empty()
        });
        self.count -= removed;
    }

    pub(super) fn add(&mut self, topic: &str, id: &[u8], until: f64, now: f64) {
        if let Some(current) = self
            .map
            .get_mut(topic)
            .and_then(|per_topic| per_topic.get_mut(id))
        {
            if *current < until {
                *current = until;
            }
            return;
        }
        if self.count >= self.capacity {
            self.expire(now);
            if self.count >= self.capacity {
                self.evict_first_ending();
            }
        }
        match self.map.get_mut(topic) {
            Some(per_topic) => {
                per_topic.insert(Box::from(id), until);
            }
            None => {
                let mut per_topic = HashMap::new();
                per_topic.insert(Box::from(id), until);
                self.map.insert(Box::from(topic), per_topic);
            }
        }
        self.count += 1;
    }

    fn evict_first_ending(&mut self) {
        let mut first: Option<(f64, &str, &[u8])> = None;
        for (topic, per_topic) in &self.map {
            for (id, &until) in per_topic {
                let candidate = (until, &topic[..], &id[..]);
                let earlier = match first {
                    None => true,
                    Some(best) => {
                        match candidate.0.partial_cmp(&best.0).unwrap_or(Ordering::Equal) {
                            Ordering::Less => true,
                            Ordering::Greater => false,
                            Ordering::Equal => (candidate.1, candidate.2) < (best.1, best.2),
                        }
                    }
                };
                if earlier {
                    first = Some(candidate);
                }
            }
        }
        if let Some((_, topic, id)) = first {
            let (topic, id) = (topic.to_owned(), id.to_owned());
            if let Some(per_topic) = self.map.get_mut(topic.as_str()) {
                per_topic.remove(id.as_slice());
                if per_topic.is_empty() {
                    self.map.remove(topic.as_str());
                }
            }
            self.count -= 1;
        }
    }
}
