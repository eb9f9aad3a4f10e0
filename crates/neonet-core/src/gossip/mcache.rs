//! The message cache behind IHAVE/IWANT (GossipSub v1.0 "Message Cache"; v1.1 limits
//! IWANT replies per peer).
//!
//! `history_length` windows, one per heartbeat, newest first. `put` adds to the newest,
//! `shift` drops the oldest; `gossip_ids` lists one topic's IDs in the newest
//! `gossip_length` windows (newest window first, arrival order within one). A full cache
//! (`capacity` messages) evicts its oldest message on `put`. Generic over the message type
//! so the Python glue can keep the caller's bytes objects. Same behaviour as
//! `neonet.core.gossip.MessageCache`.

use std::collections::VecDeque;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::gossip::check_count;
use crate::Error;

type Id = Arc<[u8]>;

#[derive(Debug)]
struct Cached<M> {
    topic: Arc<str>,
    message: M,
    transmissions: Option<HashMap<Box<[u8]>, u32>>, // IWANT replies per peer
}

#[derive(Debug, Default)]
struct Window {
    order: VecDeque<Id>,                       // arrival order
    by_topic: HashMap<Arc<str>, VecDeque<Id>>, // the same IDs per topic
}

/// Recent messages in heartbeat windows, at most `capacity` of them.
#[derive(Debug)]
pub struct MessageCache<M> {
    gossip_length: usize,
    capacity: usize,
    iwant_peers: usize,
    entries: HashMap<Id, Cached<M>>,
    windows: VecDeque<Window>, // newest first; always `history_length` of them
}

impl<M> MessageCache<M> {
    /// An empty cache (1 <= `gossip_length` <= `history_length` <= 1024, `capacity` >= 1).
    pub fn new(
        history_length: u64,
        gossip_length: u64,
        capacity: u64,
        iwant_peers_per_message: u64,
    ) -> Result<Self, Error> {
        let history_length = check_count("history_length", history_length, 1)?;
        let gossip_length = check_count("gossip_length", gossip_length, 1)?;
        let capacity = check_count("capacity", capacity, 1)?;
        let iwant_peers = check_count("iwant_peers_per_message", iwant_peers_per_message, 0)?;
        if gossip_length > history_length {
            return Err(Error::InvalidArgument(
                "gossip_length must not exceed history_length".into(),
            ));
        }
        if history_length > 1024 {
            return Err(Error::InvalidArgument(
                "history_length above 1024 windows".into(),
            ));
        }
        Ok(Self {
            gossip_length,
            capacity,
            iwant_peers,
            entries: HashMap::new(),
            windows: (0..history_length).map(|_| Window::default()).collect(),
        })
    }

    /// Messages cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `id` is cached.
    pub fn contains(&self, id: &[u8]) -> bool {
        self.entries.contains_key(id)
    }

    /// Caches a message in the newest window; false (and no change) if already cached.
    pub fn put(&mut self, id: &[u8], topic: &str, message: M) -> bool {
        if self.entries.contains_key(id) {
            return false;
        }
        if self.entries.len() >= self.capacity {
            self.evict_oldest();
        }
        let id: Id = Arc::from(id);
        let window = &mut self.windows[0];
        let topic: Arc<str> = match window.by_topic.get_key_value(topic) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(topic),
        };
        window.order.push_back(Arc::clone(&id));
        window
            .by_topic
            .entry(Arc::clone(&topic))
            .or_default()
            .push_back(Arc::clone(&id));
        self.entries.insert(
            id,
            Cached {
                topic,
                message,
                transmissions: None,
            },
        );
        true
    }

    fn evict_oldest(&mut self) {
        let Some(window) = self
            .windows
            .iter_mut()
            .rev()
            .find(|window| !window.order.is_empty())
        else {
            return;
        };
        let Some(id) = window.order.pop_front() else {
            return;
        };
        if let Some(cached) = self.entries.remove(&id) {
            // The oldest message of a window is also the oldest of its topic there.
            if let Some(per_topic) = window.by_topic.get_mut(&cached.topic) {
                per_topic.pop_front();
                if per_topic.is_empty() {
                    window.by_topic.remove(&cached.topic);
                }
            }
        }
    }

    /// The cached message, if any.
    pub fn get(&self, id: &[u8]) -> Option<&M> {
        self.entries.get(id).map(|cached| &cached.message)
    }

    /// The message for an IWANT from `peer`, unless that peer already had it
    /// `max_transmissions` times (or too many peers asked for it).
    pub fn get_for_peer(
        &mut self,
        id: &[u8],
        peer: &[u8],
        max_transmissions: u64,
    ) -> Result<Option<&M>, Error> {
        let limit = check_count("max_transmissions", max_transmissions, 0)? as u32;
        let Some(cached) = self.entries.get_mut(id) else {
            return Ok(None);
        };
        let counts = cached.transmissions.get_or_insert_with(HashMap::new);
        match counts.get_mut(peer) {
            None => {
                if counts.len() >= self.iwant_peers || limit == 0 {
                    return Ok(None);
                }
                counts.insert(Box::from(peer), 1);
            }
            Some(sent) if *sent >= limit => return Ok(None),
            Some(sent) => *sent += 1,
        }
        Ok(Some(&cached.message))
    }

    /// IDs of `topic` in the newest `gossip_length` windows, newest first.
    pub fn gossip_ids<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.windows
            .iter()
            .take(self.gossip_length)
            .filter_map(move |window| window.by_topic.get(topic))
            .flat_map(|per_topic| per_topic.iter().map(|id| &id[..]))
    }

    /// Drops the oldest window and its messages and opens a new newest one.
    pub fn shift(&mut self) {
        if let Some(oldest) = self.windows.pop_back() {
            for id in &oldest.order {
                self.entries.remove(id);
            }
        }
        self.windows.push_front(Window::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(cache: &MessageCache<u32>, topic: &str) -> Vec<Vec<u8>> {
        cache.gossip_ids(topic).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn put_get_and_duplicates() {
        let mut cache = MessageCache::new(5, 3, 100, 10).unwrap();
        assert!(cache.put(b"m1", "a", 1));
        assert!(!cache.put(b"m1", "a", 2));
        assert_eq!(cache.get(b"m1"), Some(&1));
        assert_eq!(cache.get(b"zz"), None);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn gossip_covers_the_newest_windows_only() {
        let mut cache = MessageCache::new(5, 3, 100, 10).unwrap();
        for round in 0u8..6 {
            cache.put(&[b'a', round], "a", u32::from(round));
            cache.put(&[b'b', round], "b", u32::from(round));
            cache.shift();
        }
        cache.put(b"a6", "a", 6);
        // Windows newest first: [a6], [a5], [a4]; a1 and older are gone after 5 shifts.
        assert_eq!(
            ids(&cache, "a"),
            vec![b"a6".to_vec(), vec![b'a', 5], vec![b'a', 4]]
        );
        assert!(cache.get(&[b'a', 0]).is_none());
        assert!(cache.get(&[b'a', 1]).is_none());
        assert_eq!(cache.get(&[b'a', 2]), Some(&2));
        assert!(ids(&cache, "nothing").is_empty());
    }

    #[test]
    fn capacity_evicts_oldest_message_and_its_topic_entry() {
        let mut cache = MessageCache::new(3, 2, 3, 10).unwrap();
        cache.put(b"1", "a", 1);
        cache.shift();
        cache.put(b"2", "b", 2);
        cache.put(b"3", "a", 3);
        cache.put(b"4", "a", 4); // evicts "1" from the oldest non-empty window
        assert!(cache.get(b"1").is_none());
        assert_eq!(ids(&cache, "a"), vec![b"3".to_vec(), b"4".to_vec()]);
        cache.put(b"5", "c", 5); // evicts "2", the oldest of the newest window
        assert_eq!(ids(&cache, "b"), Vec::<Vec<u8>>::new());
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn iwant_replies_are_limited_per_peer() {
        let mut cache = MessageCache::new(5, 3, 10, 2).unwrap();
        cache.put(b"m", "t", 7);
        assert_eq!(cache.get_for_peer(b"m", b"p1", 2).unwrap(), Some(&7));
        assert_eq!(cache.get_for_peer(b"m", b"p1", 2).unwrap(), Some(&7));
        assert_eq!(cache.get_for_peer(b"m", b"p1", 2).unwrap(), None);
        assert_eq!(cache.get_for_peer(b"m", b"p2", 2).unwrap(), Some(&7));
        // Only two distinct peers are counted per message.
        assert_eq!(cache.get_for_peer(b"m", b"p3", 2).unwrap(), None);
        assert_eq!(cache.get_for_peer(b"m", b"p4", 0).unwrap(), None);
        assert_eq!(cache.get_for_peer(b"x", b"p1", 2).unwrap(), None);
    }

    #[test]
    fn bad_parameters() {
        assert!(MessageCache::<u8>::new(3, 4, 10, 1).is_err());
        assert!(MessageCache::<u8>::new(0, 0, 10, 1).is_err());
        assert!(MessageCache::<u8>::new(5, 3, 0, 1).is_err());
        assert!(MessageCache::<u8>::new(2000, 3, 10, 1).is_err());
    }
}
